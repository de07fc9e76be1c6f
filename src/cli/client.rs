//! The gRPC client the CLI commands share.

use anyhow::Context;

use crate::api::pb::agent_service_client::AgentServiceClient;
use crate::api::pb::execution_service_client::ExecutionServiceClient;
use crate::api::pb::team_service_client::TeamServiceClient;
use crate::api::pb::worker_service_client::WorkerServiceClient;
use crate::api::{AuthChannel, ConnectOptions};

/// Clients of the Cairn services over one connection, sending the token (if any) on every call.
#[derive(Clone)]
pub struct Client {
    /// Agents: create, get, list, update, archive.
    pub agents: AgentServiceClient<AuthChannel>,
    /// Executions: start, get, list, cancel, stream output, history, replay, retry.
    pub executions: ExecutionServiceClient<AuthChannel>,
    /// Workers (`ListWorkers`).
    pub workers: WorkerServiceClient<AuthChannel>,
    /// Teams: create, get, list, update, archive.
    pub teams: TeamServiceClient<AuthChannel>,
}

impl Client {
    /// Connects to `server` (`http://host:port`) without a token or TLS settings.
    pub async fn connect(server: &str) -> anyhow::Result<Client> {
        Client::connect_with(server, &ConnectOptions::default()).await
    }

    /// Connects to `server` (`http://` or `https://`) with a token and TLS settings.
    pub async fn connect_with(server: &str, options: &ConnectOptions) -> anyhow::Result<Client> {
        let endpoint = options.endpoint(server)?;
        let channel = endpoint.connect().await.with_context(|| {
            format!("cannot reach a Cairn server at {server}; start one with `cairn dev`, or pass --server / CAIRN_SERVER")
        })?;
        let bearer = options.bearer()?;
        Ok(Client {
            agents: AgentServiceClient::with_interceptor(channel.clone(), bearer.clone())
                .max_decoding_message_size(64 << 20),
            executions: ExecutionServiceClient::with_interceptor(channel.clone(), bearer.clone())
                .max_decoding_message_size(64 << 20),
            workers: WorkerServiceClient::with_interceptor(channel.clone(), bearer.clone())
                .max_decoding_message_size(64 << 20),
            teams: TeamServiceClient::with_interceptor(channel, bearer)
                .max_decoding_message_size(64 << 20),
        })
    }
}

/// Turns a gRPC status into an error that reads well on a terminal.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", status.message(), status.code())
}
