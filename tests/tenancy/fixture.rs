//! A server with tokens bound to namespaces `a` and `b`, and in `b`: an agent, a team, a
//! completed execution, a cancelled one and a completed team execution.

use std::collections::HashMap;

use cairn::api::pb;
use prost::Message;
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::common::{Db, Server};

pub const TOKEN_A: &str = "token-of-a";
pub const TOKEN_B: &str = "token-of-b";
pub const ADMIN: &str = "token-of-the-operator";
/// An admin of namespace `a` only.
pub const ADMIN_A: &str = "token-of-a-s-operator";

pub struct Fixture {
    pub server: Server,
    pub channel: Channel,
    /// Every RPC: method name → `/package.Service/Method`.
    pub paths: HashMap<String, String>,
    pub agent_id: String,
    pub team_id: String,
    /// A completed agent execution of `b`.
    pub done: String,
    /// A cancelled agent execution of `b` (retryable).
    pub cancelled: String,
    /// A completed team execution of `b`.
    pub team_run: String,
    _dir: tempfile::TempDir,
}

/// Every RPC of the Cairn services, from the descriptor set.
fn every_rpc() -> HashMap<String, String> {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut paths = HashMap::new();
    for file in set.file {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                paths.insert(method.name().to_string(), path);
            }
        }
    }
    assert!(paths.len() >= 28, "{paths:?}");
    paths
}

/// A call to `path` with `token` (and a `cairn-namespace` header when `named`).
pub async fn unary<Q, R>(
    channel: &Channel,
    path: &str,
    token: &str,
    named: Option<&str>,
    message: Q,
) -> Result<R, Status>
where
    Q: Message + Send + Sync + 'static,
    R: Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<Q, R>::default();
    let request = request(token, named, message);
    grpc.unary(request, path.parse().unwrap(), codec)
        .await
        .map(tonic::Response::into_inner)
}

/// A server-streaming call, read to its first message.
pub async fn first_of_stream<Q, R>(
    channel: &Channel,
    path: &str,
    token: &str,
    named: Option<&str>,
    message: Q,
) -> Result<R, Status>
where
    Q: Message + Send + Sync + 'static,
    R: Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<Q, R>::default();
    let request = request(token, named, message);
    let mut stream = grpc
        .server_streaming(request, path.parse().unwrap(), codec)
        .await?
        .into_inner();
    stream
        .message()
        .await?
        .ok_or_else(|| Status::new(Code::Unknown, "the stream ended empty"))
}

fn request<Q>(token: &str, named: Option<&str>, message: Q) -> tonic::Request<Q> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
    if let Some(named) = named {
        metadata.insert("cairn-namespace", named.parse().unwrap());
    }
    request
}

impl Fixture {
    pub async fn start(db: &Db) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("client-tokens");
        std::fs::write(
            &tokens,
            format!(
                "# tenants\n{TOKEN_A} namespace=a\n{TOKEN_B} namespace=b role=client\n\
                 {ADMIN} role=admin\n{ADMIN_A} role=admin namespace=a\n"
            ),
        )
        .unwrap();
        let server = Server::start(
            db,
            "server",
            &["--worker", "--client-tokens-file", tokens.to_str().unwrap()],
        );
        let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let paths = every_rpc();
        let path = |m: &str| paths[m].clone();
        // Everything below is made with b's token and no namespace: a token bound to one
        // namespace works in it without naming it.
        let agent: pb::Agent = unary(
            &channel,
            &path("CreateAgent"),
            TOKEN_B,
            None,
            pb::CreateAgentRequest {
                name: "e".into(),
                runtime: "echo".into(),
                configuration_json: json!({}).to_string(),
                ..Default::default()
            },
        )
        .await
        .expect("create b's agent");
        assert_eq!(agent.namespace, "b");
        let team: pb::Team = unary(
            &channel,
            &path("CreateTeam"),
            TOKEN_B,
            None,
            pb::CreateTeamRequest {
                name: "t".into(),
                strategy: "sequential".into(),
                members: vec![pb::TeamMember {
                    agent: "e".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .await
        .expect("create b's team");
        let start = |r: pb::StartExecutionRequest| {
            let (channel, path) = (channel.clone(), path("StartExecution"));
            async move {
                let started: pb::StartExecutionResponse = unary(&channel, &path, TOKEN_B, None, r)
                    .await
                    .expect("start");
                started.execution_id
            }
        };
        let done = start(pb::StartExecutionRequest {
            agent: "e".into(),
            prompt: "hello".into(),
            ..Default::default()
        })
        .await;
        let team_run = start(pb::StartExecutionRequest {
            team: "t".into(),
            prompt: "hello team".into(),
            ..Default::default()
        })
        .await;
        // No worker serves this queue: it waits until cancelled.
        let cancelled = start(pb::StartExecutionRequest {
            agent: "e".into(),
            prompt: "never run".into(),
            queue: "nobody-serves-this".into(),
            ..Default::default()
        })
        .await;
        let _: pb::Execution = unary(
            &channel,
            &path("CancelExecution"),
            TOKEN_B,
            None,
            pb::CancelExecutionRequest {
                id: cancelled.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("cancel");
        let fx = Fixture {
            server,
            channel,
            paths,
            agent_id: agent.id,
            team_id: team.id,
            done,
            cancelled,
            team_run,
            _dir: dir,
        };
        for (id, status) in [
            (&fx.done, "COMPLETED"),
            (&fx.team_run, "COMPLETED"),
            (&fx.cancelled, "CANCELED"),
        ] {
            fx.wait_for(id, status).await;
        }
        fx
    }

    pub fn path(&self, method: &str) -> &str {
        &self.paths[method]
    }

    async fn wait_for(&self, id: &str, status: &str) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let e: pb::Execution = unary(
                &self.channel,
                self.path("GetExecution"),
                TOKEN_B,
                None,
                pb::GetExecutionRequest { id: id.into() },
            )
            .await
            .expect("b reads its own execution");
            if e.status == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never reached {status}: {e:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
