//! The OpenAPI document at `/api/v1/openapi.json`: OpenAPI 3.1, valid by PyPI's
//! `openapi-spec-validator`, generated (it is what `cairn::api::http::openapi()` builds from the
//! route definitions), holding every route the issue asks for, each operation named after its
//! RPC; every operation it lists is served, and no method it leaves out is.

use std::process::Command;

use serde_json::Value;

use super::curl::call;
use super::python::venv;
use crate::common::{Db, Server};

/// The routes of the issue, as `METHOD path` with the document's placeholders.
const REQUIRED: &[(&str, &str)] = &[
    ("post", "/api/v1/agents"),
    ("get", "/api/v1/agents"),
    ("get", "/api/v1/agents/{agent}"),
    ("patch", "/api/v1/agents/{agent}"),
    ("delete", "/api/v1/agents/{agent}"),
    ("get", "/api/v1/runtimes"),
    ("post", "/api/v1/teams"),
    ("get", "/api/v1/teams"),
    ("get", "/api/v1/teams/{team}"),
    ("patch", "/api/v1/teams/{team}"),
    ("delete", "/api/v1/teams/{team}"),
    ("post", "/api/v1/executions"),
    ("get", "/api/v1/executions"),
    ("get", "/api/v1/executions/{id}"),
    ("get", "/api/v1/executions/{id}/history"),
    ("post", "/api/v1/executions/{id}/cancel"),
    ("post", "/api/v1/executions/{id}/retry"),
    ("post", "/api/v1/executions/{id}/replay"),
    ("get", "/api/v1/executions/{id}/events"),
    ("post", "/api/v1/executions/{id}/messages"),
    ("post", "/api/v1/executions/{id}/close"),
    ("post", "/api/v1/executions/{id}/approvals/{approval_id}"),
    ("get", "/api/v1/stats"),
    ("get", "/api/v1/workers"),
    ("get", "/api/v1/openapi.json"),
];

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_served() {
    let db = Db::sqlite().await;
    let server = Server::dev(&db, &[]);
    let api = server.url.clone();
    let reply = call(&api, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(reply.status, 200);
    let doc = reply.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let generated = serde_json::to_value(cairn::api::http::openapi()).unwrap();
    assert_eq!(doc, generated, "the served document is the generated one");

    // Valid OpenAPI 3.1, as a validator that is not ours reads it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &reply.body).unwrap();
    let validator = venv(
        "openapi-spec-validator-0.9",
        "openapi-spec-validator==0.9.0",
    );
    let checked = Command::new(validator.join("bin/python"))
        .args(["-m", "openapi_spec_validator", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "openapi-spec-validator refuses the document: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let paths = doc["paths"].as_object().expect("paths");
    // Each operation is named after the RPC it calls, once.
    let mut operation_ids: Vec<&str> = paths
        .values()
        .flat_map(|item| METHODS.iter().filter_map(|m| item.get(*m)))
        .map(|op| {
            op["operationId"]
                .as_str()
                .expect("every operation has an id")
        })
        .collect();
    let count = operation_ids.len();
    operation_ids.sort();
    operation_ids.dedup();
    assert_eq!(
        operation_ids.len(),
        count,
        "operation ids repeat: {operation_ids:?}"
    );
    for rpc in [
        "CreateAgent",
        "StartExecution",
        "StreamExecution",
        "ListWorkers",
        "GetStats",
    ] {
        assert!(operation_ids.contains(&rpc), "{rpc}: {operation_ids:?}");
    }
    let documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (m.to_string(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    for (method, path) in REQUIRED {
        assert!(
            documented.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is missing from the document; it has {documented:?}"
        );
    }

    // Every documented operation is served (a real answer, not the router's 404 or 405), and
    // every method a documented path does not list is refused with 405.
    let unknown = uuid::Uuid::now_v7().to_string();
    for (path, item) in paths {
        let concrete = path
            .replace("{agent}", "nobody")
            .replace("{team}", "nobody")
            .replace("{id}", &unknown);
        for method in METHODS {
            let body = matches!(*method, "post" | "patch" | "put").then_some("{}");
            let reply = call(&api, &method.to_uppercase(), &concrete, body, None);
            if item.get(*method).is_some() {
                let no_route = reply.status == 404
                    && serde_json::from_str::<Value>(&reply.body).is_ok_and(|b| {
                        b["error"]["message"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("no route"))
                    });
                assert!(
                    reply.status != 405 && !no_route,
                    "{method} {path} is documented but not served: {} {}",
                    reply.status,
                    reply.body
                );
                // Every answer is documented JSON, or the event stream.
                if !path.ends_with("/events") || reply.status != 200 {
                    reply.json();
                }
            } else {
                assert_eq!(
                    reply.status, 405,
                    "{method} {path} is served but not documented: {}",
                    reply.body
                );
            }
        }
    }
}
