//! Bearer-token authentication: each token has a role (client, admin, worker) and may be bound
//! to namespaces.
//!
//! Every RPC has an [`Access`] rule in [`METHODS`]: client calls (agents, teams, executions)
//! are open to client and admin tokens; operator calls (`ListWorkers`) to admin tokens and to
//! client tokens bound to no namespace (what every client token could do before tokens had
//! roles); admin calls (`DeleteExecution`) to admin tokens only; the worker calls (poll,
//! progress, complete, fail, cancel, release, register, deregister) to worker tokens only. So a leaked
//! worker token cannot start or cancel executions, and a client token cannot take work. A
//! missing or unknown token is `UNAUTHENTICATED`; a known token without the role is
//! `PERMISSION_DENIED`. Health checks need no token (load balancers probe them). With no tokens
//! configured at all, authentication is off — the zero-config default of `cairn dev`.
//!
//! A token that passes becomes the call's [`Caller`] (a request extension), which the services
//! hold every namespace and id the call names to (`tenancy.rs`).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::Status;
use tonic::codegen::http;

pub use super::tenancy::Caller;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Client commands: agents, teams and executions, in the token's namespaces.
    Client,
    /// Worker processes: the worker service, every namespace's tasks.
    Worker,
    /// Operators: everything a client may, plus the operator calls (the worker list, deleting
    /// executions).
    Admin,
}

impl TokenKind {
    fn name(self) -> &'static str {
        match self {
            TokenKind::Client => "client",
            TokenKind::Worker => "worker",
            TokenKind::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<TokenKind> {
        [TokenKind::Client, TokenKind::Worker, TokenKind::Admin]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a token (health).
    Open,
    /// Client and admin tokens; the call is held to the token's namespaces.
    Client,
    /// Admin tokens, and client tokens bound to no namespace: reads about the whole server.
    Operator,
    /// Admin tokens only: calls that destroy data.
    Admin,
    /// Worker tokens only.
    Worker,
}

const AGENTS: &str = "/cairn.v1.AgentService/";
const TEAMS: &str = "/cairn.v1.TeamService/";
const EXECUTIONS: &str = "/cairn.v1.ExecutionService/";
const WORKERS: &str = "/cairn.v1.WorkerService/";

/// The access rule of every RPC, one line each. A method of ours missing here needs an admin
/// token (so a new RPC is never open by accident), and a unit test fails until it has its line.
///
/// MERGE POINT for new RPCs. One that takes an execution id also loads it through
/// `Scope::execution` (see `tenancy.rs`), one line.
pub const METHODS: &[(&str, &str, Access)] = &[
    (AGENTS, "CreateAgent", Access::Client),
    (AGENTS, "GetAgent", Access::Client),
    (AGENTS, "ListAgents", Access::Client),
    (AGENTS, "UpdateAgent", Access::Client),
    (AGENTS, "ArchiveAgent", Access::Client),
    (AGENTS, "ListRuntimes", Access::Client),
    (TEAMS, "CreateTeam", Access::Client),
    (TEAMS, "GetTeam", Access::Client),
    (TEAMS, "ListTeams", Access::Client),
    (TEAMS, "UpdateTeam", Access::Client),
    (TEAMS, "ArchiveTeam", Access::Client),
    (EXECUTIONS, "StartExecution", Access::Client),
    (EXECUTIONS, "GetExecution", Access::Client),
    (EXECUTIONS, "ListExecutions", Access::Client),
    (EXECUTIONS, "CancelExecution", Access::Client),
    (EXECUTIONS, "StreamExecution", Access::Client),
    (EXECUTIONS, "GetHistory", Access::Client),
    (EXECUTIONS, "ReplayExecution", Access::Client),
    (EXECUTIONS, "RetryExecution", Access::Client),
    (EXECUTIONS, "GetStats", Access::Client),
    (EXECUTIONS, "DeleteExecution", Access::Admin),
    (EXECUTIONS, "SendMessage", Access::Client),
    (EXECUTIONS, "CloseExecution", Access::Client),
    (EXECUTIONS, "ResolveApproval", Access::Client),
    (WORKERS, "PollTasks", Access::Worker),
    (WORKERS, "ReportProgress", Access::Worker),
    (WORKERS, "CompleteTask", Access::Worker),
    (WORKERS, "FailTask", Access::Worker),
    (WORKERS, "CancelTask", Access::Worker),
    (WORKERS, "ReleaseTask", Access::Worker),
    (WORKERS, "RegisterRuntimes", Access::Worker),
    (WORKERS, "DeregisterWorker", Access::Worker),
    (WORKERS, "ListWorkers", Access::Operator),
];

/// The access rule of a gRPC method path.
pub fn access(path: &str) -> Access {
    if path.starts_with("/grpc.health.v1.Health/") {
        return Access::Open;
    }
    if !path.starts_with("/cairn.v1.") {
        // Reflection: the API's shape, which any client may read.
        return Access::Client;
    }
    METHODS
        .iter()
        .find(|(service, method, _)| {
            path.strip_prefix(service)
                .is_some_and(|rest| rest == *method)
        })
        .map_or(Access::Admin, |(_, _, access)| *access)
}

/// One accepted token.
#[derive(Clone)]
struct Grant {
    token: String,
    kind: TokenKind,
    /// None: every namespace.
    namespaces: Option<Arc<[String]>>,
}

impl Grant {
    fn opens(&self, access: Access) -> bool {
        match (access, self.kind) {
            (Access::Open, _) => true,
            (Access::Client, TokenKind::Client | TokenKind::Admin) => true,
            (Access::Operator, TokenKind::Admin) => true,
            (Access::Operator, TokenKind::Client) => self.namespaces.is_none(),
            (Access::Admin, TokenKind::Admin) => true,
            (Access::Worker, TokenKind::Worker) => true,
            _ => false,
        }
    }

    /// `TOKEN [namespace=a,b] [role=client|admin|worker]`; `kind` when no role is given.
    fn parse(line: &str, kind: TokenKind) -> Result<Grant, String> {
        let mut words = line.split_whitespace();
        let token = words.next().unwrap_or_default().to_string();
        if token.contains('=') {
            return Err("a token line starts with the token, then `namespace=` and `role=`".into());
        }
        let mut grant = Grant {
            token,
            kind,
            namespaces: None,
        };
        for word in words {
            match word.split_once('=') {
                Some(("role", role)) => {
                    grant.kind = TokenKind::parse(role).ok_or_else(|| {
                        format!("role `{role}` is unknown: use client, admin or worker")
                    })?;
                }
                Some(("namespace", list)) => {
                    let names = list
                        .split(',')
                        .map(|n| {
                            super::validate::namespace(n)
                                .ok()
                                .filter(|_| !n.is_empty())
                                .ok_or_else(|| {
                                    format!(
                                        "namespace `{n}` is invalid: use 1-63 lowercase letters, \
                                         digits, `-` or `_`"
                                    )
                                })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    grant.namespaces = Some(names.into());
                }
                _ => {
                    return Err(format!(
                        "`{word}` is not understood: after the token give `namespace=a,b` and \
                         `role=client|admin|worker`"
                    ));
                }
            }
        }
        if grant.kind == TokenKind::Worker && grant.namespaces.is_some() {
            return Err(
                "a worker token serves every namespace's tasks: remove `namespace=`".into(),
            );
        }
        Ok(grant)
    }
}

/// The accepted tokens. None at all turns authentication off.
#[derive(Clone, Default)]
pub struct Tokens {
    grants: Vec<Grant>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the tokens themselves.
        let count = |kind| self.grants.iter().filter(|g| g.kind == kind).count();
        f.debug_struct("Tokens")
            .field("clients", &count(TokenKind::Client))
            .field("admins", &count(TokenKind::Admin))
            .field("workers", &count(TokenKind::Worker))
            .finish()
    }
}

impl Tokens {
    /// Plain tokens (client tokens bound to no namespace, and worker tokens); blank entries are
    /// ignored.
    pub fn new(clients: Vec<String>, workers: Vec<String>) -> Tokens {
        let plain = |tokens: Vec<String>, kind| {
            tokens
                .into_iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .map(move |token| Grant {
                    token,
                    kind,
                    namespaces: None,
                })
        };
        Tokens {
            grants: plain(clients, TokenKind::Client)
                .chain(plain(workers, TokenKind::Worker))
                .collect(),
        }
    }

    /// Token lines, each `TOKEN [namespace=a,b] [role=client|admin|worker]`, with `kind` as the
    /// role of lines that name none. A line that cannot be read is an error naming what to fix
    /// (never a token that opens more than its line says). Blank lines are ignored.
    pub fn add_lines(&mut self, lines: &[String], kind: TokenKind) -> Result<(), String> {
        for (n, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let grant = Grant::parse(line, kind).map_err(|e| format!("token {}: {e}", n + 1))?;
            self.grants.push(grant);
        }
        Ok(())
    }

    /// Whether any token is configured (authentication is on).
    pub fn enabled(&self) -> bool {
        !self.grants.is_empty()
    }

    fn find(&self, token: &str) -> Option<&Grant> {
        // Compare every entry in full, so timing says nothing about which prefix matched.
        self.grants.iter().fold(None, |found, grant| {
            let equal = constant_time_eq(&grant.token, token);
            if equal && found.is_none() {
                Some(grant)
            } else {
                found
            }
        })
    }

    /// Checks the `authorization` header of a call to `path` (the gRPC method; the HTTP API asks
    /// with the method its route calls), and says who is calling.
    pub(crate) fn check(
        &self,
        path: &str,
        authorization: Option<&http::HeaderValue>,
    ) -> Result<Caller, Status> {
        let access = access(path);
        if !self.enabled() || access == Access::Open {
            return Ok(Caller::anyone());
        }
        let need = match access {
            Access::Worker => "worker",
            Access::Admin => "admin",
            Access::Operator => "admin (or unbound client)",
            Access::Client | Access::Open => "client",
        };
        let token = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Status::unauthenticated(format!(
                    "{path} needs a {need} token: send `authorization: Bearer <token>`"
                ))
            })?;
        let Some(grant) = self.find(token) else {
            return Err(Status::unauthenticated(format!(
                "{path}: the bearer token is not valid"
            )));
        };
        if !grant.opens(access) {
            let bound = if grant.namespaces.is_some() {
                " bound to namespaces"
            } else {
                ""
            };
            return Err(Status::permission_denied(format!(
                "{path} needs a {need} token; this is a {} token{bound}",
                grant.kind.name()
            )));
        }
        Ok(match &grant.namespaces {
            Some(namespaces) => Caller::bound(namespaces.clone()),
            None => Caller::anyone(),
        })
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// A tower layer that checks tokens before a call reaches any service, and hands the service
/// the [`Caller`] as a request extension.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    tokens: Arc<Tokens>,
    worker_certs: bool,
}

impl AuthLayer {
    /// A layer accepting `tokens`.
    pub fn new(tokens: Tokens) -> Self {
        AuthLayer {
            tokens: Arc::new(tokens),
            worker_certs: false,
        }
    }

    /// Also refuses worker calls over a connection that presented no client certificate (the
    /// TLS handshake verified any it presented against the server's `--client-ca`).
    pub fn with_worker_certs(mut self, required: bool) -> Self {
        self.worker_certs = required;
        self
    }
}

/// Whether the call came over a TLS connection whose client presented a certificate.
fn presented_certificate<B>(request: &http::Request<B>) -> bool {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .is_some_and(|certs| !certs.is_empty())
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            tokens: self.tokens.clone(),
            worker_certs: self.worker_certs,
        }
    }
}

/// The service [`AuthLayer`] wraps around the routes.
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    tokens: Arc<Tokens>,
    worker_certs: bool,
}

impl<S, B, R> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let checked = if self.worker_certs
            && access(path) == Access::Worker
            && !presented_certificate(&request)
        {
            Err(Status::unauthenticated(format!(
                "{path} needs a client certificate signed by the server's --client-ca: start \
                 the worker with --tls-cert and --tls-key"
            )))
        } else {
            self.tokens
                .check(path, request.headers().get(http::header::AUTHORIZATION))
        };
        match checked {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Either::Right(self.inner.call(request))
            }
            Err(status) => Either::Left(ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
