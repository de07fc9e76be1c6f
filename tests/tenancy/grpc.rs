//! The gRPC table: a row per RPC (the descriptor's list), each sent with `a`'s token at `b`'s
//! agent, team and executions.

use cairn::api::pb;
use serde_json::json;
use tonic::{Code, Status};
use uuid::Uuid;

use super::fixture::{ADMIN, ADMIN_A, Fixture, TOKEN_A, TOKEN_B, first_of_stream, unary};

/// What one check found wrong, if anything.
type Verdict = Result<(), String>;

/// Sends `message` to `method` and drops the reply.
async fn send<Q>(
    fx: &Fixture,
    method: &str,
    token: &str,
    named: Option<&str>,
    message: Q,
) -> Result<(), Status>
where
    Q: prost::Message + Send + Sync + 'static,
{
    if method == "StreamExecution" {
        first_of_stream::<Q, pb::StreamExecutionResponse>(
            &fx.channel,
            fx.path(method),
            token,
            named,
            message,
        )
        .await
        .map(drop)
    } else {
        unary::<Q, ()>(&fx.channel, fx.path(method), token, named, message).await
    }
}

fn code(got: Result<(), Status>, want: Code) -> Verdict {
    match got {
        Err(status) if status.code() == want => Ok(()),
        Err(status) => Err(format!(
            "{:?} `{}` (want {want:?})",
            status.code(),
            status.message()
        )),
        Ok(()) => Err(format!("answered (want {want:?})")),
    }
}

fn ok(got: Result<(), Status>) -> Verdict {
    got.map_err(|s| format!("the control was refused: {:?} `{}`", s.code(), s.message()))
}

/// `b`'s execution `id` asked for by `a`, by id alone and naming `b` in the metadata: the same
/// NOT_FOUND, word for word, as an id that does not exist. The control: `b` gets it.
async fn hidden<F, Q>(
    fx: &Fixture,
    method: &str,
    id: &str,
    control: bool,
    make: F,
) -> Vec<(String, Verdict)>
where
    F: Fn(String) -> Q,
    Q: prost::Message + Send + Sync + 'static,
{
    hidden_as(fx, TOKEN_A, method, id, control, make).await
}

/// As `hidden`, asked with `token`.
async fn hidden_as<F, Q>(
    fx: &Fixture,
    token: &str,
    method: &str,
    id: &str,
    control: bool,
    make: F,
) -> Vec<(String, Verdict)>
where
    F: Fn(String) -> Q,
    Q: prost::Message + Send + Sync + 'static,
{
    let fresh = Uuid::now_v7().to_string();
    let missing = send(fx, method, token, None, make(fresh.clone())).await;
    let missing = match missing {
        Err(s) if s.code() == Code::NotFound => s.message().replace(&fresh, id),
        other => {
            return vec![(
                "a missing id".into(),
                Err(format!("{other:?} (want NOT_FOUND)")),
            )];
        }
    };
    let mut rows = Vec::new();
    for named in [None, Some("b")] {
        let got = send(fx, method, token, named, make(id.to_string())).await;
        let verdict = match got {
            Err(s) if s.code() == Code::NotFound && s.message() == missing => Ok(()),
            Err(s) => Err(format!(
                "{:?} `{}` (want NOT_FOUND `{missing}`)",
                s.code(),
                s.message()
            )),
            Ok(()) => Err(format!("answered (want NOT_FOUND `{missing}`)")),
        };
        rows.push((format!("{id} named {named:?}"), verdict));
    }
    if control {
        let got = send(fx, method, TOKEN_B, None, make(id.to_string())).await;
        rows.push((format!("{id} with b's token"), ok(got)));
    }
    rows
}

/// The rows of one RPC. A new RPC has no arm: the test fails until it gets one.
async fn rows(fx: &Fixture, method: &str) -> Vec<(String, Verdict)> {
    let mut rows: Vec<(String, Verdict)> = Vec::new();
    let denied_b = |what: &str, got| {
        (
            format!("{what} in namespace b"),
            code(got, Code::PermissionDenied),
        )
    };
    let not_found = |what: &str, got| (what.to_string(), code(got, Code::NotFound));
    match method {
        "CreateAgent" => {
            let r = pb::CreateAgentRequest {
                namespace: "b".into(),
                name: "intruder".into(),
                runtime: "echo".into(),
                configuration_json: "{}".into(),
                ..Default::default()
            };
            rows.push(denied_b(
                "create",
                send(fx, method, TOKEN_A, None, r.clone()).await,
            ));
            let named = pb::CreateAgentRequest {
                namespace: String::new(),
                ..r
            };
            rows.push(denied_b(
                "create named in metadata",
                send(fx, method, TOKEN_A, Some("b"), named).await,
            ));
        }
        "GetAgent" | "UpdateAgent" | "ArchiveAgent" | "GetTeam" | "UpdateTeam" | "ArchiveTeam" => {
            let team = method.ends_with("Team");
            let (id, name) = if team {
                (&fx.team_id, "t")
            } else {
                (&fx.agent_id, "e")
            };
            for (namespace, key) in [
                ("b", name),
                ("b", id.as_str()),
                ("", id.as_str()),
                ("", name),
            ] {
                let got = match method {
                    "GetAgent" => {
                        send(
                            fx,
                            method,
                            TOKEN_A,
                            None,
                            pb::GetAgentRequest {
                                namespace: namespace.into(),
                                agent: key.into(),
                            },
                        )
                        .await
                    }
                    "UpdateAgent" => {
                        send(
                            fx,
                            method,
                            TOKEN_A,
                            None,
                            pb::UpdateAgentRequest {
                                namespace: namespace.into(),
                                agent: key.into(),
                                model_id: Some("stolen".into()),
                                ..Default::default()
                            },
                        )
                        .await
                    }
                    "ArchiveAgent" => {
                        send(
                            fx,
                            method,
                            TOKEN_A,
                            None,
                            pb::ArchiveAgentRequest {
                                namespace: namespace.into(),
                                agent: key.into(),
                                ..Default::default()
                            },
                        )
                        .await
                    }
                    "GetTeam" => {
                        send(
                            fx,
                            method,
                            TOKEN_A,
                            None,
                            pb::GetTeamRequest {
                                namespace: namespace.into(),
                                team: key.into(),
                            },
                        )
                        .await
                    }
                    "UpdateTeam" => {
                        send(
                            fx,
                            method,
                            TOKEN_A,
                            None,
                            pb::UpdateTeamRequest {
                                namespace: namespace.into(),
                                team: key.into(),
                                definition: Some(pb::CreateTeamRequest {
                                    strategy: "sequential".into(),
                                    members: vec![pb::TeamMember {
                                        agent: fx.agent_id.clone(),
                                        ..Default::default()
                                    }],
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                        )
                        .await
                    }
                    _ => {
                        send(
                            fx,
                            method,
                            TOKEN_A,
                            None,
                            pb::ArchiveTeamRequest {
                                namespace: namespace.into(),
                                team: key.into(),
                                ..Default::default()
                            },
                        )
                        .await
                    }
                };
                rows.push(if namespace == "b" {
                    denied_b(key, got)
                } else {
                    not_found(&format!("{key} in a's namespace"), got)
                });
            }
            if method.starts_with("Get") {
                let got = if team {
                    send(
                        fx,
                        method,
                        TOKEN_B,
                        None,
                        pb::GetTeamRequest {
                            team: fx.team_id.clone(),
                            ..Default::default()
                        },
                    )
                    .await
                } else {
                    send(
                        fx,
                        method,
                        TOKEN_B,
                        None,
                        pb::GetAgentRequest {
                            agent: fx.agent_id.clone(),
                            ..Default::default()
                        },
                    )
                    .await
                };
                rows.push(("b's own token".into(), ok(got)));
            }
        }
        "ListAgents" => {
            let list = |namespace: &str| pb::ListAgentsRequest {
                namespace: namespace.into(),
                include_archived: true,
                ..Default::default()
            };
            rows.push(denied_b(
                "list",
                send(fx, method, TOKEN_A, None, list("b")).await,
            ));
            rows.push(denied_b(
                "list named in metadata",
                send(fx, method, TOKEN_A, Some("b"), list("")).await,
            ));
            let own: Result<pb::ListAgentsResponse, _> =
                unary(&fx.channel, fx.path(method), TOKEN_A, None, list("")).await;
            rows.push((
                "a's own list".into(),
                own.map_err(|s| s.to_string()).and_then(|r| {
                    if r.agents.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("lists {:?}", r.agents))
                    }
                }),
            ));
            let theirs: Result<pb::ListAgentsResponse, _> =
                unary(&fx.channel, fx.path(method), TOKEN_B, None, list("")).await;
            rows.push((
                "b's own list".into(),
                theirs.map_err(|s| s.to_string()).and_then(|r| {
                    if r.agents.len() == 1 {
                        Ok(())
                    } else {
                        Err(format!("lists {:?}", r.agents))
                    }
                }),
            ));
        }
        "ListTeams" => {
            let list = |namespace: &str| pb::ListTeamsRequest {
                namespace: namespace.into(),
                include_archived: true,
                ..Default::default()
            };
            rows.push(denied_b(
                "list",
                send(fx, method, TOKEN_A, None, list("b")).await,
            ));
            let own: Result<pb::ListTeamsResponse, _> =
                unary(&fx.channel, fx.path(method), TOKEN_A, None, list("")).await;
            rows.push((
                "a's own list".into(),
                own.map_err(|s| s.to_string()).and_then(|r| {
                    if r.teams.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("lists {:?}", r.teams))
                    }
                }),
            ));
        }
        "ListRuntimes" => {
            // The server's runtimes belong to no namespace.
            rows.push((
                "runtimes".into(),
                ok(send(
                    fx,
                    method,
                    TOKEN_A,
                    None,
                    pb::ListRuntimesRequest::default(),
                )
                .await),
            ));
        }
        "CreateTeam" => {
            let r = pb::CreateTeamRequest {
                namespace: "b".into(),
                name: "intruders".into(),
                strategy: "sequential".into(),
                members: vec![pb::TeamMember {
                    agent: "e".into(),
                    ..Default::default()
                }],
                ..Default::default()
            };
            rows.push(denied_b("create", send(fx, method, TOKEN_A, None, r).await));
        }
        "StartExecution" => {
            let start = |namespace: &str, agent: &str, team: &str| pb::StartExecutionRequest {
                namespace: namespace.into(),
                agent: agent.into(),
                team: team.into(),
                prompt: "hi".into(),
                ..Default::default()
            };
            rows.push(denied_b(
                "start b's agent",
                send(fx, method, TOKEN_A, None, start("b", "e", "")).await,
            ));
            rows.push(denied_b(
                "start named in metadata",
                send(fx, method, TOKEN_A, Some("b"), start("", "e", "")).await,
            ));
            rows.push(not_found(
                "start b's agent by id",
                send(fx, method, TOKEN_A, None, start("", &fx.agent_id, "")).await,
            ));
            rows.push(not_found(
                "start b's team by id",
                send(fx, method, TOKEN_A, None, start("", "", &fx.team_id)).await,
            ));
        }
        "GetExecution" => {
            for id in [&fx.done, &fx.team_run] {
                rows.extend(
                    hidden(fx, method, id, true, |id| pb::GetExecutionRequest { id }).await,
                );
            }
        }
        "GetHistory" => {
            rows.extend(
                hidden(fx, method, &fx.done, true, |id| pb::GetHistoryRequest {
                    id,
                    after_seq: 0,
                })
                .await,
            );
        }
        "StreamExecution" => {
            for id in [&fx.done, &fx.team_run] {
                rows.extend(
                    hidden(fx, method, id, true, |id| pb::StreamExecutionRequest {
                        id,
                        after_seq: 0,
                        include_superseded: true,
                    })
                    .await,
                );
            }
        }
        "ReplayExecution" => {
            rows.extend(
                hidden(fx, method, &fx.done, true, |id| {
                    pb::ReplayExecutionRequest { id }
                })
                .await,
            );
        }
        "CancelExecution" => {
            // Closed or not, a's cancel must not even learn that it exists.
            for id in [&fx.done, &fx.team_run] {
                rows.extend(
                    hidden(fx, method, id, false, |id| pb::CancelExecutionRequest {
                        id,
                        reason: String::new(),
                    })
                    .await,
                );
            }
        }
        // A person in the loop (issue 14): a's token can neither talk to b's execution nor answer
        // its approvals, nor learn that it exists.
        "SendMessage" => {
            rows.extend(
                hidden(fx, method, &fx.done, false, |id| pb::SendMessageRequest {
                    id,
                    text: "hello".into(),
                    request_id: String::new(),
                })
                .await,
            );
        }
        "CloseExecution" => {
            rows.extend(
                hidden(fx, method, &fx.done, false, |id| {
                    pb::CloseExecutionRequest { id }
                })
                .await,
            );
        }
        "ResolveApproval" => {
            rows.extend(
                hidden(fx, method, &fx.team_run, false, |id| {
                    pb::ResolveApprovalRequest {
                        id,
                        approval_id: "turn-1:toolu_1".into(),
                        allow: true,
                        ..Default::default()
                    }
                })
                .await,
            );
        }
        "RetryExecution" => {
            rows.extend(
                hidden(fx, method, &fx.cancelled, false, |id| {
                    pb::RetryExecutionRequest {
                        id,
                        force: true,
                        ..Default::default()
                    }
                })
                .await,
            );
        }
        "ListExecutions" => {
            let list = |namespace: &str, parent: &str| pb::ListExecutionsRequest {
                namespace: namespace.into(),
                parent_id: parent.into(),
                ..Default::default()
            };
            rows.push(denied_b(
                "list",
                send(fx, method, TOKEN_A, None, list("b", "")).await,
            ));
            rows.push(denied_b(
                "list named in metadata",
                send(fx, method, TOKEN_A, Some("b"), list("", "")).await,
            ));
            for parent in ["", fx.team_run.as_str()] {
                let own: Result<pb::ListExecutionsResponse, _> = unary(
                    &fx.channel,
                    fx.path(method),
                    TOKEN_A,
                    None,
                    list("", parent),
                )
                .await;
                rows.push((
                    format!("a's own list, parent {parent:?}"),
                    own.map_err(|s| s.to_string()).and_then(|r| {
                        if r.executions.is_empty() {
                            Ok(())
                        } else {
                            Err(format!("lists {} of b's", r.executions.len()))
                        }
                    }),
                ));
            }
            let theirs: Result<pb::ListExecutionsResponse, _> =
                unary(&fx.channel, fx.path(method), TOKEN_B, None, list("", "")).await;
            rows.push((
                "b's own list".into(),
                theirs.map_err(|s| s.to_string()).and_then(|r| {
                    if r.executions.len() >= 3 {
                        Ok(())
                    } else {
                        Err(format!("lists {} executions", r.executions.len()))
                    }
                }),
            ));
        }
        "GetStats" => {
            rows.push(denied_b(
                "stats",
                send(
                    fx,
                    method,
                    TOKEN_A,
                    None,
                    pb::GetStatsRequest {
                        namespace: "b".into(),
                        ..Default::default()
                    },
                )
                .await,
            ));
            let own: Result<pb::GetStatsResponse, _> = unary(
                &fx.channel,
                fx.path(method),
                TOKEN_A,
                None,
                pb::GetStatsRequest::default(),
            )
            .await;
            rows.push((
                "a's own stats".into(),
                own.map_err(|s| s.to_string()).and_then(|r| {
                    if r.agents.is_empty() && r.executions.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("counts b's: {r:?}"))
                    }
                }),
            ));
        }
        "DeleteExecution" => {
            // A client token deletes nothing; an admin of a alone cannot see b's.
            let r = pb::DeleteExecutionRequest {
                id: fx.done.clone(),
            };
            rows.push((
                "a client deletes".into(),
                code(
                    send(fx, method, TOKEN_A, None, r).await,
                    Code::PermissionDenied,
                ),
            ));
            for id in [&fx.done, &fx.team_run] {
                rows.extend(
                    hidden_as(fx, ADMIN_A, method, id, false, |id| {
                        pb::DeleteExecutionRequest { id }
                    })
                    .await,
                );
            }
        }
        "ListWorkers" => {
            // Workers serve every namespace: the list is an operator's, not a tenant's.
            rows.push((
                "list workers".into(),
                code(
                    send(fx, method, TOKEN_A, None, pb::ListWorkersRequest::default()).await,
                    Code::PermissionDenied,
                ),
            ));
            rows.push((
                "an admin lists workers".into(),
                ok(send(fx, method, ADMIN, None, pb::ListWorkersRequest::default()).await),
            ));
        }
        "PollTasks" | "ReportProgress" | "CompleteTask" | "FailTask" | "CancelTask"
        | "ReleaseTask" | "RegisterRuntimes" | "DeregisterWorker" => {
            // A client token takes no work, whatever its namespace; the message is not read.
            rows.push((
                "a worker call".into(),
                code(
                    send(fx, method, TOKEN_A, None, pb::PollTasksRequest::default()).await,
                    Code::PermissionDenied,
                ),
            ));
        }
        other => panic!(
            "{other} has no row in tests/tenancy/grpc.rs: say what a token bound to another namespace gets from it"
        ),
    }
    rows
}

pub async fn every_rpc_keeps_b_from_a(fx: &Fixture) {
    let mut methods: Vec<&String> = fx.paths.keys().collect();
    methods.sort();
    let mut wrong = Vec::new();
    let mut count = 0;
    for method in methods {
        for (what, verdict) in rows(fx, method).await {
            count += 1;
            if let Err(e) = verdict {
                wrong.push(format!("{method} ({what}): {e}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {count} rows wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// The token bound to `a` works in `a` without naming it; a namespace it is not bound to is
/// refused with a message that names it.
pub async fn a_bound_token_works_in_its_own_namespace(fx: &Fixture) {
    let agent: pb::Agent = unary(
        &fx.channel,
        fx.path("CreateAgent"),
        TOKEN_A,
        None,
        pb::CreateAgentRequest {
            name: "mine".into(),
            runtime: "echo".into(),
            configuration_json: json!({}).to_string(),
            ..Default::default()
        },
    )
    .await
    .expect("a creates an agent in a");
    assert_eq!(agent.namespace, "a");
    let started: pb::StartExecutionResponse = unary(
        &fx.channel,
        fx.path("StartExecution"),
        TOKEN_A,
        None,
        pb::StartExecutionRequest {
            agent: "mine".into(),
            prompt: "hello".into(),
            ..Default::default()
        },
    )
    .await
    .expect("a starts in a");
    let first: pb::StreamExecutionResponse = first_of_stream(
        &fx.channel,
        fx.path("StreamExecution"),
        TOKEN_A,
        Some("a"),
        pb::StreamExecutionRequest {
            id: started.execution_id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("a streams its own execution");
    assert!(first.event.is_some());
    let err = unary::<_, pb::Agent>(
        &fx.channel,
        fx.path("GetAgent"),
        TOKEN_A,
        None,
        pb::GetAgentRequest {
            namespace: "c".into(),
            agent: "mine".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("namespace `c`"), "{}", err.message());
    // The admin, bound to no namespace, sees both, and b's token still sees only b.
    let e: pb::Execution = unary(
        &fx.channel,
        fx.path("GetExecution"),
        ADMIN,
        None,
        pb::GetExecutionRequest {
            id: started.execution_id.clone(),
        },
    )
    .await
    .expect("the admin reads a's execution");
    assert_eq!(e.namespace, "a");
    let err = unary::<_, pb::Execution>(
        &fx.channel,
        fx.path("GetExecution"),
        TOKEN_B,
        None,
        pb::GetExecutionRequest {
            id: started.execution_id,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}
