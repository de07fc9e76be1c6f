//! The `cairn` command line: servers (`dev`, `server`, `migrate`, `bench`, `demo`) and client
//! commands over gRPC (`agent`, `run`, `exec`).

mod agent;
mod bench;
mod client;
mod demo;
mod exec;
mod follow;
mod output;
mod replay;
mod retry;
mod run;
mod secrets;
mod serve;
mod team;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use client::Client;
pub use output::Output;

/// The default server address for client commands.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7233";
/// The default listen address for servers.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7233";
/// The default database: an SQLite file in the current directory.
pub const DEFAULT_DATABASE: &str = "sqlite://cairn.db";

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
    #[command(subcommand)]
    command: Command,
}

/// Options of client commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The server to talk to. Give several (repeated, or comma-separated) to fail over: commands
    /// use the first that answers, and `run` / `exec watch` move on to the next when a stream
    /// breaks.
    #[arg(long, env = "CAIRN_SERVER", default_value = DEFAULT_SERVER, value_delimiter = ',')]
    server: Vec<String>,
    /// How long `run` and `exec watch` keep reconnecting (with back-off) after a stream broke,
    /// without getting any further, before they give up with exit code 2 (seconds).
    #[arg(long, env = "CAIRN_RECONNECT_FOR", default_value_t = 60)]
    reconnect_for: u64,
    /// The namespace.
    #[arg(long, short = 'n', env = "CAIRN_NAMESPACE", default_value = "default")]
    namespace: String,
    #[command(flatten)]
    connect: secrets::ConnectArgs,
}

impl ClientArgs {
    /// Connects to the first server that answers, with the token and TLS settings given.
    async fn connect(&self) -> anyhow::Result<Client> {
        Ok(self.servers()?.connect(0).await?.1)
    }

    /// The servers, with the token and TLS settings, for commands that reconnect.
    fn servers(&self) -> anyhow::Result<follow::Servers> {
        let options = self.connect.load()?;
        for url in &self.server {
            // A malformed URL is a usage error now, not a reason to retry later.
            options.endpoint(url)?;
        }
        Ok(follow::Servers {
            urls: self.server.clone(),
            options,
            give_up_after: std::time::Duration::from_secs(self.reconnect_for),
        })
    }
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
    /// Inspect, watch, cancel, replay and retry executions.
    #[command(subcommand)]
    Exec(exec::ExecCommand),
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
        Command::Worker(args) => worker::run(args, &out).await,
        Command::Agent(command) => agent::run(command, &out).await,
        Command::Team(command) => team::run(command, &out).await,
        Command::Run(args) => run::run(args, &out).await,
        Command::Exec(command) => exec::run(command, &out).await,
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
