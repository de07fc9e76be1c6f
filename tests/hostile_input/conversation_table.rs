//! The rows of the hostile table for a person in the loop: a start's `interactive` and
//! `idle_timeout_ms`, and every field of `SendMessage`, `CloseExecution` and `ResolveApproval`.

use cairn::api::pb;

use super::calls::Call;
use super::table::{Fixture, NUL, big};

/// Conversation and approval requests, each with one bad field.
pub fn conversation_cases(f: &Fixture, add: &mut impl FnMut(&str, Call, &str)) {
    let start = || pb::StartExecutionRequest {
        agent: f.agent.clone(),
        prompt: "hi".into(),
        interactive: true,
        ..Default::default()
    };
    add(
        "start: idle_timeout_ms without interactive",
        Call::Start(pb::StartExecutionRequest {
            interactive: false,
            idle_timeout_ms: 1_000,
            ..start()
        }),
        "idle_timeout_ms applies to interactive executions",
    );
    for value in [1u64 << 63, u64::MAX] {
        add(
            &format!("start: idle_timeout_ms {value}"),
            Call::Start(pb::StartExecutionRequest {
                idle_timeout_ms: value,
                ..start()
            }),
            &format!("idle_timeout_ms is {value} ms; the limit is"),
        );
    }
    add(
        "start: interactive team",
        Call::Start(pb::StartExecutionRequest {
            agent: String::new(),
            team: f.team.clone(),
            ..start()
        }),
        "interactive applies to agent executions",
    );

    let send = || pb::SendMessageRequest {
        id: f.live.clone(),
        text: "hello".into(),
        request_id: "m-1".into(),
    };
    let sends: Vec<(&str, pb::SendMessageRequest, &str)> = vec![
        (
            "id empty",
            pb::SendMessageRequest {
                id: String::new(),
                ..send()
            },
            "id is required",
        ),
        (
            "id with NUL",
            pb::SendMessageRequest {
                id: NUL.into(),
                ..send()
            },
            "not a valid id",
        ),
        (
            "text empty",
            pb::SendMessageRequest {
                text: " ".into(),
                ..send()
            },
            "text is required",
        ),
        (
            "text with NUL",
            pb::SendMessageRequest {
                text: NUL.into(),
                ..send()
            },
            "text contains a NUL",
        ),
        (
            "text oversized",
            pb::SendMessageRequest {
                text: big((1 << 20) + 1),
                ..send()
            },
            "text is 1048577 bytes; the limit is 1048576 bytes",
        ),
        (
            "request_id with NUL",
            pb::SendMessageRequest {
                request_id: NUL.into(),
                ..send()
            },
            "request_id contains a NUL",
        ),
        (
            "request_id oversized",
            pb::SendMessageRequest {
                request_id: big(300),
                ..send()
            },
            "request_id is 300 bytes; the limit is 256 bytes",
        ),
    ];
    for (what, request, hint) in sends {
        add(&format!("send: {what}"), Call::Send(request), hint);
    }
    add(
        "close: id with NUL",
        Call::Close(pb::CloseExecutionRequest { id: NUL.into() }),
        "not a valid id",
    );

    let resolve = || pb::ResolveApprovalRequest {
        id: f.live.clone(),
        approval_id: "a-1".into(),
        allow: true,
        ..Default::default()
    };
    let resolves: Vec<(&str, pb::ResolveApprovalRequest, &str)> = vec![
        (
            "id with NUL",
            pb::ResolveApprovalRequest {
                id: NUL.into(),
                ..resolve()
            },
            "not a valid id",
        ),
        (
            "approval_id empty",
            pb::ResolveApprovalRequest {
                approval_id: String::new(),
                ..resolve()
            },
            "approval_id is required",
        ),
        (
            "approval_id with NUL",
            pb::ResolveApprovalRequest {
                approval_id: NUL.into(),
                ..resolve()
            },
            "approval_id contains a NUL",
        ),
        (
            "approval_id oversized",
            pb::ResolveApprovalRequest {
                approval_id: big(300),
                ..resolve()
            },
            "approval_id is 300 bytes; the limit is 256 bytes",
        ),
        (
            "message with NUL",
            pb::ResolveApprovalRequest {
                allow: false,
                message: NUL.into(),
                ..resolve()
            },
            "message contains a NUL",
        ),
        (
            "message oversized",
            pb::ResolveApprovalRequest {
                allow: false,
                message: big(5_000),
                ..resolve()
            },
            "message is 5000 bytes; the limit is 4096 bytes",
        ),
        (
            "message with allow",
            pb::ResolveApprovalRequest {
                message: "why".into(),
                ..resolve()
            },
            "message goes with a denial",
        ),
        (
            "updated_input_json with a denial",
            pb::ResolveApprovalRequest {
                allow: false,
                updated_input_json: "{}".into(),
                ..resolve()
            },
            "updated_input_json `{}` goes with allow",
        ),
        (
            "updated_input_json not JSON",
            pb::ResolveApprovalRequest {
                updated_input_json: "{".into(),
                ..resolve()
            },
            "updated_input_json",
        ),
        (
            "updated_input_json with NUL",
            pb::ResolveApprovalRequest {
                updated_input_json: r#"{"a": "x\u0000y"}"#.into(),
                ..resolve()
            },
            "updated_input_json",
        ),
        (
            "request_id with NUL",
            pb::ResolveApprovalRequest {
                request_id: NUL.into(),
                ..resolve()
            },
            "request_id contains a NUL",
        ),
    ];
    for (what, request, hint) in resolves {
        add(&format!("resolve: {what}"), Call::Resolve(request), hint);
    }

    let ask = || pb::ToolAsk {
        id: "toolu_1".into(),
        tool: "Bash".into(),
        input_json: "{}".into(),
    };
    let asks: Vec<(&str, Vec<pb::ToolAsk>, &str)> = vec![
        (
            "id with NUL",
            vec![pb::ToolAsk {
                id: NUL.into(),
                ..ask()
            }],
            "asks[].id contains a NUL",
        ),
        (
            "tool empty",
            vec![pb::ToolAsk {
                tool: String::new(),
                ..ask()
            }],
            "asks[].id and asks[].tool are required",
        ),
        (
            "tool oversized",
            vec![pb::ToolAsk {
                tool: big(300),
                ..ask()
            }],
            "asks[].tool is 300 bytes; the limit is 256 bytes",
        ),
        (
            "input_json not JSON",
            vec![pb::ToolAsk {
                input_json: "{".into(),
                ..ask()
            }],
            "asks[].input_json",
        ),
        (
            "17 asks",
            vec![ask(); 17],
            "17 asks given; a progress report carries at most 16",
        ),
    ];
    for (what, asks, hint) in asks {
        add(
            &format!("progress: asks {what}"),
            Call::Progress(pb::ReportProgressRequest {
                lease: Some(f.lease.clone()),
                asks,
                ..Default::default()
            }),
            hint,
        );
    }
}
