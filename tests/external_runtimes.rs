//! External runtimes at the gRPC edge, on both stores: a worker registers a runtime with a
//! schema; agents of it are checked against that schema at create and update (with no worker
//! connected), a built-in name cannot be registered, and `ListRuntimes` shows both kinds. The
//! Python SDK drives the same calls end to end in `tests/python_sdk.rs`.

mod common;

use cairn::api::pb;
use common::{Db, Server};
use serde_json::json;
use tonic::Code;

on_both_stores!(
    an_external_runtime_checks_agents_against_its_registered_schema,
    a_built_in_name_cannot_be_registered,
);

fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "instructions": {"type": "string", "description": "The system prompt."},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        },
        "required": ["instructions"],
        "additionalProperties": false,
    })
}

fn registration(
    worker: &str,
    name: &str,
    schema: &serde_json::Value,
) -> pb::RegisterRuntimesRequest {
    pb::RegisterRuntimesRequest {
        worker_id: worker.into(),
        runtimes: vec![pb::RuntimeSpec {
            name: name.into(),
            description: "An Agno agent.".into(),
            config_schema_json: schema.to_string(),
        }],
    }
}

fn create(name: &str, runtime_config: serde_json::Value) -> pb::CreateAgentRequest {
    pb::CreateAgentRequest {
        name: name.into(),
        runtime: "agno".into(),
        configuration_json: json!({ "runtime_config": runtime_config }).to_string(),
        ..Default::default()
    }
}

async fn an_external_runtime_checks_agents_against_its_registered_schema(db: Db) {
    // A server with no worker at all: the registration alone makes the runtime known.
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;

    let unknown = c
        .agents
        .create_agent(create("a", json!({"instructions": "hi"})))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(
        unknown.message().contains("unknown runtime `agno`"),
        "{}",
        unknown.message()
    );

    c.workers
        .register_runtimes(registration("py-1", "agno", &schema()))
        .await
        .expect("register");

    let before = db.row_counts().await;
    for (config, field) in [
        (
            json!({"instructions": "hi", "temperature": 5}),
            "runtime_config.temperature",
        ),
        (json!({"instructions": 3}), "runtime_config.instructions"),
        (json!({}), "\"instructions\" is a required property"),
        (
            json!({"instructions": "hi", "tempreature": 1}),
            "tempreature",
        ),
    ] {
        let refused = c
            .agents
            .create_agent(create("a", config.clone()))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{config}");
        assert!(
            refused.message().contains(field),
            "{config}: `{}` names {field}",
            refused.message()
        );
    }
    assert_eq!(
        db.row_counts().await,
        before,
        "a refused agent writes nothing"
    );

    let agent = c
        .agents
        .create_agent(create(
            "a",
            json!({"instructions": "be brief", "temperature": 0.5}),
        ))
        .await
        .expect("a valid configuration is accepted with no worker connected")
        .into_inner();
    assert_eq!(agent.runtime, "agno");

    let update = |config: serde_json::Value| pb::UpdateAgentRequest {
        agent: "a".into(),
        configuration_json: Some(json!({ "runtime_config": config }).to_string()),
        ..Default::default()
    };
    let refused = c
        .agents
        .update_agent(update(json!({"instructions": "x", "temperature": -1})))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("runtime_config.temperature"),
        "{}",
        refused.message()
    );
    c.agents
        .update_agent(update(json!({"instructions": "x", "temperature": 1})))
        .await
        .expect("a valid update");

    // A newer registration's schema is the one that counts.
    let looser = json!({"type": "object"});
    c.workers
        .register_runtimes(registration("py-2", "agno", &looser))
        .await
        .unwrap();
    c.agents
        .update_agent(update(json!({"anything": true})))
        .await
        .expect("the newest schema accepts it");

    let runtimes = c
        .agents
        .list_runtimes(pb::ListRuntimesRequest {})
        .await
        .unwrap()
        .into_inner()
        .runtimes;
    let names: Vec<(&str, bool)> = runtimes
        .iter()
        .map(|r| (r.name.as_str(), r.external))
        .collect();
    assert_eq!(
        names,
        [
            ("agno", true),
            ("claude_code", false),
            ("default", false),
            ("echo", false)
        ]
    );
    assert_eq!(runtimes[0].description, "An Agno agent.");
    assert_eq!(runtimes[0].workers, 0, "no worker of it polls");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&runtimes[0].config_schema_json).unwrap(),
        looser
    );
}

async fn a_built_in_name_cannot_be_registered(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    let before = db.row_counts().await;
    for name in ["echo", "default", "claude_code"] {
        let mut request = registration("py-1", "agno", &schema());
        request.runtimes.push(pb::RuntimeSpec {
            name: name.into(),
            description: "an impostor".into(),
            config_schema_json: "{}".into(),
        });
        let refused = c.workers.register_runtimes(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::AlreadyExists, "{name}");
        assert!(
            refused
                .message()
                .contains(&format!("runtime `{name}` is built into Cairn")),
            "{}",
            refused.message()
        );
    }
    assert_eq!(
        db.row_counts().await,
        before,
        "nothing of the registration is recorded"
    );
    let refused = c
        .agents
        .create_agent(create("a", json!({"instructions": "hi"})))
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("unknown runtime `agno`"),
        "{}",
        refused.message()
    );
}
