//! The server's retention settings (`--retention`, `--retention-namespace`) and `cairn exec
//! delete`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use crate::api::pb;
use crate::engine::RetentionPolicy;

use super::args::ClientArgs;
use super::client::status_error;

/// How long a server keeps closed executions.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct RetentionArgs {
    /// Delete executions (with their history, output, tasks, timers, labels and the stored
    /// checkpoints no other execution refers to) this long after they closed, e.g. `30d`. A
    /// team's members go with their team, once all of them have closed. Default: keep them.
    #[arg(long, env = "CAIRN_RETENTION", value_parser = parse_window)]
    retention: Option<Duration>,
    /// A namespace's own window, `NAMESPACE=DURATION` (`NAMESPACE=forever` keeps its
    /// executions); repeat it for several namespaces.
    #[arg(long = "retention-namespace", value_parser = parse_namespace_window)]
    retention_namespace: Vec<(String, Option<Duration>)>,
    /// How often the server looks for executions past their window.
    #[arg(long, default_value = "1m", value_parser = parse_window)]
    retention_every: Duration,
}

impl RetentionArgs {
    /// The policy and how often to apply it.
    pub(super) fn policy(&self) -> (RetentionPolicy, Duration) {
        let namespaces: BTreeMap<_, _> = self.retention_namespace.iter().cloned().collect();
        let policy = RetentionPolicy {
            default: self.retention,
            namespaces,
        };
        (policy, self.retention_every.max(Duration::from_millis(10)))
    }
}

fn parse_window(s: &str) -> Result<Duration, String> {
    let window = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}): write e.g. 30d, 12h or 90m"))?;
    if window > Duration::from_secs(100 * 365 * 24 * 3600) {
        return Err(format!(
            "`{s}` is over 100 years: leave the flag out to keep executions"
        ));
    }
    Ok(window)
}

fn parse_namespace_window(s: &str) -> Result<(String, Option<Duration>), String> {
    let (namespace, window) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAMESPACE=DURATION (e.g. scratch=1d)"))?;
    crate::api::check_namespace(namespace).map_err(|e| e.message().to_string())?;
    let window = match window {
        "forever" => None,
        window => Some(parse_window(window)?),
    };
    Ok((namespace.to_string(), window))
}

/// `cairn exec delete ID`.
pub(super) async fn delete(client: &ClientArgs, id: &str) -> anyhow::Result<ExitCode> {
    let mut c = client.connect().await?;
    let reply = c
        .executions
        .delete_execution(pb::DeleteExecutionRequest { id: id.to_string() })
        .await
        .map_err(status_error)?
        .into_inner();
    println!(
        "deleted execution {id} ({} execution{} with its members, {} stored checkpoint object{})",
        reply.executions,
        if reply.executions == 1 { "" } else { "s" },
        reply.objects,
        if reply.objects == 1 { "" } else { "s" },
    );
    Ok(ExitCode::SUCCESS)
}
