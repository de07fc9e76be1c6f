//! The worker side of the table of hostile requests: polls, and every report with the live
//! lease the test holds, so that a report would be taken were it not for the hostile field.

use cairn::api::pb;
use serde_json::json;

use super::calls::Call;
use super::table::{Fixture, NUL, big};

/// The worker side: polls and every report, with the live lease the test holds.
pub fn worker_cases(f: &Fixture, add: &mut impl FnMut(&str, Call, &str)) {
    let poll = || pb::PollTasksRequest {
        worker_id: "hostile".into(),
        runtimes: vec!["echo".into()],
        max_tasks: 1,
        ..Default::default()
    };
    let polls: Vec<(&str, pb::PollTasksRequest, &str)> = vec![
        (
            "worker_id with NUL",
            pb::PollTasksRequest {
                worker_id: NUL.into(),
                ..poll()
            },
            "worker_id contains a NUL",
        ),
        (
            "worker_id with a control character",
            pb::PollTasksRequest {
                worker_id: "a\tb".into(),
                ..poll()
            },
            "worker_id `a\\tb` contains a control character",
        ),
        (
            "worker_id oversized",
            pb::PollTasksRequest {
                worker_id: big(257),
                ..poll()
            },
            "worker_id is 257 bytes; the limit is 256 bytes",
        ),
        (
            "runtime with NUL",
            pb::PollTasksRequest {
                runtimes: vec![NUL.into()],
                ..poll()
            },
            "a runtime name contains a NUL",
        ),
        (
            "empty runtime",
            pb::PollTasksRequest {
                runtimes: vec![String::new()],
                ..poll()
            },
            "empty name",
        ),
        (
            "40,000 runtimes",
            pb::PollTasksRequest {
                runtimes: (0..40_000).map(|i| format!("r{i}")).collect(),
                ..poll()
            },
            "40000 runtimes given; a poll names at most 64",
        ),
        (
            "queue with NUL",
            pb::PollTasksRequest {
                queue: NUL.into(),
                ..poll()
            },
            "queue `a\\0b`",
        ),
        (
            "policy_json not JSON",
            pb::PollTasksRequest {
                policy_json: "{".into(),
                ..poll()
            },
            "policy_json: not a worker policy",
        ),
        (
            "policy_json admitting LD_PRELOAD",
            pb::PollTasksRequest {
                policy_json: r#"{"env": ["LD_PRELOAD"]}"#.into(),
                ..poll()
            },
            "LD_PRELOAD, which no policy may admit",
        ),
        (
            "policy_json with an unknown rule",
            pb::PollTasksRequest {
                policy_json: r#"{"mcp_command": []}"#.into(),
                ..poll()
            },
            "unknown field `mcp_command`",
        ),
        (
            "policy_json oversized",
            pb::PollTasksRequest {
                policy_json: big(65 * 1024 + 1),
                ..poll()
            },
            "policy_json is",
        ),
        (
            "policy_json with NUL",
            pb::PollTasksRequest {
                policy_json: NUL.into(),
                ..poll()
            },
            "policy_json contains a NUL",
        ),
    ];
    for (what, request, hint) in polls {
        add(&format!("poll: {what}"), Call::Poll(request), hint);
    }
    registrations(add);
    let deregistrations = [
        ("empty", String::new(), "worker_id is required"),
        ("with NUL", NUL.to_string(), "worker_id contains a NUL"),
        (
            "oversized",
            big(257),
            "worker_id is 257 bytes; the limit is 256 bytes",
        ),
    ];
    for (what, worker_id, hint) in deregistrations {
        let call = Call::Deregister(pb::DeregisterWorkerRequest { worker_id });
        add(&format!("deregister: worker_id {what}"), call, hint);
    }

    let lease = || Some(f.lease.clone());
    let text = |s: &str| pb::ChunkIn {
        kind: "text".into(),
        data_json: json!({ "text": s }).to_string(),
    };
    let bad_leases: Vec<(&str, pb::Lease, &str)> = vec![
        (
            "lease_token with NUL",
            pb::Lease {
                lease_token: NUL.into(),
                ..f.lease.clone()
            },
            "lease_token `a\\0b` is not one this server issued",
        ),
        (
            "lease_token oversized",
            pb::Lease {
                lease_token: big(10_000),
                ..f.lease.clone()
            },
            "(10000 bytes)",
        ),
        (
            "activity id with NUL",
            pb::Lease {
                task_id: format!("{}/{NUL}", f.live),
                ..f.lease.clone()
            },
            "the activity id of task_id",
        ),
        (
            "task_id with a NUL execution id",
            pb::Lease {
                task_id: format!("{NUL}/a"),
                ..f.lease.clone()
            },
            "task_id `a\\0b` is not a valid id",
        ),
    ];
    for (what, l, hint) in bad_leases {
        add(
            &format!("progress: {what}"),
            Call::Progress(pb::ReportProgressRequest {
                lease: Some(l.clone()),
                ..Default::default()
            }),
            hint,
        );
        add(
            &format!("complete: {what}"),
            Call::Complete(pb::CompleteTaskRequest {
                lease: Some(l),
                ..Default::default()
            }),
            hint,
        );
    }
    let chunk_cases: Vec<(&str, pb::ChunkIn, &str)> = vec![
        (
            "chunk kind with NUL",
            pb::ChunkIn {
                kind: NUL.into(),
                data_json: "{}".into(),
            },
            "chunk 0 kind contains a NUL",
        ),
        (
            "chunk kind oversized",
            pb::ChunkIn {
                kind: big(65),
                data_json: "{}".into(),
            },
            "chunk 0 kind is 65 bytes; the limit is 64 bytes",
        ),
        (
            "empty chunk kind",
            pb::ChunkIn {
                kind: String::new(),
                data_json: "{}".into(),
            },
            "chunk 0 has no kind",
        ),
        (
            "chunk data with NUL",
            text("a\u{0}b"),
            "a string in chunk 0 data_json contains a NUL",
        ),
        (
            "chunk data oversized",
            text(&big(3 * 1024 * 1024)),
            "the limit is 3145728 bytes",
        ),
    ];
    for (what, chunk, hint) in chunk_cases {
        add(
            &format!("progress: {what}"),
            Call::Progress(pb::ReportProgressRequest {
                lease: lease(),
                chunks: vec![chunk.clone()],
                ..Default::default()
            }),
            hint,
        );
        add(
            &format!("complete: {what}"),
            Call::Complete(pb::CompleteTaskRequest {
                lease: lease(),
                chunks: vec![chunk.clone()],
                ..Default::default()
            }),
            hint,
        );
        add(
            &format!("fail: {what}"),
            Call::Fail(pb::FailTaskRequest {
                lease: lease(),
                chunks: vec![chunk.clone()],
                failure: Some(pb::Failure {
                    code: "x".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            hint,
        );
        add(
            &format!("cancel task: {what}"),
            Call::CancelTask(pb::CancelTaskRequest {
                lease: lease(),
                chunks: vec![chunk.clone()],
                ..Default::default()
            }),
            hint,
        );
        add(
            &format!("release: {what}"),
            Call::Release(pb::ReleaseTaskRequest {
                lease: lease(),
                chunks: vec![chunk],
                ..Default::default()
            }),
            hint,
        );
    }
    let nul_json = json!({ "s": "a\u{0}b" }).to_string();
    let big_json = json!({ "s": big(3 * 1024 * 1024) }).to_string();
    for (what, checkpoint, hint) in [
        (
            "checkpoint with NUL",
            &nul_json,
            "a string in checkpoint_json contains a NUL",
        ),
        (
            "checkpoint oversized",
            &big_json,
            "checkpoint_json is 3145736 bytes; the limit is 3145728 bytes",
        ),
    ] {
        add(
            &format!("progress: {what}"),
            Call::Progress(pb::ReportProgressRequest {
                lease: lease(),
                checkpoint_json: checkpoint.clone(),
                ..Default::default()
            }),
            hint,
        );
        add(
            &format!("complete: {what}"),
            Call::Complete(pb::CompleteTaskRequest {
                lease: lease(),
                checkpoint_json: checkpoint.clone(),
                ..Default::default()
            }),
            hint,
        );
        add(
            &format!("fail: {what}"),
            Call::Fail(pb::FailTaskRequest {
                lease: lease(),
                checkpoint_json: checkpoint.clone(),
                failure: Some(pb::Failure {
                    code: "x".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            hint,
        );
        add(
            &format!("cancel task: {what}"),
            Call::CancelTask(pb::CancelTaskRequest {
                lease: lease(),
                checkpoint_json: checkpoint.clone(),
                ..Default::default()
            }),
            hint,
        );
        add(
            &format!("release: {what}"),
            Call::Release(pb::ReleaseTaskRequest {
                lease: lease(),
                checkpoint_json: checkpoint.clone(),
                ..Default::default()
            }),
            hint,
        );
    }
    for (value, name) in [(u64::MAX, "u64::MAX"), (i64::MAX as u64, "i64::MAX")] {
        add(
            &format!("progress: first_chunk_index {name}"),
            Call::Progress(pb::ReportProgressRequest {
                lease: lease(),
                chunks: vec![text("x")],
                first_chunk_index: Some(value),
                ..Default::default()
            }),
            "first_chunk_index",
        );
        add(
            &format!("complete: first_chunk_index {name}"),
            Call::Complete(pb::CompleteTaskRequest {
                lease: lease(),
                chunks: vec![text("x")],
                first_chunk_index: Some(value),
                ..Default::default()
            }),
            "first_chunk_index",
        );
    }
    for (value, name) in [(NUL.to_string(), "with NUL"), (big(4097), "over 4 KiB")] {
        add(
            &format!("progress: workspace {name}"),
            Call::Progress(pb::ReportProgressRequest {
                lease: lease(),
                workspace: value.clone(),
                ..Default::default()
            }),
            "workspace",
        );
        add(
            &format!("complete: workspace {name}"),
            Call::Complete(pb::CompleteTaskRequest {
                lease: lease(),
                workspace: value,
                ..Default::default()
            }),
            "workspace",
        );
    }
    let complete = |usage: pb::Usage| {
        Call::Complete(pb::CompleteTaskRequest {
            lease: lease(),
            usage: Some(usage),
            ..Default::default()
        })
    };
    for (value, name) in [
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+inf"),
        (f64::NEG_INFINITY, "-inf"),
        (-1.0, "-1"),
    ] {
        add(
            &format!("complete: cost_usd {name}"),
            complete(pb::Usage {
                cost_usd: value,
                ..Default::default()
            }),
            "usage.cost_usd must be a finite number from 0 to",
        );
    }
    for (value, name) in [(u64::MAX, "u64::MAX"), (i64::MAX as u64, "i64::MAX")] {
        add(
            &format!("complete: input_tokens {name}"),
            complete(pb::Usage {
                input_tokens: value,
                ..Default::default()
            }),
            "usage.input_tokens",
        );
        add(
            &format!("complete: output_tokens {name}"),
            complete(pb::Usage {
                output_tokens: value,
                ..Default::default()
            }),
            "usage.output_tokens",
        );
        add(
            &format!("complete: tool_calls {name}"),
            complete(pb::Usage {
                tool_calls: value,
                ..Default::default()
            }),
            "usage.tool_calls",
        );
    }
    add(
        "complete: output with NUL",
        Call::Complete(pb::CompleteTaskRequest {
            lease: lease(),
            output_json: nul_json.clone(),
            ..Default::default()
        }),
        "a string in output_json contains a NUL",
    );
    add(
        "complete: output oversized",
        Call::Complete(pb::CompleteTaskRequest {
            lease: lease(),
            output_json: big_json.clone(),
            ..Default::default()
        }),
        "output_json is 3145736 bytes; the limit is 3145728 bytes",
    );
    let fail = |failure: pb::Failure, retry_after_ms: u64| {
        Call::Fail(pb::FailTaskRequest {
            lease: lease(),
            failure: Some(failure),
            retry_after_ms,
            ..Default::default()
        })
    };
    let code = || pb::Failure {
        code: "boom".into(),
        retryable: true,
        ..Default::default()
    };
    for (value, name) in [(u64::MAX, "u64::MAX"), (i64::MAX as u64, "i64::MAX")] {
        add(
            &format!("fail: retry_after_ms {name}"),
            fail(code(), value),
            "retry_after_ms is",
        );
    }
    add(
        "fail: code with NUL",
        fail(
            pb::Failure {
                code: NUL.into(),
                ..code()
            },
            0,
        ),
        "failure.code contains a NUL",
    );
    add(
        "fail: code oversized",
        fail(
            pb::Failure {
                code: big(65),
                ..code()
            },
            0,
        ),
        "failure.code is 65 bytes; the limit is 64 bytes",
    );
    add(
        "fail: message with NUL",
        fail(
            pb::Failure {
                message: NUL.into(),
                ..code()
            },
            0,
        ),
        "failure.message contains a NUL",
    );
    add(
        "fail: message oversized",
        fail(
            pb::Failure {
                message: big(70_000),
                ..code()
            },
            0,
        ),
        "failure.message is 70000 bytes; the limit is 65536 bytes",
    );
    add(
        "fail: details with NUL",
        fail(
            pb::Failure {
                details_json: nul_json.clone(),
                ..code()
            },
            0,
        ),
        "a string in failure.details_json contains a NUL",
    );
    add(
        "fail: no failure",
        Call::Fail(pb::FailTaskRequest {
            lease: lease(),
            ..Default::default()
        }),
        "failure is required",
    );
}

/// Registrations of external runtimes: each field over its limit, and schemas that are not
/// JSON, not a schema, or not a valid one.
fn registrations(add: &mut impl FnMut(&str, Call, &str)) {
    let spec = |name: &str, description: String, schema: &str| pb::RuntimeSpec {
        name: name.into(),
        description,
        config_schema_json: schema.into(),
    };
    let register = |runtimes: Vec<pb::RuntimeSpec>| {
        Call::Register(pb::RegisterRuntimesRequest {
            worker_id: "hostile".into(),
            runtimes,
        })
    };
    let ok = |name: &str| spec(name, "fine".into(), "{}");
    let cases: Vec<(&str, Call, &str)> = vec![
        ("no runtimes", register(vec![]), "runtimes is required"),
        (
            "name with NUL",
            register(vec![spec(NUL, "d".into(), "{}")]),
            "a runtime name contains a NUL",
        ),
        (
            "description oversized",
            register(vec![spec("agno", big(4097), "{}")]),
            "is 4097 bytes; the limit is 4096 bytes",
        ),
        (
            "schema oversized",
            register(vec![spec(
                "agno",
                "d".into(),
                &format!("{{\"description\": \"{}\"}}", big(70_000)),
            )]),
            "the limit is 65536 bytes",
        ),
        (
            "schema not JSON",
            register(vec![spec("agno", "d".into(), "{not json")]),
            "config_schema_json",
        ),
        (
            "schema not an object",
            register(vec![spec("agno", "d".into(), "[1, 2]")]),
            "must be a JSON Schema: an object",
        ),
        (
            "schema not a valid JSON Schema",
            register(vec![spec("agno", "d".into(), r#"{"type": 12}"#)]),
            "is not a valid JSON Schema",
        ),
        (
            "one runtime twice",
            register(vec![ok("agno"), ok("agno")]),
            "registered twice",
        ),
    ];
    for (what, call, hint) in cases {
        add(&format!("register: {what}"), call, hint);
    }
}
