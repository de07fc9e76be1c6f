//! Authentication and TLS: every RPC refuses a missing, wrong or wrong-kind token; with the
//! right tokens a worker and a client work end to end over TLS, with a certificate generated
//! here. Transport security does not depend on the store, so this runs on SQLite.

use cairn::api::pb;
use prost::Message;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::common::Db;
use crate::common::fleet::Proc;
use crate::common::server::cairn_bin;

const CLIENT_TOKEN: &str = "client-secret-1";
const WORKER_TOKEN: &str = "worker-secret-1";
const ADMIN_TOKEN: &str = "admin-secret-1";

/// Every RPC of the Cairn services, as `/package.Service/Method`, read from the descriptor so a
/// new RPC is covered without touching this test.
fn every_rpc() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut paths = Vec::new();
    for file in set.file {
        let package = file.package().to_string();
        for service in &file.service {
            for method in &service.method {
                paths.push(format!("/{package}.{}/{}", service.name(), method.name()));
            }
        }
    }
    assert!(paths.len() >= 19, "{paths:?}");
    paths
}

/// The token kind an RPC needs, as the README states it.
fn worker_only(path: &str) -> bool {
    path.starts_with("/cairn.v1.WorkerService/") && !path.ends_with("/ListWorkers")
}

/// RPCs that destroy data: admin tokens only.
fn admin_only(path: &str) -> bool {
    path.ends_with("/DeleteExecution")
}

/// Calls `path` with an empty request and `token`; returns the status code.
async fn call(channel: &Channel, path: &str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(());
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let result = grpc.unary(request, path.parse().unwrap(), codec).await;
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_on_every_rpc_and_tls_works_end_to_end() {
    let db = Db::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let client_tokens = dir.path().join("client-tokens");
    std::fs::write(
        &client_tokens,
        format!("# operators\n{CLIENT_TOKEN}\n{ADMIN_TOKEN} role=admin\n"),
    )
    .unwrap();
    let (_server, url) = Proc::server(
        &db,
        "127.0.0.1:0",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--client-tokens-file",
            client_tokens.to_str().unwrap(),
        ],
        &[("CAIRN_WORKER_TOKENS", WORKER_TOKEN)],
    );
    assert!(url.starts_with("https://"), "{url}");

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(generated.cert.pem()))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(url.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection with the generated CA");

    for path in every_rpc() {
        let (right, wrong) = if worker_only(&path) {
            (WORKER_TOKEN, CLIENT_TOKEN)
        } else if admin_only(&path) {
            (ADMIN_TOKEN, CLIENT_TOKEN)
        } else {
            (CLIENT_TOKEN, WORKER_TOKEN)
        };
        assert_eq!(
            call(&channel, &path, None).await,
            Code::Unauthenticated,
            "{path}, no token"
        );
        assert_eq!(
            call(&channel, &path, Some("not-a-token")).await,
            Code::Unauthenticated,
            "{path}, a wrong token"
        );
        assert_eq!(
            call(&channel, &path, Some(wrong)).await,
            Code::PermissionDenied,
            "{path}, the other kind of token"
        );
        let code = call(&channel, &path, Some(right)).await;
        assert!(
            !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
            "{path}: the right token was refused ({code:?})"
        );
    }
    // Health stays open for load balancers.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health needs no token");

    // Plain HTTP/2 to the TLS port gets nowhere.
    let plain = url.replace("https://", "http://");
    let plain = Endpoint::from_shared(plain).unwrap().connect().await;
    if let Ok(plain) = plain {
        assert_ne!(
            call(
                &plain,
                "/cairn.v1.AgentService/ListRuntimes",
                Some(CLIENT_TOKEN)
            )
            .await,
            Code::Ok
        );
    }

    // End to end over TLS: a worker process with a worker token, the CLI with a client token.
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, generated.cert.pem()).unwrap();
    let tls_args = [
        "--ca-cert",
        ca.to_str().unwrap(),
        "--tls-domain",
        "localhost",
    ];
    let worker_token = dir.path().join("worker-token");
    std::fs::write(&worker_token, WORKER_TOKEN).unwrap();
    let mut worker_args = vec![
        "--runtimes",
        "echo",
        "--token-file",
        worker_token.to_str().unwrap(),
    ];
    worker_args.extend(tls_args);
    let _worker = Proc::worker("tls-worker", &[&url], &worker_args, &[]);
    let cli = |args: &[&str], token: &str| {
        std::process::Command::new(cairn_bin())
            .args(args)
            .args(["--server", &url])
            .args(tls_args)
            .env("CAIRN_TOKEN", token)
            .output()
            .unwrap()
    };
    let created = cli(
        &["agent", "create", "--name", "secure", "--runtime", "echo"],
        CLIENT_TOKEN,
    );
    assert!(created.status.success(), "{created:?}");
    let ran = cli(&["run", "secure", "over", "tls"], CLIENT_TOKEN);
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "over tls");
    // The worker's token cannot start executions, from the CLI either.
    let refused = cli(&["run", "secure", "nope"], WORKER_TOKEN);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("PermissionDenied"),
        "{refused:?}"
    );
}
