//! One port, every protocol: HTTP/1.1 and HTTP/2 (cleartext, and over TLS) reach the JSON API,
//! and gRPC keeps working beside them, over TLS too; a browser's cross-origin write is refused.

use super::curl::curl;
use crate::common::server::cairn_bin;
use crate::common::{Db, Server};

fn versions_answer(url: &str, tls: &[&str]) {
    let runtimes = format!("{url}/api/v1/runtimes");
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let mut args = tls.to_vec();
        args.extend([flag, runtimes.as_str()]);
        if tls.is_empty() && flag == "--http2" {
            // Cleartext HTTP/2 as gRPC clients speak it: prior knowledge, no upgrade.
            args[0] = "--http2-prior-knowledge";
        }
        let reply = curl(&args);
        assert_eq!(
            (reply.status, reply.version.as_str()),
            (200, version),
            "{flag}: {}",
            reply.body
        );
        let names: Vec<String> = reply.json()["runtimes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        assert!(names.contains(&"echo".to_string()), "{names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_and_2_and_grpc_share_the_port_with_and_without_tls() {
    let db = Db::sqlite().await;
    let server = Server::dev(&db, &[]);
    versions_answer(&server.url, &[]);
    // A JSON body with its Content-Type is as good as one without.
    let created = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"name": "typed", "runtime": "echo"}"#,
        &format!("{}/api/v1/agents", server.url),
    ]);
    assert_eq!(created.status, 200, "{}", created.body);
    // A browser's cross-origin post is refused (bodies need no Content-Type, so it would need
    // no preflight); the same post from the server's own origin, or with no Origin, is not.
    let agents = format!("{}/api/v1/agents", server.url);
    let body = r#"{"name": "forged", "runtime": "echo"}"#;
    let forged = curl(&["-H", "Origin: http://evil.example", "-d", body, &agents]);
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(forged.json()["error"]["code"], "PERMISSION_DENIED");
    let own = format!("Origin: {}", server.url);
    let same = curl(&[
        "-H",
        &own,
        "-d",
        r#"{"name": "own", "runtime": "echo"}"#,
        &agents,
    ]);
    assert_eq!(same.status, 200, "{}", same.body);
    let proxied = curl(&[
        "-H",
        "Origin: https://cairn.example",
        "-H",
        "X-Forwarded-Host: cairn.example",
        "-d",
        r#"{"name": "proxied", "runtime": "echo"}"#,
        &agents,
    ]);
    assert_eq!(proxied.status, 200, "behind a proxy: {}", proxied.body);
    let read = curl(&["-H", "Origin: http://evil.example", &agents]);
    assert_eq!(
        read.status, 200,
        "reads are left to the browser's CORS: {}",
        read.body
    );
    let mut grpc = server.client().await;
    let listed = grpc
        .agents
        .list_agents(cairn::api::pb::ListAgentsRequest::default())
        .await
        .expect("gRPC on the same port")
        .into_inner();
    let names: Vec<&str> = listed.agents.iter().map(|a| a.name.as_str()).collect();
    assert!(
        names.contains(&"typed") && !names.contains(&"forged"),
        "{names:?}"
    );
    drop(server);

    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let tls = Server::dev(&db, &["--tls-cert", cert, "--tls-key", key]);
    let url = tls.url.replace("127.0.0.1", "localhost");
    assert!(url.starts_with("https://"), "{url}");
    versions_answer(&url, &["--cacert", cert]);
    // gRPC over the same TLS port, through the CLI (its client flags before the subcommand).
    let output = std::process::Command::new(cairn_bin())
        .args([
            "--server",
            &url,
            "--ca-cert",
            cert,
            "--json",
            "agent",
            "list",
        ])
        .env_remove("CAIRN_SERVER")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("typed"));
}
