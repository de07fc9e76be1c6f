//! The HTTP table: a row per route of the OpenAPI document (so per RPC, by its operation id),
//! each sent with the real `curl` and `a`'s token at `b`'s agent, team and executions.

use std::process::{Command, Stdio};

use serde_json::Value;
use uuid::Uuid;

use super::fixture::{ADMIN, ADMIN_A, Fixture, TOKEN_A, TOKEN_B};

type Verdict = Result<(), String>;

/// `curl -X method url` with `token`, a `cairn-namespace` header when `named`, and `body`;
/// returns the HTTP status and the body.
fn curl(
    method: &str,
    url: &str,
    token: &str,
    named: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "--max-time",
            "60",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            url,
        ])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .stdin(Stdio::null());
    if let Some(named) = named {
        command.args(["-H", &format!("cairn-namespace: {named}")]);
    }
    if let Some(body) = body {
        command.args(["-d", body]);
    }
    let output = command.output().expect("run curl");
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn status(got: (u16, String), want: u16) -> Verdict {
    if got.0 == want {
        Ok(())
    } else {
        Err(format!("{} {} (want {want})", got.0, got.1))
    }
}

struct Route<'a> {
    fx: &'a Fixture,
    method: String,
    /// The path (under /api/v1), with `{id}`, `{agent}` or `{team}` in it.
    path: String,
}

impl Route<'_> {
    fn url(&self, value: &str, query: &str) -> String {
        let path = self
            .path
            .replace("{id}", value)
            .replace("{agent}", value)
            .replace("{team}", value)
            .replace("{approval_id}", "turn-1:toolu_1");
        format!("{}{path}{query}", self.fx.server.url)
    }

    fn send(
        &self,
        value: &str,
        query: &str,
        token: &str,
        named: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        curl(&self.method, &self.url(value, query), token, named, body)
    }

    /// `b`'s `id` asked for by `a`: 404 with the body a missing id gets, word for word, by id
    /// alone and naming `b`; with b's token (the control, for reads) it is there.
    fn hidden(&self, id: &str, body: Option<&str>, control: bool) -> Vec<(String, Verdict)> {
        self.hidden_from(TOKEN_A, id, body, control)
    }

    /// As `hidden`, with `token` instead of a's client token.
    fn hidden_from(
        &self,
        token: &str,
        id: &str,
        body: Option<&str>,
        control: bool,
    ) -> Vec<(String, Verdict)> {
        let fresh = Uuid::now_v7().to_string();
        let (code, missing) = self.send(&fresh, "", token, None, body);
        if code != 404 {
            return vec![(
                "a missing id".into(),
                Err(format!("{code} {missing} (want 404)")),
            )];
        }
        let missing = missing.replace(&fresh, id);
        let mut rows = Vec::new();
        for named in [None, Some("b")] {
            let (code, got) = self.send(id, "", token, named, body);
            let verdict = if code == 404 && got == missing {
                Ok(())
            } else {
                Err(format!("{code} {got} (want 404 {missing})"))
            };
            rows.push((format!("{id} named {named:?}"), verdict));
        }
        if control {
            rows.push((
                format!("{id} with b's token"),
                status(self.send(id, "", TOKEN_B, None, body), 200),
            ));
        }
        rows
    }

    /// A list read with a's token and no namespace holds nothing (a has nothing).
    fn empty(&self, query: &str, field: &str) -> (String, Verdict) {
        let (code, body) = self.send("", query, TOKEN_A, None, None);
        let verdict = match serde_json::from_str::<Value>(&body) {
            Ok(v) if code == 200 && v[field].as_array().is_none_or(|a| a.is_empty()) => Ok(()),
            _ => Err(format!("{code} {body} (want 200 with no {field})")),
        };
        (format!("a's own {field}{query}"), verdict)
    }
}

/// The rows of one route. A new route has no arm: the test fails until it gets one.
fn rows(route: &Route, operation: &str) -> Vec<(String, Verdict)> {
    let fx = route.fx;
    let denied = |what: &str, got| (format!("{what} in namespace b"), status(got, 403));
    match operation {
        "CreateAgent" => vec![denied(
            "create",
            route.send("", "", TOKEN_A, None, Some(r#"{"namespace":"b","name":"x","runtime":"echo"}"#)),
        )],
        "CreateTeam" => vec![denied(
            "create",
            route.send("", "", TOKEN_A, None, Some(r#"{"namespace":"b","name":"x","strategy":"sequential","members":[{"agent":"e"}]}"#)),
        )],
        "GetAgent" | "UpdateAgent" | "ArchiveAgent" | "GetTeam" | "UpdateTeam" | "ArchiveTeam" => {
            let id = if operation.ends_with("Team") { &fx.team_id } else { &fx.agent_id };
            // Updates name the namespace in the body, the others in the query.
            let (query, body, body_b) = match operation {
                "UpdateAgent" => ("", Some(r#"{"model_id":"stolen"}"#), Some(r#"{"namespace":"b","model_id":"stolen"}"#)),
                "UpdateTeam" => (
                    "",
                    Some(r#"{"definition":{"strategy":"sequential","members":[{"agent":"e"}]}}"#),
                    Some(r#"{"namespace":"b","definition":{"strategy":"sequential","members":[{"agent":"e"}]}}"#),
                ),
                _ => ("?namespace=b", None, None),
            };
            let mut rows = vec![
                denied(id, route.send(id, query, TOKEN_A, None, body_b)),
                denied("named in the header", route.send(id, "", TOKEN_A, Some("b"), body)),
                (format!("{id} in a's namespace"), status(route.send(id, "", TOKEN_A, None, body), 404)),
            ];
            if operation.starts_with("Get") {
                rows.push(("b's own token".into(), status(route.send(id, "", TOKEN_B, None, None), 200)));
            }
            rows
        }
        "ListAgents" | "ListTeams" | "ListExecutions" => {
            let field = match operation {
                "ListAgents" => "agents",
                "ListTeams" => "teams",
                _ => "executions",
            };
            let mut rows = vec![
                denied("list", route.send("", "?namespace=b", TOKEN_A, None, None)),
                denied("list named in the header", route.send("", "", TOKEN_A, Some("b"), None)),
                route.empty("", field),
            ];
            if operation == "ListExecutions" {
                rows.push(route.empty(&format!("?parent_id={}", fx.team_run), field));
            }
            rows
        }
        "ListRuntimes" | "GetOpenApi" => vec![("global".into(), status(route.send("", "", TOKEN_A, None, None), 200))],
        "StartExecution" => vec![
            denied("start", route.send("", "", TOKEN_A, None, Some(r#"{"namespace":"b","agent":"e","prompt":"hi"}"#))),
            ("start b's agent by id".into(), status(route.send("", "", TOKEN_A, None, Some(&format!(r#"{{"agent_id":"{}","prompt":"hi"}}"#, fx.agent_id))), 404)),
        ],
        "GetExecution" | "GetHistory" | "StreamExecution" | "ReplayExecution" => {
            let mut rows = route.hidden(&fx.done, None, true);
            rows.extend(route.hidden(&fx.team_run, None, true));
            rows
        }
        "CancelExecution" => route.hidden(&fx.team_run, None, false),
        // A person in the loop: a's token can neither talk to b's execution nor answer its
        // approvals, nor learn that it exists.
        "SendMessage" => route.hidden(&fx.done, Some(r#"{"text":"hello"}"#), false),
        "CloseExecution" => route.hidden(&fx.done, None, false),
        "ResolveApproval" => route.hidden(&fx.team_run, Some(r#"{"allow":true}"#), false),
        "RetryExecution" => route.hidden(&fx.cancelled, Some(r#"{"force":true}"#), false),
        "GetStats" => {
            let (code, body) = route.send("", "", TOKEN_A, None, None);
            let own = match serde_json::from_str::<Value>(&body) {
                Ok(v) if code == 200 && v["executions"].as_array().is_none_or(|a| a.is_empty()) => Ok(()),
                _ => Err(format!("{code} {body}")),
            };
            vec![denied("stats", route.send("", "?namespace=b", TOKEN_A, None, None)), ("a's own stats".into(), own)]
        }
        "DeleteExecution" => {
            let mut rows = vec![(
                "a client deletes".into(),
                status(route.send(&fx.done, "", TOKEN_A, None, None), 403),
            )];
            rows.extend(route.hidden_from(ADMIN_A, &fx.done, None, false));
            rows.extend(route.hidden_from(ADMIN_A, &fx.team_run, None, false));
            rows
        }
        "ListWorkers" => vec![
            ("list workers".into(), status(route.send("", "", TOKEN_A, None, None), 403)),
            ("an admin lists workers".into(), status(route.send("", "", ADMIN, None, None), 200)),
        ],
        other => panic!("{other} has no row in tests/tenancy/http.rs: say what a token bound to another namespace gets from it"),
    }
}

pub async fn every_route_keeps_b_from_a(fx: &Fixture) {
    let (code, doc) = curl(
        "GET",
        &format!("{}/api/v1/openapi.json", fx.server.url),
        TOKEN_A,
        None,
        None,
    );
    assert_eq!(code, 200, "{doc}");
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let mut wrong = Vec::new();
    let mut count = 0;
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().unwrap() {
            let Some(id) = operation["operationId"].as_str() else {
                continue;
            };
            let route = Route {
                fx,
                method: method.to_uppercase(),
                path: path.clone(),
            };
            // curl blocks; the server runs in its own process, so that is fine here.
            for (what, verdict) in rows(&route, id) {
                count += 1;
                if let Err(e) = verdict {
                    wrong.push(format!("{} {path} ({what}): {e}", route.method));
                }
            }
        }
    }
    assert!(count > 40, "only {count} rows");
    assert!(
        wrong.is_empty(),
        "{} of {count} rows wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
