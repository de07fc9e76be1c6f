//! The gRPC client the CLI commands share.

use anyhow::Context;
use tonic::transport::{Channel, Endpoint};

use crate::api::pb::agent_service_client::AgentServiceClient;
use crate::api::pb::execution_service_client::ExecutionServiceClient;
use crate::api::pb::team_service_client::TeamServiceClient;

/// Clients of the Cairn services over one connection.
#[derive(Clone)]
pub struct Client {
    /// Agents.
    pub agents: AgentServiceClient<Channel>,
    /// Executions.
    pub executions: ExecutionServiceClient<Channel>,
    /// Teams.
    pub teams: TeamServiceClient<Channel>,
}

impl Client {
    /// Connects to `server` (`http://host:port`).
    pub async fn connect(server: &str) -> anyhow::Result<Client> {
        let endpoint = Endpoint::from_shared(server.to_string())
            .with_context(|| format!("`{server}` is not a server URL; use http://HOST:PORT"))?
            .tcp_nodelay(true)
            .connect_timeout(std::time::Duration::from_secs(5));
        let channel = endpoint.connect().await.with_context(|| {
            format!("cannot reach a Cairn server at {server}; start one with `cairn dev`, or pass --server / CAIRN_SERVER")
        })?;
        Ok(Client {
            agents: AgentServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            executions: ExecutionServiceClient::new(channel.clone())
                .max_decoding_message_size(64 << 20),
            teams: TeamServiceClient::new(channel),
        })
    }
}

/// Turns a gRPC status into an error that reads well on a terminal.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", status.message(), status.code())
}
