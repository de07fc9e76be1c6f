//! The workloads' executions, driven over gRPC as a client would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::api::pb;
use crate::cli::client::{Client, status_error};

/// Starts an execution and waits (streaming its output) until it closes; returns its status.
pub(super) async fn run_one(
    client: &mut Client,
    agent: &str,
    prompts: Vec<String>,
) -> anyhow::Result<String> {
    use pb::stream_execution_response::Event;
    let request = pb::StartExecutionRequest {
        agent: agent.into(),
        prompts,
        ..Default::default()
    };
    let id = client
        .executions
        .start_execution(request)
        .await
        .map_err(status_error)?
        .into_inner()
        .execution_id;
    let mut stream = client
        .executions
        .stream_execution(pb::StreamExecutionRequest {
            id,
            after_seq: 0,
            include_superseded: false,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    while let Some(message) = stream.message().await.map_err(status_error)? {
        if let Some(Event::Closed(execution)) = message.event {
            return Ok(execution.status);
        }
    }
    anyhow::bail!("the stream ended before the execution closed")
}

/// Runs `count` executions of `turns` turns, `concurrency` at a time; returns the elapsed time.
pub(super) async fn run_many(
    client: &Client,
    agent: &str,
    count: usize,
    turns: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let slots = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let permit = slots.clone().acquire_owned().await?;
        let mut client = client.clone();
        let agent = agent.to_string();
        let prompts = (0..turns)
            .map(|t| format!("execution {i} turn {t}"))
            .collect();
        tasks.spawn(async move {
            let status = run_one(&mut client, &agent, prompts).await;
            drop(permit);
            status
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let status = joined??;
        anyhow::ensure!(status == "COMPLETED", "an execution ended {status}");
    }
    Ok(started.elapsed())
}

/// The `p` quantile (0 to 1) of `sorted`, nearest rank.
pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
