//! Approvals, engine side, through `echo`'s `ask_tool` test aid: a running turn asks whether a
//! tool may run, the execution is WAITING for `approval` with the ask recorded in its history,
//! an answer is taken once (a second answer refused, the same request id idempotent), a denial's
//! message reaches the runtime, and an attempt held past `approval_hold` frees its slot, keeps no
//! lease and consumes no retry, then resumes from its checkpoint once approved, on a worker
//! started after the hold.

mod common;

use std::time::Duration;

use cairn::api::pb;
use common::client::start_request;
use common::fleet::{Proc, wait_for_workers};
use common::{Db, Server, TestClient};
use serde_json::json;

async fn answer(
    c: &mut TestClient,
    id: &str,
    approval_id: &str,
    allow: bool,
    message: &str,
    request_id: &str,
) -> Result<pb::Execution, tonic::Status> {
    c.executions
        .resolve_approval(pb::ResolveApprovalRequest {
            id: id.into(),
            approval_id: approval_id.into(),
            allow,
            message: message.into(),
            updated_input_json: String::new(),
            request_id: request_id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn waiting_for_approval(c: &mut TestClient, id: &str) -> pb::Approval {
    let waiting = c
        .wait_until(id, "the ask", |e| e.waiting_for == "approval")
        .await;
    assert_eq!(waiting.status, "WAITING");
    assert_eq!(waiting.approvals.len(), 1, "{waiting:?}");
    waiting.approvals[0].clone()
}

fn count(history: &[common::client::Event], kind: &str) -> usize {
    history.iter().filter(|e| e.kind == kind).count()
}

async fn approve_and_deny(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("careful", "echo", json!({ "ask_tool": "Bash" }))
        .await;

    let id = c.start_simple("careful", "list the files").await;
    let ask = waiting_for_approval(&mut c, &id).await;
    assert_eq!((ask.tool.as_str(), ask.state.as_str()), ("Bash", "pending"));
    let input: serde_json::Value = serde_json::from_str(&ask.input_json).unwrap();
    assert_eq!(input["prompt"], "list the files");
    answer(&mut c, &id, &ask.approval_id, true, "", "yes-1")
        .await
        .expect("approve");
    answer(&mut c, &id, &ask.approval_id, true, "", "yes-1")
        .await
        .expect("the same answer again is taken as the same");
    let second = answer(&mut c, &id, &ask.approval_id, false, "no", "no-1")
        .await
        .expect_err("a second answer is refused");
    assert_eq!(second.code(), tonic::Code::FailedPrecondition);
    assert!(second.message().contains("already answered"), "{second}");
    let done = c.watch(&id, 0).await;
    assert_eq!(done.closed.status, "COMPLETED");
    assert_eq!(done.text(), "[Bash allowed] list the files");
    let history = c.history(&id).await;
    assert_eq!(count(&history, "ApprovalRequested"), 1);
    assert_eq!(count(&history, "ApprovalResolved"), 1);

    let id = c.start_simple("careful", "remove everything").await;
    let ask = waiting_for_approval(&mut c, &id).await;
    answer(
        &mut c,
        &id,
        &ask.approval_id,
        false,
        "not on my disk",
        "no-2",
    )
    .await
    .expect("deny");
    let done = c.watch(&id, 0).await;
    assert_eq!(done.closed.status, "COMPLETED");
    assert_eq!(
        done.text(),
        "[Bash denied: not on my disk] remove everything",
        "the runtime received the denial's message"
    );
    let result: serde_json::Value = serde_json::from_str(&done.closed.result_json).unwrap();
    assert_eq!(result["approval"]["decision"], "denied");

    let replayed = c
        .executions
        .replay_execution(pb::ReplayExecutionRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(replayed.ok, "{replayed:?}");
}

/// Held past a short `approval_hold`: the attempt ends, its worker's slot is free and its task
/// holds no lease; approved after the worker was replaced, the same attempt resumes and the turn
/// completes, with the ask recorded once.
async fn held_then_approved_after_a_worker_restart(db: Db) {
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let hold = ["--approval-hold-ms", "100", "--concurrency", "1"];
    let mut worker = Proc::worker("w-hold", &[&url], &hold, &[]);
    let mut c = TestClient::connect(&url).await;
    c.create_agent("careful", "echo", json!({ "ask_tool": "Write" }))
        .await;
    let id = c.start_simple("careful", "write the report").await;
    let ask = waiting_for_approval(&mut c, &id).await;
    c.wait_until(&id, "the attempt to be held", |e| {
        e.activity
            .as_ref()
            .is_some_and(|a| a.worker.is_empty() && e.status == "WAITING")
            && e.history_length >= 5
    })
    .await;
    let history = c.history(&id).await;
    assert_eq!(count(&history, "ActivityHeld"), 1, "{history:?}");
    assert_eq!(count(&history, "ActivityFailed"), 0, "a hold is no failure");
    let task = db
        .store()
        .await
        .get_task(id.parse().unwrap(), "turn-1")
        .await
        .unwrap()
        .expect("the task is kept");
    assert_eq!(task.lease_owner, None, "no lease while held");
    assert_eq!(task.attempt, 1);
    let workers = wait_for_workers(&mut c, &["w-hold"]).await;
    assert_eq!(
        workers[0].slots_in_use, 0,
        "the held attempt freed its slot"
    );

    worker.kill();
    answer(&mut c, &id, &ask.approval_id, true, "", "later")
        .await
        .expect("approve while no worker runs it");
    let _worker = Proc::worker("w-after", &[&url], &hold, &[]);
    let done = c.watch(&id, 0).await;
    assert_eq!(done.closed.status, "COMPLETED");
    assert_eq!(done.text(), "[Write allowed] write the report");
    let history = c.history(&id).await;
    assert_eq!(
        count(&history, "ApprovalRequested"),
        1,
        "asked again, recorded once"
    );
    assert_eq!(count(&history, "ActivityResumed"), 1);
    assert!(
        history
            .iter()
            .filter(|e| e.kind == "ActivityStarted")
            .all(|e| e.payload["attempt"] == 1),
        "no retry consumed"
    );
    let replayed = c
        .executions
        .replay_execution(pb::ReplayExecutionRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(replayed.ok, "{replayed:?}");
}

/// A held attempt can be cancelled: nothing runs it, so the cancel ends it at once.
async fn a_held_attempt_is_cancelled_at_once(db: Db) {
    let server = Server::dev(&db, &["--approval-hold-ms", "50"]);
    let mut c = server.client().await;
    c.create_agent("careful", "echo", json!({ "ask_tool": "Bash" }))
        .await;
    let id = c.start(start_request("careful", &["anything"])).await;
    c.wait_until(&id, "the hold", |e| {
        e.waiting_for == "approval" && e.activity.as_ref().is_some_and(|a| a.worker.is_empty())
    })
    .await;
    let history = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let history = c.history(&id).await;
            if count(&history, "ActivityHeld") == 1 {
                return history;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("held");
    assert_eq!(count(&history, "ActivityHeld"), 1);
    c.executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: id.clone(),
            reason: "never mind".into(),
        })
        .await
        .expect("cancel");
    assert_eq!(c.watch(&id, 0).await.closed.status, "CANCELED");
}

/// A team member's ask shows on the team execution and is answered there.
async fn a_members_approval_is_answered_on_the_team(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("careful", "echo", json!({ "ask_tool": "Bash" }))
        .await;
    pb::team_service_client::TeamServiceClient::new(c.channel.clone())
        .create_team(pb::CreateTeamRequest {
            name: "crew".into(),
            strategy: "sequential".into(),
            members: vec![pb::TeamMember {
                agent: "careful".into(),
                role: "doer".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("create team");
    let team = c
        .start(pb::StartExecutionRequest {
            team: "crew".into(),
            prompt: "tidy up".into(),
            ..Default::default()
        })
        .await;
    let waiting = c
        .wait_until(&team, "the member's ask on the team", |e| {
            e.waiting_for == "approval"
        })
        .await;
    assert_eq!(waiting.approvals.len(), 1, "{waiting:?}");
    let approval = waiting.approvals[0].approval_id.clone();
    answer(&mut c, &team, &approval, true, "", "team-yes")
        .await
        .expect("answered on the team");
    let done = c.watch(&team, 0).await;
    assert_eq!(done.closed.status, "COMPLETED");
    assert!(
        done.text().contains("[Bash allowed] tidy up"),
        "{}",
        done.text()
    );
}

on_both_stores!(
    a_members_approval_is_answered_on_the_team,
    approve_and_deny,
    held_then_approved_after_a_worker_restart,
    a_held_attempt_is_cancelled_at_once,
);
