//! The `cairn` command line: servers (`dev`, `server`, `migrate`, `bench`, `demo`) and client
//! commands over gRPC (`agent`, `run`, `exec`).
//!
//! One module per command (`agent`, `team`, `run`, `exec` with its `replay` and `retry`
//! subcommands, `stats`, `worker`, `serve`, `bench`, `demo`), and below them the pieces they share:
//! `args` (option groups and flag parsers), `client`, `output`, `execution` (printing an
//! execution, exit codes), `follow` (streaming output across reconnects), `spinner`, `ask`,
//! `prompter` and `terminal` (what an execution asks, answering it on a terminal while the
//! output streams, and the one reader of stdin), `host` (runtime settings and the stop signal)
//! and `secrets`. A command module uses shared modules
//! only, never another command (`tests/cli_modules.rs` checks it).

mod agent;
mod args;
mod ask;
mod bench;
mod chat;
mod client;
mod conversation;
mod demo;
mod exec;
mod execution;
mod follow;
mod host;
mod output;
mod prompter;
mod replay;
mod retention;
mod retry;
mod run;
mod secrets;
mod serve;
mod spinner;
mod stats;
mod team;
mod terminal;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use args::{DEFAULT_DATABASE, DEFAULT_LISTEN, DEFAULT_SERVER};
pub use client::Client;
pub use output::Output;

/// Cairn: durable execution for AI agents.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, propagate_version = true)]
pub struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Never colour the output (also: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    no_color: bool,
    /// How client commands and workers reach a server: global, so before or after the
    /// subcommand alike; server commands (`dev`, `server`, ...) ignore them.
    #[command(flatten, next_help_heading = "Client options")]
    client: args::ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a server with an in-process worker on an SQLite file: the embedded default.
    Dev(serve::DevArgs),
    /// Run a server (over SQLite or PostgreSQL), optionally with an in-process worker.
    Server(serve::ServerArgs),
    /// Apply database migrations and exit.
    Migrate(serve::MigrateArgs),
    /// Run a worker process that takes tasks from one or more servers over gRPC
    /// (`cairn worker list` shows the fleet).
    Worker(worker::WorkerArgs),
    /// Manage agents.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Manage teams.
    #[command(subcommand)]
    Team(team::TeamCommand),
    /// Start an execution of an agent or a team, stream its output, and exit with its outcome.
    Run(run::RunArgs),
    /// A conversation on the terminal: each line a message, each answer streamed.
    Chat(chat::ChatArgs),
    /// Inspect, watch, cancel, replay and retry executions.
    #[command(subcommand)]
    Exec(exec::ExecCommand),
    /// Agents by runtime, and executions of a recent window by runtime, agent or model: counts,
    /// error rate, duration percentiles, tokens, cost and tool calls.
    Stats(stats::StatsArgs),
    /// Measure throughput and latency (workloads W1-W3).
    Bench(bench::BenchArgs),
    /// Start an embedded engine, run a few executions through it, and show what happened.
    Demo(demo::DemoArgs),
}

/// Runs the command line; returns the process exit code.
pub async fn main(cli: Cli) -> ExitCode {
    let out = Output::new(cli.json, cli.no_color);
    let result = match cli.command {
        Command::Dev(args) => serve::dev(args).await,
        Command::Server(args) => serve::server(args).await,
        Command::Migrate(args) => serve::migrate(args).await,
        Command::Worker(args) => worker::run(args, cli.client, &out).await,
        Command::Agent(command) => agent::run(command, cli.client, &out).await,
        Command::Team(command) => team::run(command, cli.client, &out).await,
        Command::Run(args) => run::run(args, cli.client, &out).await,
        Command::Exec(command) => exec::run(command, cli.client, &out).await,
        Command::Chat(args) => chat::run(args, cli.client, &out).await,
        Command::Stats(args) => stats::run(args, cli.client, &out).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Demo(args) => demo::run(args, &out).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            out.error(&e);
            ExitCode::from(2)
        }
    }
}
