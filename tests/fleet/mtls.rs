//! Mutual TLS for workers: a server given `--client-ca` takes worker calls only over
//! connections whose client presented a certificate that CA signed; clients of the other
//! services connect as before, without one. Certificates are made here with rcgen.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::common::Db;
use crate::common::fleet::Proc;
use crate::common::server::cairn_bin;

const CLIENT_TOKEN: &str = "mtls-client-secret";
const WORKER_TOKEN: &str = "mtls-worker-secret";
const POLL: &str = "/cairn.v1.WorkerService/PollTasks";

/// A certificate and its key, as PEM.
struct Pem {
    cert: String,
    key: String,
}

/// A CA, a server certificate and a worker certificate it signed, and a worker certificate it
/// did not sign.
struct Pki {
    ca: String,
    server: Pem,
    worker: Pem,
    rogue: Pem,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    };
    let rogue = rcgen::generate_simple_self_signed(vec!["worker".to_string()]).unwrap();
    Pki {
        server: leaf("localhost"),
        worker: leaf("worker"),
        rogue: Pem {
            cert: rogue.cert.pem(),
            key: rogue.signing_key.serialize_pem(),
        },
        ca,
    }
}

async fn channel(
    url: &str,
    ca: &str,
    identity: Option<&Pem>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(pem) = identity {
        tls = tls.identity(Identity::from_pem(&pem.cert, &pem.key));
    }
    Endpoint::from_shared(url.to_string())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
}

/// Calls `path` with an empty request and `token`.
async fn call(channel: &Channel, path: &str, token: &str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if let Err(e) = grpc.ready().await {
        return tonic::Status::unavailable(e.to_string());
    }
    let mut request = tonic::Request::new(());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc.unary(request, path.parse().unwrap(), codec).await {
        Ok(_) => tonic::Status::ok(""),
        Err(status) => status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_need_a_certificate_the_client_ca_signed() {
    let db = Db::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (server_cert, server_key) = (
        file("server.pem", &pki.server.cert),
        file("server.key", &pki.server.key),
    );
    let (worker_cert, worker_key) = (
        file("worker.pem", &pki.worker.cert),
        file("worker.key", &pki.worker.key),
    );
    let ca = file("ca.pem", &pki.ca);
    let tokens = file("client-tokens", CLIENT_TOKEN);
    let (_server, url) = Proc::server(
        &db,
        "127.0.0.1:0",
        &[
            "--tls-cert",
            &server_cert,
            "--tls-key",
            &server_key,
            "--client-ca",
            &ca,
            "--client-tokens-file",
            &tokens,
        ],
        &[("CAIRN_WORKER_TOKENS", WORKER_TOKEN)],
    );

    // Without a certificate: clients are served, worker calls refused, saying what to give.
    let plain = channel(&url, &pki.ca, None)
        .await
        .expect("a client needs no certificate");
    let listed = call(&plain, "/cairn.v1.AgentService/ListRuntimes", CLIENT_TOKEN).await;
    assert_eq!(listed.code(), Code::Ok, "{listed:?}");
    let refused = call(&plain, POLL, WORKER_TOKEN).await;
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("--tls-cert"),
        "{}",
        refused.message()
    );

    // A certificate the CA did not sign gets no connection at all.
    let rogue = match channel(&url, &pki.ca, Some(&pki.rogue)).await {
        Err(_) => Code::Unavailable,
        Ok(rogue) => call(&rogue, POLL, WORKER_TOKEN).await.code(),
    };
    assert!(
        !matches!(rogue, Code::Ok | Code::InvalidArgument),
        "{rogue:?}"
    );

    // The CA's worker certificate passes, and the token is still checked.
    let signed = channel(&url, &pki.ca, Some(&pki.worker)).await.unwrap();
    let polled = call(&signed, POLL, WORKER_TOKEN).await;
    assert!(
        !matches!(
            polled.code(),
            Code::Unauthenticated | Code::PermissionDenied
        ),
        "{polled:?}"
    );
    assert_eq!(
        call(&signed, POLL, "not-a-token").await.code(),
        Code::Unauthenticated
    );

    // End to end: `cairn worker --tls-cert --tls-key` runs what a client starts.
    let worker_token = file("worker-token", WORKER_TOKEN);
    let tls = ["--ca-cert", &ca, "--tls-domain", "localhost"];
    let mut args = vec![
        "--runtimes",
        "echo",
        "--token-file",
        &worker_token,
        "--tls-cert",
        &worker_cert,
        "--tls-key",
        &worker_key,
    ];
    args.extend(tls);
    let _worker = Proc::worker("mtls-worker", &[&url], &args, &[]);
    let cli = |args: &[&str]| {
        std::process::Command::new(cairn_bin())
            .args(args)
            .args(["--server", &url])
            .args(tls)
            .env("CAIRN_TOKEN", CLIENT_TOKEN)
            .output()
            .unwrap()
    };
    let created = cli(&["agent", "create", "--name", "mutual", "--runtime", "echo"]);
    assert!(created.status.success(), "{created:?}");
    let ran = cli(&["run", "mutual", "over", "mutual", "tls"]);
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout).trim(),
        "over mutual tls"
    );
}
