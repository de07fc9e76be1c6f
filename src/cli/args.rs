//! Option groups and flag parsers that several commands share, so that no command module
//! borrows them from another.

use super::client::Client;
use super::client::Servers;
use super::secrets::ConnectArgs;
use crate::api::pb;

/// The default server address for client commands.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7233";
/// The default listen address for servers.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7233";
/// The default database: an SQLite file in the current directory.
pub const DEFAULT_DATABASE: &str = "sqlite://cairn.db";

/// Options of client commands and workers: global flags of `cairn`, so they go before or after
/// the subcommand (`cairn --server URL agent list`, `cairn agent list --server URL`).
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The server to talk to. Give several (repeated, or comma-separated) to fail over: commands
    /// use the first that answers, `run` / `exec watch` move on to the next when a stream
    /// breaks, and `cairn worker` takes tasks from one at a time, moving on when one is
    /// unreachable. Default: http://127.0.0.1:7233.
    // No clap default: a global's default would be handed down to `cairn bench`'s own
    // `--server` and make it bench that address instead of a server of its own.
    #[arg(long, global = true, env = "CAIRN_SERVER", value_delimiter = ',')]
    server: Vec<String>,
    /// How long `run` and `exec watch` keep reconnecting (with back-off) after a stream broke,
    /// without getting any further, before they give up with exit code 2 (seconds).
    #[arg(long, global = true, env = "CAIRN_RECONNECT_FOR", default_value_t = 60)]
    pub(super) reconnect_for: u64,
    /// The namespace every request of the command is made in.
    #[arg(
        long,
        short = 'n',
        global = true,
        env = "CAIRN_NAMESPACE",
        default_value = "default"
    )]
    pub(super) namespace: String,
    #[command(flatten)]
    pub(super) connect: ConnectArgs,
}

impl ClientArgs {
    /// The server URLs given, or the default one.
    pub(super) fn server_urls(&self) -> Vec<String> {
        if self.server.is_empty() {
            vec![DEFAULT_SERVER.to_string()]
        } else {
            self.server.clone()
        }
    }

    /// Connects to the first server that answers, with the token and TLS settings given.
    pub(super) async fn connect(&self) -> anyhow::Result<Client> {
        Ok(self.servers()?.connect(0).await?.1)
    }

    /// The servers, with the token and TLS settings, for commands that reconnect.
    pub(super) fn servers(&self) -> anyhow::Result<Servers> {
        let options = self.connect.load()?;
        let urls = self.server_urls();
        for url in &urls {
            // A malformed URL is a usage error now, not a reason to retry later.
            options.endpoint(url)?;
        }
        Ok(Servers {
            urls,
            options,
            give_up_after: std::time::Duration::from_secs(self.reconnect_for),
        })
    }
}

/// Parses `KEY=VALUE`.
pub(super) fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// Parses `30s`, `15m`, `24h`, `7d` into milliseconds.
pub(super) fn parse_age(s: &str) -> anyhow::Result<i64> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("`{s}` is not a duration like 30m, 24h or 7d"))?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => anyhow::bail!("`{s}` is not a duration like 30m, 24h or 7d"),
    };
    Ok(n * ms)
}

/// The retry policy `--max-attempts N` asks for: 1 s doubling up to a minute, N attempts.
pub(super) fn policy_with_attempts(maximum_attempts: u32) -> pb::RetryPolicy {
    pb::RetryPolicy {
        initial_interval_ms: 1_000,
        backoff_coefficient: 2.0,
        maximum_interval_ms: 60_000,
        maximum_attempts,
        non_retryable_codes: vec![],
    }
}

/// How a long-running command (`dev`, `server`, `worker`) reports on itself.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct ObservabilityArgs {
    /// Serve Prometheus metrics at `http://ADDR/metrics` (off when not given).
    #[arg(long, env = "CAIRN_METRICS_LISTEN")]
    pub(super) metrics_listen: Option<std::net::SocketAddr>,
    /// `text` (for people) or `json` (one object a line, with execution, activity and attempt
    /// where known, for log shippers).
    #[arg(long, env = "CAIRN_LOG_FORMAT", default_value = "text", value_parser = parse_log_format)]
    pub(super) log_format: crate::telemetry::LogFormat,
}

fn parse_log_format(s: &str) -> Result<crate::telemetry::LogFormat, String> {
    s.parse()
}

impl ObservabilityArgs {
    /// Installs logging, tracing and (with `--metrics-listen`) the metrics pipeline.
    pub(super) fn init(&self) -> crate::telemetry::Telemetry {
        crate::telemetry::init(&crate::telemetry::TelemetryOptions {
            log_format: self.log_format,
            default_level: "info".into(),
            prometheus: self.metrics_listen.is_some(),
        })
    }
}
