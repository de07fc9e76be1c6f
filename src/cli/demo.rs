//! `cairn demo`: an embedded engine on SQLite doing real work, end to end over gRPC.

use std::process::ExitCode;

use super::client::{Client, status_error};
use super::execution::exit_code;
use super::follow::follow;
use super::output::Output;
use crate::api::pb;
use crate::node::{Node, NodeOptions};

#[derive(Debug, clap::Args)]
pub(super) struct DemoArgs {
    /// The SQLite database to use (kept afterwards, so `cairn dev` can show it).
    #[arg(long, default_value = "sqlite://cairn-demo.db")]
    database_url: String,
}

pub(super) async fn run(args: DemoArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let node = Node::start(NodeOptions::new(
        "127.0.0.1:0".parse()?,
        args.database_url.clone(),
    ))
    .await?;
    let server = format!("http://{}", node.addr);
    let mut client = Client::connect(&server).await?;
    let say = |s: &str| println!("{}", out.paint("1;34", &format!("==> {s}")));

    say(&format!(
        "engine up on {server}, database {}",
        args.database_url
    ));
    let name = format!("demo-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let configuration = serde_json::json!({ "runtime_config": { "delay_ms": 40, "fail_attempts": [1], "fail_after_chunks": 3 } });
    client
        .agents
        .create_agent(pb::CreateAgentRequest {
            namespace: String::new(),
            name: name.clone(),
            runtime: "echo".into(),
            model_id: String::new(),
            configuration_json: configuration.to_string(),
        })
        .await
        .map_err(status_error)?;
    say(&format!(
        "created agent `{name}` (runtime echo; its first attempt of each turn fails after 3 chunks)"
    ));

    let start = pb::StartExecutionRequest {
        agent: name.clone(),
        prompts: vec![
            "Durable executions survive crashes, deploys and flaky model APIs. ".into(),
            "A retry resumes from the last checkpoint, so no text is emitted twice.".into(),
        ],
        retry_policy: Some(pb::RetryPolicy {
            initial_interval_ms: 200,
            backoff_coefficient: 2.0,
            maximum_interval_ms: 2_000,
            maximum_attempts: 3,
            non_retryable_codes: vec![],
        }),
        ..Default::default()
    };
    let id = client
        .executions
        .start_execution(start)
        .await
        .map_err(status_error)?
        .into_inner()
        .execution_id;
    say(&format!(
        "started execution {id} (two turns); streaming its output:"
    ));
    let closed = follow(&mut client, out, &id, 0, None).await?;
    say(&format!("execution closed: {}", out.status(&closed.status)));

    say(
        "its history (attempt 1 of each turn failed, back-off, attempt 2 resumed from the checkpoint):",
    );
    let events = client
        .executions
        .get_history(pb::GetHistoryRequest {
            id: id.clone(),
            after_seq: 0,
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .events;
    for e in &events {
        println!("  {:>3} {}", e.seq, e.r#type);
    }
    say(&format!(
        "inspect it later: cairn dev --database-url {} & cairn exec get {id}",
        args.database_url
    ));
    node.stop().await;
    Ok(exit_code(&closed.status))
}
