//! One table of bad requests, each sent over HTTP (with `curl`) and over gRPC: both answer the
//! same code and the same message, and the HTTP status is the one that matches the code. Then
//! the same for authentication: no token, an unknown token, a worker's token on a client route.

use cairn::api::pb;
use cairn::api::pb::team_service_client::TeamServiceClient;
use serde_json::json;
use tonic::Code;

use super::curl::{Reply, call};
use crate::common::{Db, Server, TestClient};

/// A gRPC call of the table.
enum Rpc {
    CreateAgent(pb::CreateAgentRequest),
    GetAgent(pb::GetAgentRequest),
    UpdateAgent(pb::UpdateAgentRequest),
    ArchiveAgent(pb::ArchiveAgentRequest),
    Start(pb::StartExecutionRequest),
    Get(pb::GetExecutionRequest),
    List(pb::ListExecutionsRequest),
    Cancel(pb::CancelExecutionRequest),
    History(pb::GetHistoryRequest),
    Retry(pb::RetryExecutionRequest),
    Stream(pb::StreamExecutionRequest),
    CreateTeam(pb::CreateTeamRequest),
    GetTeam(pb::GetTeamRequest),
    UpdateTeam(pb::UpdateTeamRequest),
    Stats(pb::GetStatsRequest),
    Send(pb::SendMessageRequest),
    Close(pb::CloseExecutionRequest),
    Resolve(pb::ResolveApprovalRequest),
}

/// The status the gRPC call ends with (it must fail).
async fn grpc(c: &mut TestClient, rpc: Rpc) -> tonic::Status {
    let mut teams = TeamServiceClient::new(c.channel.clone());
    let result = match rpc {
        Rpc::CreateAgent(r) => c.agents.create_agent(r).await.map(drop),
        Rpc::GetAgent(r) => c.agents.get_agent(r).await.map(drop),
        Rpc::UpdateAgent(r) => c.agents.update_agent(r).await.map(drop),
        Rpc::ArchiveAgent(r) => c.agents.archive_agent(r).await.map(drop),
        Rpc::Start(r) => c.executions.start_execution(r).await.map(drop),
        Rpc::Get(r) => c.executions.get_execution(r).await.map(drop),
        Rpc::List(r) => c.executions.list_executions(r).await.map(drop),
        Rpc::Cancel(r) => c.executions.cancel_execution(r).await.map(drop),
        Rpc::History(r) => c.executions.get_history(r).await.map(drop),
        Rpc::Retry(r) => c.executions.retry_execution(r).await.map(drop),
        Rpc::Stream(r) => c.executions.stream_execution(r).await.map(drop),
        Rpc::CreateTeam(r) => teams.create_team(r).await.map(drop),
        Rpc::GetTeam(r) => teams.get_team(r).await.map(drop),
        Rpc::UpdateTeam(r) => teams.update_team(r).await.map(drop),
        Rpc::Stats(r) => c.executions.get_stats(r).await.map(drop),
        Rpc::Send(r) => c.executions.send_message(r).await.map(drop),
        Rpc::Close(r) => c.executions.close_execution(r).await.map(drop),
        Rpc::Resolve(r) => c.executions.resolve_approval(r).await.map(drop),
    };
    result.expect_err("the table holds bad requests only")
}

/// The HTTP status for a gRPC code, written out here rather than taken from the server.
fn expected_http(code: Code) -> u16 {
    match code {
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        other => panic!("the table has no {other:?}"),
    }
}

/// The code's name as the HTTP error body spells it.
fn name(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::Aborted => "ABORTED",
        Code::Unauthenticated => "UNAUTHENTICATED",
        Code::PermissionDenied => "PERMISSION_DENIED",
        other => panic!("the table has no {other:?}"),
    }
}

/// The HTTP reply says what the gRPC status says.
fn assert_same(case: &str, reply: &Reply, status: &tonic::Status) {
    let body = reply.json();
    assert_eq!(
        (
            body["error"]["code"].as_str(),
            body["error"]["message"].as_str()
        ),
        (Some(name(status.code())), Some(status.message())),
        "{case}: HTTP {} {}",
        reply.status,
        reply.body
    );
    assert_eq!(reply.status, expected_http(status.code()), "{case}");
}

async fn bad_requests_get_the_same_errors_over_http_and_grpc(db: Db) {
    let server = Server::dev(&db, &[]);
    let api = server.url.clone();
    let mut c = server.client().await;
    c.create_agent("e", "echo", json!({})).await;
    let done = c.start_simple("e", "hello").await;
    c.watch(&done, 0).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let agent = |name: &str| pb::CreateAgentRequest {
        name: name.into(),
        runtime: "echo".into(),
        ..Default::default()
    };
    let start = |agent: &str| pb::StartExecutionRequest {
        agent: agent.into(),
        prompt: "x".into(),
        ..Default::default()
    };

    #[rustfmt::skip]
    let table: Vec<(&str, &str, String, Option<String>, Rpc)> = vec![
        ("agent without a name", "POST", "/api/v1/agents".into(),
            Some(json!({"runtime": "echo"}).to_string()), Rpc::CreateAgent(agent(""))),
        ("agent name with doubled spaces", "POST", "/api/v1/agents".into(),
            Some(json!({"name": "two  spaces", "runtime": "echo"}).to_string()),
            Rpc::CreateAgent(agent("two  spaces"))),
        ("unknown runtime", "POST", "/api/v1/agents".into(),
            Some(json!({"name": "x", "runtime": "nope"}).to_string()),
            Rpc::CreateAgent(pb::CreateAgentRequest { runtime: "nope".into(), ..agent("x") })),
        ("configuration not an object", "POST", "/api/v1/agents".into(),
            Some(json!({"name": "x", "runtime": "echo", "configuration": [1]}).to_string()),
            Rpc::CreateAgent(pb::CreateAgentRequest { configuration_json: "[1]".into(), ..agent("x") })),
        ("echo config of the wrong type", "POST", "/api/v1/agents".into(),
            Some(json!({"name": "x", "runtime": "echo",
                        "configuration": {"runtime_config": {"delay_ms": "soon"}}}).to_string()),
            Rpc::CreateAgent(pb::CreateAgentRequest {
                configuration_json: r#"{"runtime_config":{"delay_ms":"soon"}}"#.into(), ..agent("x") })),
        ("duplicate name", "POST", "/api/v1/agents".into(),
            Some(json!({"name": "e", "runtime": "echo"}).to_string()), Rpc::CreateAgent(agent("e"))),
        ("bad namespace", "POST", "/api/v1/agents".into(),
            Some(json!({"namespace": "Bad NS", "name": "x", "runtime": "echo"}).to_string()),
            Rpc::CreateAgent(pb::CreateAgentRequest { namespace: "Bad NS".into(), ..agent("x") })),
        ("unknown agent", "GET", "/api/v1/agents/nobody".into(), None,
            Rpc::GetAgent(pb::GetAgentRequest { agent: "nobody".into(), ..Default::default() })),
        ("expected_version 0", "PATCH", "/api/v1/agents/e".into(),
            Some(json!({"model_id": "m", "expected_version": 0}).to_string()),
            Rpc::UpdateAgent(pb::UpdateAgentRequest {
                agent: "e".into(), model_id: Some("m".into()), expected_version: Some(0),
                ..Default::default() })),
        ("stale archive", "DELETE", "/api/v1/agents/e?expected_version=99".into(), None,
            Rpc::ArchiveAgent(pb::ArchiveAgentRequest {
                agent: "e".into(), expected_version: Some(99), ..Default::default() })),
        ("runtime not the agent's", "POST", "/api/v1/executions".into(),
            Some(json!({"agent": "e", "prompt": "x", "runtime": "default"}).to_string()),
            Rpc::Start(pb::StartExecutionRequest { runtime: "default".into(), ..start("e") })),
        ("runtime for a team", "POST", "/api/v1/executions".into(),
            Some(json!({"team": "t", "prompt": "x", "runtime": "echo"}).to_string()),
            Rpc::Start(pb::StartExecutionRequest {
                team: "t".into(), runtime: "echo".into(), ..start("") })),
        ("agent and team", "POST", "/api/v1/executions".into(),
            Some(json!({"agent": "e", "team": "t", "prompt": "x"}).to_string()),
            Rpc::Start(pb::StartExecutionRequest { team: "t".into(), ..start("e") })),
        ("no prompt", "POST", "/api/v1/executions".into(),
            Some(json!({"agent_id": "e"}).to_string()),
            Rpc::Start(pb::StartExecutionRequest { prompt: String::new(), ..start("e") })),
        ("unknown agent to start", "POST", "/api/v1/executions".into(),
            Some(json!({"agent_id": unknown, "prompt": "x"}).to_string()), Rpc::Start(start(&unknown))),
        ("bad label", "POST", "/api/v1/executions".into(),
            Some(json!({"agent": "e", "prompt": "x", "labels": {"": "v"}}).to_string()),
            Rpc::Start(pb::StartExecutionRequest {
                labels: [(String::new(), "v".to_string())].into(), ..start("e") })),
        ("execution id not an id", "GET", "/api/v1/executions/nope".into(), None,
            Rpc::Get(pb::GetExecutionRequest { id: "nope".into() })),
        ("unknown execution", "GET", format!("/api/v1/executions/{unknown}"), None,
            Rpc::Get(pb::GetExecutionRequest { id: unknown.clone() })),
        ("unknown status filter", "GET", "/api/v1/executions?status=DONE".into(), None,
            Rpc::List(pb::ListExecutionsRequest { status: vec!["DONE".into()], ..Default::default() })),
        ("page too large", "GET", "/api/v1/executions?page_size=100000".into(), None,
            Rpc::List(pb::ListExecutionsRequest { page_size: 100_000, ..Default::default() })),
        ("cancel unknown", "POST", format!("/api/v1/executions/{unknown}/cancel"), None,
            Rpc::Cancel(pb::CancelExecutionRequest { id: unknown.clone(), reason: String::new() })),
        ("history of no id", "GET", "/api/v1/executions/x/history".into(), None,
            Rpc::History(pb::GetHistoryRequest { id: "x".into(), after_seq: 0 })),
        ("retry a completed execution", "POST", format!("/api/v1/executions/{done}/retry"), None,
            Rpc::Retry(pb::RetryExecutionRequest { id: done.clone(), ..Default::default() })),
        ("events of an unknown execution", "GET", format!("/api/v1/executions/{unknown}/events"), None,
            Rpc::Stream(pb::StreamExecutionRequest { id: unknown.clone(), after_seq: 0, include_superseded: false })),
        ("team strategy unknown", "POST", "/api/v1/teams".into(),
            Some(json!({"name": "t", "strategy": "round-robin",
                        "members": [{"agent": "e", "role": "r"}]}).to_string()),
            Rpc::CreateTeam(pb::CreateTeamRequest {
                name: "t".into(), strategy: "round-robin".into(),
                members: vec![pb::TeamMember { agent: "e".into(), role: "r".into(), ..Default::default() }],
                ..Default::default() })),
        ("team without members", "POST", "/api/v1/teams".into(),
            Some(json!({"name": "t", "strategy": "sequential"}).to_string()),
            Rpc::CreateTeam(pb::CreateTeamRequest {
                name: "t".into(), strategy: "sequential".into(), ..Default::default() })),
        ("team member unknown", "POST", "/api/v1/teams".into(),
            Some(json!({"name": "t", "strategy": "sequential",
                        "members": [{"agent": "ghost", "role": "r"}]}).to_string()),
            Rpc::CreateTeam(pb::CreateTeamRequest {
                name: "t".into(), strategy: "sequential".into(),
                members: vec![pb::TeamMember { agent: "ghost".into(), role: "r".into(), ..Default::default() }],
                ..Default::default() })),
        ("unknown team", "GET", "/api/v1/teams/nobody".into(), None,
            Rpc::GetTeam(pb::GetTeamRequest { team: "nobody".into(), ..Default::default() })),
        ("team update without a definition", "PATCH", "/api/v1/teams/nobody".into(),
            Some("{}".into()),
            Rpc::UpdateTeam(pb::UpdateTeamRequest { team: "nobody".into(), ..Default::default() })),
        ("stats by an unknown grouping", "GET", "/api/v1/stats?by=colour".into(), None,
            Rpc::Stats(pb::GetStatsRequest { by: "colour".into(), ..Default::default() })),
        ("message to a closed execution", "POST", format!("/api/v1/executions/{done}/messages"),
            Some(json!({"text": "more", "request_id": "p-1"}).to_string()),
            Rpc::Send(pb::SendMessageRequest {
                id: done.clone(), text: "more".into(), request_id: "p-1".into() })),
        ("empty message", "POST", format!("/api/v1/executions/{done}/messages"),
            Some(json!({"text": ""}).to_string()),
            Rpc::Send(pb::SendMessageRequest { id: done.clone(), ..Default::default() })),
        ("close what is not a conversation", "POST", format!("/api/v1/executions/{done}/close"), None,
            Rpc::Close(pb::CloseExecutionRequest { id: done.clone() })),
        ("answer an unknown approval", "POST", format!("/api/v1/executions/{done}/approvals/a-1"),
            Some(json!({"allow": true, "request_id": "p-2"}).to_string()),
            Rpc::Resolve(pb::ResolveApprovalRequest {
                id: done.clone(), approval_id: "a-1".into(), allow: true, request_id: "p-2".into(),
                ..Default::default() })),
    ];
    let rows_before = db.row_counts().await;
    for (case, method, path, body, rpc) in table {
        let reply = call(&api, method, &path, body.as_deref(), None);
        let status = grpc(&mut c, rpc).await;
        assert_same(case, &reply, &status);
    }
    assert_eq!(
        db.row_counts().await,
        rows_before,
        "refused requests write nothing"
    );

    // What only HTTP can get wrong is refused in the same shape.
    for (case, method, path, body) in [
        (
            "malformed JSON",
            "POST",
            "/api/v1/agents",
            Some("{\"name\": "),
        ),
        (
            "unknown field",
            "POST",
            "/api/v1/agents",
            Some(r#"{"name": "x", "colour": "red"}"#),
        ),
        (
            "agent_id and agent",
            "POST",
            "/api/v1/executions",
            Some(r#"{"agent_id": "e", "agent": "e", "prompt": "x"}"#),
        ),
        (
            "unknown query parameter",
            "GET",
            "/api/v1/executions?colour=red",
            None,
        ),
        (
            "label not key=value",
            "GET",
            "/api/v1/executions?label=x",
            None,
        ),
    ] {
        let reply = call(&api, method, path, body, None);
        assert_eq!(reply.status, 400, "{case}: {}", reply.body);
        assert_eq!(reply.json()["error"]["code"], "INVALID_ARGUMENT", "{case}");
    }
    let nowhere = call(&api, "GET", "/api/v1/nowhere", None, None);
    assert_eq!(nowhere.status, 404);
    assert_eq!(nowhere.json()["error"]["code"], "NOT_FOUND");
    // What axum answers by itself is in the same JSON shape, with its own status.
    let method = call(&api, "PUT", "/api/v1/agents", Some("{}"), None);
    assert_eq!(method.status, 405);
    assert_eq!(method.json()["error"]["code"], "UNIMPLEMENTED");
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.json");
    let name = "x".repeat(5 << 20);
    std::fs::write(&huge, json!({"name": name}).to_string()).unwrap();
    let too_big = call(
        &api,
        "POST",
        "/api/v1/agents",
        Some(&format!("@{}", huge.display())),
        None,
    );
    assert_eq!(too_big.status, 413, "{}", too_big.body);
    assert_eq!(too_big.json()["error"]["code"], "RESOURCE_EXHAUSTED");
    assert!(
        too_big.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4194304 bytes")
    );
}

crate::on_both_stores!(bad_requests_get_the_same_errors_over_http_and_grpc);

const CLIENT_TOKEN: &str = "http-client-token";
const WORKER_TOKEN: &str = "http-worker-token";

/// Calls the gRPC method `path` (an empty request: the auth layer answers before decoding).
async fn grpc_auth(url: &str, path: &str, token: Option<&str>) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(());
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(request, path.parse().unwrap(), codec)
        .await
        .expect_err("refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_refusals_are_the_same_over_http_and_grpc() {
    let db = Db::sqlite().await;
    let env = [
        ("CAIRN_CLIENT_TOKENS".to_string(), CLIENT_TOKEN.to_string()),
        ("CAIRN_WORKER_TOKENS".to_string(), WORKER_TOKEN.to_string()),
    ];
    let server = Server::start_with_env(&db, "dev", &[], &env);
    let api = server.url.clone();
    let routes = [
        (
            "GET",
            "/api/v1/agents",
            None,
            "/cairn.v1.AgentService/ListAgents",
        ),
        (
            "POST",
            "/api/v1/agents",
            Some(r#"{"name": "a", "runtime": "echo"}"#),
            "/cairn.v1.AgentService/CreateAgent",
        ),
        (
            "POST",
            "/api/v1/executions",
            Some(r#"{"agent": "a", "prompt": "x"}"#),
            "/cairn.v1.ExecutionService/StartExecution",
        ),
        (
            "GET",
            "/api/v1/workers",
            None,
            "/cairn.v1.WorkerService/ListWorkers",
        ),
        (
            "GET",
            "/api/v1/teams",
            None,
            "/cairn.v1.TeamService/ListTeams",
        ),
        (
            "GET",
            "/api/v1/stats",
            None,
            "/cairn.v1.ExecutionService/GetStats",
        ),
    ];
    for (method, path, body, rpc) in routes {
        for (case, token) in [
            ("no token", None),
            ("unknown token", Some("not-a-token")),
            ("worker token", Some(WORKER_TOKEN)),
        ] {
            let reply = call(&api, method, path, body, token);
            let status = grpc_auth(&api, rpc, token).await;
            assert!(
                matches!(
                    status.code(),
                    Code::Unauthenticated | Code::PermissionDenied
                ),
                "{case}: {status:?}"
            );
            assert_same(&format!("{method} {path}, {case}"), &reply, &status);
        }
    }
    // The right token opens them; the refusals above wrote nothing (the agent is created now).
    let created = call(
        &api,
        "POST",
        "/api/v1/agents",
        Some(r#"{"name": "a", "runtime": "echo"}"#),
        Some(CLIENT_TOKEN),
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let listed = call(&api, "GET", "/api/v1/agents", None, Some(CLIENT_TOKEN)).json();
    assert_eq!(listed["agents"].as_array().unwrap().len(), 1);
    // The document describes the API and reads nothing: it needs no token.
    let doc = call(&api, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(doc.status, 200);
}
