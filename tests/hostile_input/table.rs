//! The table of hostile requests: every numeric and string field of every RPC, with 0, −1,
//! i64::MAX, u64::MAX, 2^63, NaN, ±inf, NUL and oversized values, each with the status it must
//! get and a part of the message that names the field (and the limit, where there is one).

use std::collections::HashMap;

use cairn::api::pb;
use serde_json::json;
use tonic::Code;

use super::calls::Call;

/// What the table's requests refer to: an echo agent, a team, a closed and a running execution
/// with the lease the test holds as its worker.
pub struct Fixture {
    pub agent: String,
    pub team: String,
    pub done: String,
    pub live: String,
    pub lease: pb::Lease,
}

/// One hostile request.
pub struct Case {
    /// What is hostile about it, for failure messages.
    pub what: String,
    pub call: Call,
    /// The status both stores must answer.
    pub code: Code,
    /// A part of the message: the field, and the limit when one applies.
    pub hint: String,
}

pub const NUL: &str = "a\0b";
const TWO_TO_63: u64 = 1 << 63;

pub fn big(n: usize) -> String {
    "x".repeat(n)
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every hostile request, each refused with INVALID_ARGUMENT unless it says otherwise.
pub fn cases(f: &Fixture) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |what: &str, call: Call, hint: &str| {
        cases.push(Case {
            what: what.into(),
            call,
            code: Code::InvalidArgument,
            hint: hint.into(),
        })
    };

    // AgentService.
    let agent = |name: &str| pb::CreateAgentRequest {
        name: name.into(),
        runtime: "echo".into(),
        configuration_json: "{}".into(),
        ..Default::default()
    };
    let create = |r: pb::CreateAgentRequest| Call::CreateAgent(r);
    add(
        "name with NUL",
        create(agent(NUL)),
        "name `a\\0b` is invalid",
    );
    add(
        "10,000-character name",
        create(agent(&big(10_000))),
        "(10000 bytes)",
    );
    add(
        "namespace with NUL",
        create(pb::CreateAgentRequest {
            namespace: NUL.into(),
            ..agent("n1")
        }),
        "namespace",
    );
    add(
        "runtime with NUL",
        create(pb::CreateAgentRequest {
            runtime: NUL.into(),
            ..agent("n1")
        }),
        "runtime contains a NUL",
    );
    add(
        "oversized runtime",
        create(pb::CreateAgentRequest {
            runtime: big(64),
            ..agent("n1")
        }),
        "runtime is 64 bytes; the limit is 63 bytes",
    );
    add(
        "model_id with NUL",
        create(pb::CreateAgentRequest {
            model_id: NUL.into(),
            ..agent("n1")
        }),
        "model_id contains a NUL",
    );
    add(
        "100 KB model_id",
        create(pb::CreateAgentRequest {
            model_id: big(100 * 1024),
            ..agent("n1")
        }),
        "model_id is 102400 bytes; the limit is 256 bytes",
    );
    let configurations = [
        (
            "NUL in a configuration string",
            json!({ "runtime_config": { "chunks": ["a\u{0}b"] } }).to_string(),
            "a string in configuration_json contains a NUL",
        ),
        (
            "NUL in a configuration key",
            json!({ "runtime_config": { "a\u{0}": 1 } }).to_string(),
            "a key in configuration_json contains a NUL",
        ),
        (
            "unknown top-level configuration key",
            json!({ "runtime_config": {}, "temperature": 2 }).to_string(),
            "configuration_json key `temperature` is unknown",
        ),
        (
            "3 MB configuration",
            json!({ "runtime_config": { "chunks": [big(3_000_000)] } }).to_string(),
            "the limit is 262144 bytes",
        ),
        (
            "a number beyond f64 in the configuration",
            r#"{"runtime_config": {"delay_ms": 1e400}}"#.to_string(),
            "configuration_json is not valid JSON",
        ),
    ];
    for (what, configuration, hint) in &configurations {
        add(
            what,
            create(pb::CreateAgentRequest {
                configuration_json: configuration.clone(),
                ..agent("n1")
            }),
            hint,
        );
        add(
            &format!("update: {what}"),
            Call::UpdateAgent(pb::UpdateAgentRequest {
                agent: f.agent.clone(),
                configuration_json: Some(configuration.clone()),
                ..Default::default()
            }),
            hint,
        );
    }
    add(
        "update: model_id with NUL",
        Call::UpdateAgent(pb::UpdateAgentRequest {
            agent: f.agent.clone(),
            model_id: Some(NUL.into()),
            ..Default::default()
        }),
        "model_id contains a NUL",
    );
    add(
        "update: runtime with NUL",
        Call::UpdateAgent(pb::UpdateAgentRequest {
            agent: f.agent.clone(),
            runtime: Some(NUL.into()),
            ..Default::default()
        }),
        "runtime contains a NUL",
    );
    for (what, name) in [("NUL", NUL.to_string()), ("oversized", big(10_000))] {
        add(
            &format!("get agent: {what} name"),
            Call::GetAgent(pb::GetAgentRequest {
                agent: name.clone(),
                ..Default::default()
            }),
            "is neither a name",
        );
        add(
            &format!("archive agent: {what} name"),
            Call::ArchiveAgent(pb::ArchiveAgentRequest {
                agent: name.clone(),
                ..Default::default()
            }),
            "is neither a name",
        );
        add(
            &format!("update agent: {what} name"),
            Call::UpdateAgent(pb::UpdateAgentRequest {
                agent: name,
                ..Default::default()
            }),
            "is neither a name",
        );
    }
    add(
        "list agents: page_size u32::MAX",
        Call::ListAgents(pb::ListAgentsRequest {
            page_size: u32::MAX,
            ..Default::default()
        }),
        "page_size 4294967295 is over the limit of 1000",
    );
    add(
        "list agents: page_token with NUL",
        Call::ListAgents(pb::ListAgentsRequest {
            page_token: NUL.into(),
            ..Default::default()
        }),
        "page_token `a\\0b`",
    );

    // TeamService.
    let team = |name: &str| pb::CreateTeamRequest {
        name: name.into(),
        strategy: "sequential".into(),
        members: vec![pb::TeamMember {
            agent: f.agent.clone(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let create_team = |r: pb::CreateTeamRequest| Call::CreateTeam(r);
    add(
        "team name with NUL",
        create_team(team(NUL)),
        "name `a\\0b` is invalid",
    );
    add(
        "team name oversized",
        create_team(team(&big(10_000))),
        "(10000 bytes)",
    );
    add(
        "team strategy with NUL",
        create_team(pb::CreateTeamRequest {
            strategy: NUL.into(),
            ..team("t1")
        }),
        "strategy `a\\0b` is unknown",
    );
    add(
        "team member agent with NUL",
        create_team(pb::CreateTeamRequest {
            members: vec![pb::TeamMember {
                agent: NUL.into(),
                ..Default::default()
            }],
            ..team("t1")
        }),
        "is neither a name",
    );
    add(
        "team member role with NUL",
        create_team(pb::CreateTeamRequest {
            members: vec![pb::TeamMember {
                agent: f.agent.clone(),
                role: NUL.into(),
                ..Default::default()
            }],
            ..team("t1")
        }),
        "member 1 role contains a NUL",
    );
    add(
        "team member role oversized",
        create_team(pb::CreateTeamRequest {
            members: vec![pb::TeamMember {
                agent: f.agent.clone(),
                role: big(5_000),
                ..Default::default()
            }],
            ..team("t1")
        }),
        "member 1 role is 5000 bytes; the limit is 4096 bytes",
    );
    add(
        "team aggregator with NUL",
        create_team(pb::CreateTeamRequest {
            strategy: "parallel".into(),
            aggregator: NUL.into(),
            ..team("t1")
        }),
        "is neither a name",
    );
    add(
        "team leader with NUL",
        create_team(pb::CreateTeamRequest {
            strategy: "supervisor".into(),
            leader: NUL.into(),
            ..team("t1")
        }),
        "is neither a name",
    );
    add(
        "team max_rounds u32::MAX",
        create_team(pb::CreateTeamRequest {
            max_rounds: u32::MAX,
            ..team("t1")
        }),
        "max_rounds 4294967295 is over the limit of 100",
    );
    add(
        "team max_parallel u32::MAX",
        create_team(pb::CreateTeamRequest {
            max_parallel: u32::MAX,
            ..team("t1")
        }),
        "max_parallel 4294967295 is over the limit of 64",
    );
    add(
        "update team: member with NUL",
        Call::UpdateTeam(pb::UpdateTeamRequest {
            team: f.team.clone(),
            definition: Some(pb::CreateTeamRequest {
                members: vec![pb::TeamMember {
                    agent: NUL.into(),
                    ..Default::default()
                }],
                ..team("")
            }),
            ..Default::default()
        }),
        "is neither a name",
    );
    add(
        "get team: NUL",
        Call::GetTeam(pb::GetTeamRequest {
            team: NUL.into(),
            ..Default::default()
        }),
        "is neither a name",
    );
    add(
        "archive team: NUL",
        Call::ArchiveTeam(pb::ArchiveTeamRequest {
            team: NUL.into(),
            ..Default::default()
        }),
        "is neither a name",
    );
    add(
        "list teams: page_size u32::MAX",
        Call::ListTeams(pb::ListTeamsRequest {
            page_size: u32::MAX,
            ..Default::default()
        }),
        "page_size 4294967295 is over the limit of 1000",
    );

    // ExecutionService: StartExecution.
    let start = || pb::StartExecutionRequest {
        agent: f.agent.clone(),
        prompt: "hi".into(),
        ..Default::default()
    };
    let starts: Vec<(&str, pb::StartExecutionRequest, &str)> = vec![
        (
            "prompt with NUL",
            pb::StartExecutionRequest {
                prompt: NUL.into(),
                ..start()
            },
            "prompt 1 contains a NUL",
        ),
        (
            "prompts with NUL",
            pb::StartExecutionRequest {
                prompt: String::new(),
                prompts: vec!["ok".into(), NUL.into()],
                ..start()
            },
            "prompt 2 contains a NUL",
        ),
        (
            "100,000 one-character turns",
            pb::StartExecutionRequest {
                prompt: String::new(),
                prompts: vec!["x".into(); 100_000],
                ..start()
            },
            "100000 prompts given; an execution has at most 1000 turns",
        ),
        (
            "agent with NUL",
            pb::StartExecutionRequest {
                agent: NUL.into(),
                ..start()
            },
            "is neither a name",
        ),
        (
            "team with NUL",
            pb::StartExecutionRequest {
                agent: String::new(),
                team: NUL.into(),
                ..start()
            },
            "is neither a name",
        ),
        (
            "namespace with NUL",
            pb::StartExecutionRequest {
                namespace: NUL.into(),
                ..start()
            },
            "namespace `a\\0b`",
        ),
        (
            "queue with NUL",
            pb::StartExecutionRequest {
                queue: NUL.into(),
                ..start()
            },
            "queue `a\\0b`",
        ),
        (
            "runtime with NUL",
            pb::StartExecutionRequest {
                runtime: NUL.into(),
                ..start()
            },
            "runtime contains a NUL",
        ),
        (
            "runtime oversized",
            pb::StartExecutionRequest {
                runtime: big(64),
                ..start()
            },
            "runtime is 64 bytes; the limit is 63 bytes",
        ),
        (
            "request_id with NUL",
            pb::StartExecutionRequest {
                request_id: NUL.into(),
                ..start()
            },
            "request_id contains a NUL",
        ),
        (
            "request_id oversized",
            pb::StartExecutionRequest {
                request_id: big(257),
                ..start()
            },
            "request_id is 257 bytes; the limit is 256 bytes",
        ),
        (
            "label key with NUL",
            pb::StartExecutionRequest {
                labels: labels(&[(NUL, "v")]),
                ..start()
            },
            "label key contains a NUL",
        ),
        (
            "label key with a control character",
            pb::StartExecutionRequest {
                labels: labels(&[("a\nb", "v")]),
                ..start()
            },
            "label key `a\\nb` contains a control character",
        ),
        (
            "label value with NUL",
            pb::StartExecutionRequest {
                labels: labels(&[("k", NUL)]),
                ..start()
            },
            "the value of label `k` contains a NUL",
        ),
        (
            "label value oversized",
            pb::StartExecutionRequest {
                labels: labels(&[("k", &big(257))]),
                ..start()
            },
            "the value of label `k` is 257 bytes; the limit is 256 bytes",
        ),
        (
            "33 labels",
            pb::StartExecutionRequest {
                labels: (0..33)
                    .map(|i| (format!("k{i}"), "v".to_string()))
                    .collect(),
                ..start()
            },
            "33 labels given; at most 32",
        ),
    ];
    for (what, request, hint) in starts {
        add(what, Call::Start(request), hint);
    }
    let timeouts = |t: pb::Timeouts| {
        Call::Start(pb::StartExecutionRequest {
            timeouts: Some(t),
            ..start()
        })
    };
    for (value, name) in [
        (i64::MAX as u64, "i64::MAX"),
        (u64::MAX, "u64::MAX"),
        (TWO_TO_63, "2^63"),
    ] {
        for field in ["heartbeat_ms", "start_to_close_ms", "schedule_to_start_ms"] {
            let mut t = pb::Timeouts::default();
            match field {
                "heartbeat_ms" => t.heartbeat_ms = value,
                "start_to_close_ms" => t.start_to_close_ms = value,
                _ => t.schedule_to_start_ms = value,
            }
            add(
                &format!("timeouts.{field} {name}"),
                timeouts(t),
                &format!("timeouts.{field} is {value} ms; the limit is 31536000000 ms (365 days)"),
            );
        }
        add(
            &format!("execution_timeout_ms {name}"),
            Call::Start(pb::StartExecutionRequest {
                execution_timeout_ms: value,
                ..start()
            }),
            &format!("execution_timeout_ms is {value} ms; the limit is 31536000000 ms (365 days)"),
        );
    }
    let policy = |p: pb::RetryPolicy| {
        Call::Start(pb::StartExecutionRequest {
            retry_policy: Some(p),
            ..start()
        })
    };
    let base = pb::RetryPolicy {
        initial_interval_ms: 100,
        ..Default::default()
    };
    add(
        "retry_policy.initial_interval_ms 0",
        policy(pb::RetryPolicy {
            initial_interval_ms: 0,
            ..base.clone()
        }),
        "initial_interval_ms must be at least 1",
    );
    for (value, name) in [(i64::MAX as u64, "i64::MAX"), (u64::MAX, "u64::MAX")] {
        add(
            &format!("retry_policy.initial_interval_ms {name}"),
            policy(pb::RetryPolicy {
                initial_interval_ms: value,
                ..base.clone()
            }),
            "retry_policy.initial_interval_ms is",
        );
        add(
            &format!("retry_policy.maximum_interval_ms {name}"),
            policy(pb::RetryPolicy {
                maximum_interval_ms: value,
                ..base.clone()
            }),
            "retry_policy.maximum_interval_ms is",
        );
    }
    for (value, name) in [
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+inf"),
        (f64::NEG_INFINITY, "-inf"),
        (-1.0, "-1"),
    ] {
        add(
            &format!("retry_policy.backoff_coefficient {name}"),
            policy(pb::RetryPolicy {
                backoff_coefficient: value,
                ..base.clone()
            }),
            "backoff_coefficient must be between 1 and 100",
        );
    }
    add(
        "retry_policy.maximum_attempts u32::MAX",
        policy(pb::RetryPolicy {
            maximum_attempts: u32::MAX,
            ..base.clone()
        }),
        "maximum_attempts 4294967295 is over the limit of 10000",
    );
    add(
        "retry_policy.non_retryable_codes with NUL",
        policy(pb::RetryPolicy {
            non_retryable_codes: vec![NUL.into()],
            ..base.clone()
        }),
        "non_retryable_codes[0]",
    );
    add(
        "retry_policy.non_retryable_codes 65 codes",
        policy(pb::RetryPolicy {
            non_retryable_codes: (0..65).map(|i| format!("c{i}")).collect(),
            ..base.clone()
        }),
        "lists 65 codes; the limit is 64",
    );

    // ExecutionService: the rest.
    add(
        "get: id with NUL",
        Call::Get(pb::GetExecutionRequest { id: NUL.into() }),
        "id `a\\0b` is not a valid id",
    );
    add(
        "get: 10,000-character id",
        Call::Get(pb::GetExecutionRequest { id: big(10_000) }),
        "(10000 bytes)",
    );
    add(
        "delete: id with NUL",
        Call::Delete(pb::DeleteExecutionRequest { id: NUL.into() }),
        "id `a\\0b` is not a valid id",
    );
    add(
        "delete: 10,000-character id",
        Call::Delete(pb::DeleteExecutionRequest { id: big(10_000) }),
        "(10000 bytes)",
    );
    let list = pb::ListExecutionsRequest::default;
    let lists: Vec<(&str, pb::ListExecutionsRequest, &str)> = vec![
        (
            "status with NUL",
            pb::ListExecutionsRequest {
                status: vec![NUL.into()],
                ..list()
            },
            "status `a\\0b` is unknown",
        ),
        (
            "agent filter with NUL",
            pb::ListExecutionsRequest {
                agent: NUL.into(),
                ..list()
            },
            "is neither a name",
        ),
        (
            "runtime filter with NUL",
            pb::ListExecutionsRequest {
                runtime: NUL.into(),
                ..list()
            },
            "runtime contains a NUL",
        ),
        (
            "parent_id with NUL",
            pb::ListExecutionsRequest {
                parent_id: NUL.into(),
                ..list()
            },
            "parent_id `a\\0b`",
        ),
        (
            "label filter with NUL",
            pb::ListExecutionsRequest {
                labels: labels(&[("k", NUL)]),
                ..list()
            },
            "contains a NUL",
        ),
        (
            "created_after_ms -1",
            pb::ListExecutionsRequest {
                created_after_ms: -1,
                ..list()
            },
            "must not be negative",
        ),
        (
            "created_before_ms i64::MIN",
            pb::ListExecutionsRequest {
                created_before_ms: i64::MIN,
                ..list()
            },
            "must not be negative",
        ),
        (
            "page_size u32::MAX",
            pb::ListExecutionsRequest {
                page_size: u32::MAX,
                ..list()
            },
            "page_size 4294967295",
        ),
        (
            "page_token with NUL",
            pb::ListExecutionsRequest {
                page_token: NUL.into(),
                ..list()
            },
            "page_token `a\\0b`",
        ),
    ];
    for (what, request, hint) in lists {
        add(&format!("list: {what}"), Call::List(request), hint);
    }
    add(
        "cancel: reason with NUL",
        Call::Cancel(pb::CancelExecutionRequest {
            id: f.live.clone(),
            reason: NUL.into(),
        }),
        "reason contains a NUL",
    );
    add(
        "cancel: reason oversized",
        Call::Cancel(pb::CancelExecutionRequest {
            id: f.live.clone(),
            reason: big(5_000),
        }),
        "reason is 5000 bytes; the limit is 4096 bytes",
    );
    for (value, name) in [(TWO_TO_63, "2^63"), (u64::MAX, "u64::MAX")] {
        add(
            &format!("stream: after_seq {name}"),
            Call::Stream(pb::StreamExecutionRequest {
                id: f.live.clone(),
                after_seq: value,
                include_superseded: false,
            }),
            &format!("after_seq {value} is over the highest seq"),
        );
        add(
            &format!("history: after_seq {name}"),
            Call::History(pb::GetHistoryRequest {
                id: f.live.clone(),
                after_seq: value,
            }),
            &format!("after_seq {value} is over the highest seq"),
        );
        add(
            &format!("retry: from_seq {name}"),
            Call::Retry(pb::RetryExecutionRequest {
                id: f.done.clone(),
                from_seq: value,
                ..Default::default()
            }),
            &format!("from_seq {value} is over the highest seq"),
        );
    }
    add(
        "replay: id with NUL",
        Call::Replay(pb::ReplayExecutionRequest { id: NUL.into() }),
        "not a valid id",
    );
    add(
        "retry: prompt of turn u32::MAX",
        Call::Retry(pb::RetryExecutionRequest {
            id: f.done.clone(),
            prompts: [(u32::MAX, "x".to_string())].into_iter().collect(),
            ..Default::default()
        }),
        "from 1 to 1000; got 4294967295",
    );
    add(
        "retry: prompt with NUL",
        Call::Retry(pb::RetryExecutionRequest {
            id: f.done.clone(),
            prompts: [(1, NUL.to_string())].into_iter().collect(),
            ..Default::default()
        }),
        "the new prompt of turn 1 contains a NUL",
    );
    add(
        "retry: retry_policy.maximum_interval_ms u64::MAX",
        Call::Retry(pb::RetryExecutionRequest {
            id: f.done.clone(),
            retry_policy: Some(pb::RetryPolicy {
                maximum_interval_ms: u64::MAX,
                ..base.clone()
            }),
            ..Default::default()
        }),
        "retry_policy.maximum_interval_ms is",
    );
    add(
        "stats: window_ms u64::MAX",
        Call::Stats(pb::GetStatsRequest {
            window_ms: u64::MAX,
            ..Default::default()
        }),
        "window_ms is 18446744073709551615 ms; the limit is",
    );
    add(
        "stats: by with NUL",
        Call::Stats(pb::GetStatsRequest {
            by: NUL.into(),
            ..Default::default()
        }),
        "use runtime, agent or model",
    );
    add(
        "stats: namespace with NUL",
        Call::Stats(pb::GetStatsRequest {
            namespace: NUL.into(),
            ..Default::default()
        }),
        "namespace",
    );

    super::worker_table::worker_cases(f, &mut add);
    super::conversation_table::conversation_cases(f, &mut add);
    cases
}
