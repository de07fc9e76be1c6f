//! Teams run as child executions: sequential, parallel with an aggregator, supervisor; cancel,
//! failure, crash recovery and validation — through real `cairn` processes.

mod common;
mod fake_openai;

use std::time::Duration;

use cairn::api::pb;
use cairn::api::pb::team_service_client::TeamServiceClient;
use common::client::{TestClient, fast_retries, kinds, text_of};
use common::{Db, Server};
use serde_json::json;
use tonic::Code;

fn member(agent: &str, role: &str) -> pb::TeamMember {
    pb::TeamMember {
        agent: agent.into(),
        role: role.into(),
        agent_id: String::new(),
    }
}

fn team(name: &str, strategy: &str, members: &[(&str, &str)]) -> pb::CreateTeamRequest {
    pb::CreateTeamRequest {
        name: name.into(),
        strategy: strategy.into(),
        members: members.iter().map(|(a, r)| member(a, r)).collect(),
        ..Default::default()
    }
}

async fn create_team(c: &TestClient, request: pb::CreateTeamRequest) -> pb::Team {
    TeamServiceClient::new(c.channel.clone())
        .create_team(request)
        .await
        .expect("create team")
        .into_inner()
}

fn start_team(team: &str, prompt: &str) -> pb::StartExecutionRequest {
    pb::StartExecutionRequest {
        team: team.into(),
        prompt: prompt.into(),
        ..Default::default()
    }
}

async fn children(c: &mut TestClient, id: &str) -> Vec<pb::Execution> {
    let request = pb::ListExecutionsRequest {
        parent_id: id.into(),
        ..Default::default()
    };
    let mut children = c
        .executions
        .list_executions(request)
        .await
        .unwrap()
        .into_inner()
        .executions;
    children.sort_by(|a, b| a.child_key.cmp(&b.child_key));
    children
}

async fn a_sequential_team_hands_each_result_to_the_next_member(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("drafter", "echo", json!({ "chunks": ["draft "] }))
        .await;
    c.create_agent("editor", "echo", json!({})).await;
    create_team(
        &c,
        team(
            "writers",
            "sequential",
            &[("drafter", "writes"), ("editor", "edits")],
        ),
    )
    .await;
    let id = c.start(start_team("writers", "write it")).await;
    let watched = c.watch(&id, 0).await;

    assert_eq!(watched.closed.status, "COMPLETED");
    let result: serde_json::Value = serde_json::from_str(&watched.closed.result_json).unwrap();
    assert_eq!(
        result["from"], "editor",
        "the team result comes from the last member"
    );
    assert!(
        result["text"]
            .as_str()
            .unwrap()
            .contains("The previous member (drafter, writes) answered:\ndraft ")
    );
    // The team's stream holds both children's chunks, in order, tagged with the child.
    let keys: Vec<&str> = watched
        .chunks
        .iter()
        .map(|ch| ch.child_key.as_str())
        .collect();
    assert_eq!(keys.first(), Some(&"1-drafter"));
    assert_eq!(keys.last(), Some(&"2-editor"));
    assert!(
        keys.windows(2).all(|w| w[0] <= w[1]),
        "children in order: {keys:?}"
    );
    let kids = children(&mut c, &id).await;
    assert_eq!(kids.len(), 2);
    assert!(
        kids.iter()
            .all(|k| k.status == "COMPLETED" && k.parent_id == id)
    );
    assert_eq!(kids[0].runtime, "echo");
    // Each child streams on its own too.
    let drafter = c.watch(&kids[0].id, 0).await;
    assert_eq!(drafter.text(), "draft ");
    // A team's usage is the sum of its children's.
    let usage = |e: &pb::Execution| e.usage.unwrap().output_tokens;
    assert_eq!(usage(&watched.closed), usage(&kids[0]) + usage(&kids[1]));
    let history = c.history(&id).await;
    assert_eq!(
        kinds(&history),
        [
            "TeamStarted",
            "ChildScheduled",
            "ChildClosed",
            "ChildScheduled",
            "ChildClosed",
            "ExecutionCompleted"
        ]
    );
}

async fn a_parallel_team_gathers_results_for_its_aggregator(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent(
        "north",
        "echo",
        json!({ "chunks": ["cold"], "delay_ms": 30 }),
    )
    .await;
    c.create_agent("south", "echo", json!({ "chunks": ["warm"] }))
        .await;
    c.create_agent("summarizer", "echo", json!({})).await;
    let mut request = team(
        "weather",
        "parallel",
        &[("north", "north desk"), ("south", "south desk")],
    );
    request.aggregator = "summarizer".into();
    create_team(&c, request).await;
    let id = c.start(start_team("weather", "report")).await;
    let watched = c.watch(&id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    let result: serde_json::Value = serde_json::from_str(&watched.closed.result_json).unwrap();
    assert_eq!(result["from"], "summarizer");
    let text = result["text"].as_str().unwrap();
    let (north, south) = (
        text.find("[1] north (north desk):\ncold").unwrap(),
        text.find("[2] south (south desk):\nwarm").unwrap(),
    );
    assert!(
        north < south,
        "results are gathered in member order: {text}"
    );
    assert_eq!(result["results"][0]["text"], "cold");
    assert_eq!(children(&mut c, &id).await.len(), 3);
}

async fn a_failed_member_fails_the_team_unless_it_continues(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("ok", "echo", json!({ "chunks": ["fine"] }))
        .await;
    c.create_agent("broken", "echo", json!({ "fail_attempts": [1, 2, 3], "fail_retryable": false, "fail_code": "tool_misconfigured" })).await;
    create_team(
        &c,
        team("strict", "sequential", &[("broken", ""), ("ok", "")]),
    )
    .await;
    let mut lenient = team("lenient", "parallel", &[("broken", ""), ("ok", "")]);
    lenient.continue_on_failure = true;
    create_team(&c, lenient).await;

    let strict = c.start(start_team("strict", "go")).await;
    let closed = c.watch(&strict, 0).await.closed;
    assert_eq!(closed.status, "FAILED");
    let failure = closed.failure.unwrap();
    assert_eq!(failure.code, "member_failed");
    assert!(
        failure.message.contains("broken") && failure.message.contains("tool_misconfigured"),
        "{}",
        failure.message
    );
    assert_eq!(
        children(&mut c, &strict).await.len(),
        1,
        "the second member never started"
    );

    let lenient = c.start(start_team("lenient", "go")).await;
    let closed = c.watch(&lenient, 0).await.closed;
    assert_eq!(closed.status, "COMPLETED");
    let result: serde_json::Value = serde_json::from_str(&closed.result_json).unwrap();
    assert_eq!(result["results"][0]["member"], "ok");
    assert_eq!(result["failed_members"][0]["member"], "broken");
    assert_eq!(
        result["failed_members"][0]["failure"]["code"],
        "tool_misconfigured"
    );
}

async fn cancelling_a_team_cancels_its_running_children(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    let words: Vec<String> = (0..400).map(|i| format!("w{i} ")).collect();
    c.create_agent("slow-a", "echo", json!({ "chunks": words, "delay_ms": 50 }))
        .await;
    c.create_agent("slow-b", "echo", json!({ "chunks": words, "delay_ms": 50 }))
        .await;
    create_team(
        &c,
        team("slowpokes", "parallel", &[("slow-a", ""), ("slow-b", "")]),
    )
    .await;
    let id = c.start(start_team("slowpokes", "go")).await;
    c.wait_until(&id, "children's output", |e| e.output_length >= 4)
        .await;
    c.executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: id.clone(),
            reason: "stop".into(),
        })
        .await
        .unwrap();
    let closed = c.watch_within(&id, 0, Duration::from_secs(20)).await.closed;
    assert_eq!(closed.status, "CANCELED");
    let kids = children(&mut c, &id).await;
    assert_eq!(kids.len(), 2);
    assert!(kids.iter().all(|k| k.status == "CANCELED"), "{kids:?}");
    assert_eq!(
        db.store().await.count_rows("tasks").await.unwrap(),
        0,
        "no child is left running"
    );
}

async fn a_crashed_worker_does_not_run_a_completed_child_twice(db: Db) {
    let mut server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("quick", "echo", json!({ "chunks": ["done"] }))
        .await;
    let words: Vec<String> = (0..60).map(|i| format!("w{i} ")).collect();
    c.create_agent("long", "echo", json!({ "chunks": words, "delay_ms": 25 }))
        .await;
    create_team(
        &c,
        team("pair", "sequential", &[("quick", ""), ("long", "")]),
    )
    .await;
    let mut request = start_team("pair", "go");
    request.retry_policy = Some(fast_retries(5));
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 1_000,
        ..Default::default()
    });
    let id = c.start(request).await;
    c.wait_until(&id, "the second child to be mid-run", |e| {
        e.output_length >= 6
    })
    .await;
    server.kill();

    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    let watched = c.watch(&id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    let history = c.history(&id).await;
    let scheduled: Vec<&str> = history
        .iter()
        .filter(|e| e.kind == "ChildScheduled")
        .map(|e| e.payload["key"].as_str().unwrap())
        .collect();
    assert_eq!(scheduled, ["1-quick", "2-long"], "no child started twice");
    let kids = children(&mut c, &id).await;
    assert_eq!(kids.len(), 2);
    for kid in &kids {
        let history = c.history(&kid.id).await;
        assert_eq!(
            history
                .iter()
                .filter(|e| e.kind == "ExecutionCompleted")
                .count(),
            1
        );
    }
    let long = c.history(&kids[1].id).await;
    assert!(
        long.iter().any(|e| e.kind == "ActivityTimedOut"),
        "the child's attempt was retried"
    );
    assert_eq!(
        text_of(&c.watch(&kids[1].id, 0).await.chunks),
        (0..60).map(|i| format!("w{i} ")).collect::<String>()
    );
}

async fn invalid_teams_are_refused_and_write_nothing(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("worker-a", "echo", json!({})).await;
    c.create_agent("gone", "echo", json!({})).await;
    c.agents
        .archive_agent(pb::ArchiveAgentRequest {
            agent: "gone".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    create_team(&c, team("existing", "sequential", &[("worker-a", "")])).await;
    let before = db.row_counts().await;
    let mut teams = TeamServiceClient::new(c.channel.clone());
    let refused =
        |result: Result<tonic::Response<pb::Team>, tonic::Status>, code: Code, hint: &str| {
            let status = result.expect_err("refused");
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(
                status.message().contains(hint),
                "`{}` should mention `{hint}`",
                status.message()
            );
        };
    refused(
        teams
            .create_team(team("t", "sequential", &[("nobody", "")]))
            .await,
        Code::NotFound,
        "`nobody` is not an agent",
    );
    refused(
        teams
            .create_team(team("t", "sequential", &[("gone", "")]))
            .await,
        Code::FailedPrecondition,
        "archived",
    );
    refused(
        teams.create_team(team("t", "sequential", &[])).await,
        Code::InvalidArgument,
        "at least one member",
    );
    refused(
        teams
            .create_team(team("t", "round-robin", &[("worker-a", "")]))
            .await,
        Code::InvalidArgument,
        "strategy `round-robin`",
    );
    refused(
        teams
            .create_team(team("loop", "sequential", &[("loop", "")]))
            .await,
        Code::InvalidArgument,
        "cannot contain itself",
    );
    refused(
        teams
            .create_team(team("t", "sequential", &[("existing", "")]))
            .await,
        Code::InvalidArgument,
        "is a team",
    );
    let many: Vec<(&str, &str)> = (0..33).map(|_| ("worker-a", "")).collect();
    refused(
        teams.create_team(team("t", "parallel", &many)).await,
        Code::InvalidArgument,
        "at most 32",
    );
    let mut wide = team("t", "parallel", &[("worker-a", "")]);
    wide.max_parallel = 1000;
    refused(
        teams.create_team(wide).await,
        Code::InvalidArgument,
        "max_parallel 1000",
    );
    refused(
        teams
            .create_team(team("t", "supervisor", &[("worker-a", "")]))
            .await,
        Code::InvalidArgument,
        "needs a leader",
    );
    refused(
        teams
            .create_team(team("existing", "sequential", &[("worker-a", "")]))
            .await,
        Code::AlreadyExists,
        "already exists",
    );
    let both = pb::StartExecutionRequest {
        agent: "worker-a".into(),
        team: "existing".into(),
        prompt: "x".into(),
        ..Default::default()
    };
    assert_eq!(
        c.executions.start_execution(both).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        c.executions
            .start_execution(start_team("nope", "x"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        db.row_counts().await,
        before,
        "refused requests wrote nothing"
    );
}

async fn retrying_a_team_reruns_only_the_children_that_did_not_complete(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("opener", "echo", json!({ "chunks": ["opened "] }))
        .await;
    c.create_agent(
        "middle",
        "echo",
        json!({ "fail_attempts": [1], "fail_retryable": false }),
    )
    .await;
    c.create_agent("closer", "echo", json!({ "chunks": ["closed"] }))
        .await;
    create_team(
        &c,
        team(
            "trio",
            "sequential",
            &[("opener", ""), ("middle", ""), ("closer", "")],
        ),
    )
    .await;
    let failed = c.start(start_team("trio", "go")).await;
    assert_eq!(c.watch(&failed, 0).await.closed.status, "FAILED");

    // Fix the member, then retry the team.
    c.agents
        .update_agent(pb::UpdateAgentRequest {
            agent: "middle".into(),
            configuration_json: Some(
                json!({ "runtime_config": { "chunks": ["fixed "] } }).to_string(),
            ),
            ..Default::default()
        })
        .await
        .unwrap();
    let retried = c
        .executions
        .retry_execution(pb::RetryExecutionRequest {
            id: failed.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(retried.created);
    assert_eq!(
        retried.reused_turns, 1,
        "the completed first child is reused"
    );
    let watched = c.watch(&retried.execution_id, 0).await;
    assert_eq!(
        watched.closed.status, "COMPLETED",
        "{:?}",
        watched.closed.failure
    );
    assert_eq!(watched.closed.retry_of, failed);
    let keys: Vec<String> = children(&mut c, &retried.execution_id)
        .await
        .into_iter()
        .map(|k| k.child_key)
        .collect();
    assert_eq!(
        keys,
        ["2-middle", "3-closer"],
        "only the children that did not complete run again"
    );
    let history = c.history(&retried.execution_id).await;
    let scheduled: Vec<&str> = history
        .iter()
        .filter(|e| e.kind == "ChildScheduled")
        .map(|e| e.payload["key"].as_str().unwrap())
        .collect();
    assert_eq!(scheduled, ["2-middle", "3-closer"]);
    // The stream starts with the reused child's output, marked as reused.
    let first = &watched.chunks[0];
    assert_eq!(
        (first.child_key.as_str(), first.reused_from.is_empty()),
        ("1-opener", false)
    );
    assert_eq!(text_of(&watched.chunks), "opened fixed closed");
    let result: serde_json::Value = serde_json::from_str(&watched.closed.result_json).unwrap();
    assert_eq!(result["from"], "closer", "{result}");

    // Both team executions replay with the current team machine.
    for id in [&failed, &retried.execution_id] {
        let replayed = c
            .executions
            .replay_execution(pb::ReplayExecutionRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert!(replayed.ok, "{:?}", replayed.divergence);
    }
}

/// A team started on a queue runs its children there: only a worker of that queue serves them.
async fn a_team_started_on_a_queue_runs_its_children_there(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let _gpu = common::fleet::Proc::worker(
        "gpu-worker",
        &[&server.url],
        &["--runtimes", "echo", "--queue", "gpu"],
        &[],
    );
    let mut c = server.client().await;
    c.create_agent("drafter", "echo", json!({ "chunks": ["draft "] }))
        .await;
    c.create_agent("editor", "echo", json!({})).await;
    let pair = [("drafter", "writes"), ("editor", "edits")];
    create_team(&c, team("writers", "sequential", &pair)).await;
    let request = pb::StartExecutionRequest {
        queue: "gpu".into(),
        ..start_team("writers", "write it")
    };
    let id = c.start(request).await;
    let watched = c.watch(&id, 0).await;

    assert_eq!(watched.closed.status, "COMPLETED");
    let kids = children(&mut c, &id).await;
    assert_eq!(kids.len(), 2);
    assert!(kids.iter().all(|k| k.queue == "gpu"), "{kids:?}");
    let started: Vec<String> = c
        .history(&kids[0].id)
        .await
        .iter()
        .filter(|e| e.kind == "ActivityStarted")
        .map(|e| e.payload["worker"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(started, ["gpu-worker"]);
}

on_both_stores!(
    a_team_started_on_a_queue_runs_its_children_there,
    retrying_a_team_reruns_only_the_children_that_did_not_complete,
    a_sequential_team_hands_each_result_to_the_next_member,
    a_parallel_team_gathers_results_for_its_aggregator,
    a_failed_member_fails_the_team_unless_it_continues,
    cancelling_a_team_cancels_its_running_children,
    a_crashed_worker_does_not_run_a_completed_child_twice,
    invalid_teams_are_refused_and_write_nothing,
);

/// A supervisor whose leader (on the `default` runtime, answered by the fake model) picks two
/// members and then answers; and one whose leader cannot be understood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_picks_members_until_it_answers() {
    let db = Db::sqlite().await;
    let model = fake_openai::FakeOpenAi::start().await;
    for reply in [
        r#"{"next": "researcher", "instruction": "find facts"}"#,
        r#"Sure: {"next": "writer", "instruction": "write it up"}"#,
        r#"{"answer": "all done"}"#,
        "I refuse to use JSON",
        "still no JSON",
    ] {
        model.push(fake_openai::Reply::text(&[reply]));
    }
    let server = Server::dev_with_model(&db, &model.base_url());
    let mut c = server.client().await;
    c.create_model_agent("boss", "m", json!({})).await;
    c.create_agent("researcher", "echo", json!({ "chunks": ["facts"] }))
        .await;
    c.create_agent("writer", "echo", json!({ "chunks": ["prose"] }))
        .await;
    let mut request = team(
        "newsroom",
        "supervisor",
        &[("researcher", "finds facts"), ("writer", "writes")],
    );
    request.leader = "boss".into();
    create_team(&c, request).await;

    let id = c.start(start_team("newsroom", "a story")).await;
    let closed = c.watch(&id, 0).await.closed;
    assert_eq!(closed.status, "COMPLETED", "{:?}", closed.failure);
    let result: serde_json::Value = serde_json::from_str(&closed.result_json).unwrap();
    assert_eq!(result["text"], "all done");
    assert_eq!(result["rounds"], 2);
    let keys: Vec<String> = children(&mut c, &id)
        .await
        .into_iter()
        .map(|k| k.child_key)
        .collect();
    assert_eq!(
        keys,
        [
            "leader-1",
            "leader-2",
            "leader-3",
            "step-1-researcher",
            "step-2-writer"
        ]
    );
    let third_prompt = model.requests()[2].body.to_string();
    assert!(
        third_prompt.contains("writer was asked: write it up")
            && third_prompt.contains("answered: prose"),
        "{third_prompt}"
    );

    let id = c.start(start_team("newsroom", "another story")).await;
    let closed = c.watch(&id, 0).await.closed;
    assert_eq!(closed.status, "FAILED");
    let failure = closed.failure.unwrap();
    assert_eq!(failure.code, "unparseable_leader_reply");
    assert!(
        failure.message.contains("still no JSON"),
        "the reply is quoted: {}",
        failure.message
    );
    assert_eq!(
        children(&mut c, &id).await.len(),
        2,
        "the unparseable reply was retried once"
    );
}
