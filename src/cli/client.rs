//! The gRPC client the CLI commands share, and the servers a command that reconnects tries in
//! turn.

use std::time::{Duration, Instant};

use anyhow::Context;
use tonic::Code;

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

/// The servers a client command may use, and how long it keeps trying to reach one.
#[derive(Debug, Clone)]
pub struct Servers {
    /// The URLs, tried in order.
    pub urls: Vec<String>,
    /// Token and TLS settings.
    pub options: ConnectOptions,
    /// How long to keep reconnecting without progress before giving up.
    pub give_up_after: Duration,
}

impl Servers {
    /// Connects to the first URL, from `start` on (wrapping), that answers.
    pub async fn connect(&self, start: usize) -> anyhow::Result<(usize, Client)> {
        let mut last = None;
        for k in 0..self.urls.len() {
            let index = (start + k) % self.urls.len();
            match Client::connect_with(&self.urls[index], &self.options).await {
                Ok(client) => return Ok((index, client)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no --server given")))
    }

    /// Calls `rpc` on whichever server answers, again while none can be reached (for up to
    /// `give_up_after`), so a restart between two calls loses none. A request that changes
    /// something must carry one request id through every try: one that reached a server before
    /// the connection broke is then taken once.
    pub(super) async fn call<T, F, Fut>(&self, mut rpc: F) -> Result<T, tonic::Status>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let since = Instant::now();
        let mut index = 0;
        loop {
            let result = match self.connect(index).await {
                Ok((i, client)) => {
                    index = i;
                    rpc(client).await
                }
                Err(e) => Err(tonic::Status::unavailable(e.root_cause().to_string())),
            };
            match result {
                Err(status) if is_transport(&status) && since.elapsed() < self.give_up_after => {
                    index = (index + 1) % self.urls.len().max(1);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                result => return result,
            }
        }
    }
}

/// Whether a status says the transport broke rather than that the request was wrong.
pub(super) fn is_transport(status: &tonic::Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => true,
        // A connection cut mid-stream (a killed server) surfaces as an h2 error.
        Code::Internal => status.message().contains("h2 protocol error"),
        _ => false,
    }
}
