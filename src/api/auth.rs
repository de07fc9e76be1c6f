//! Bearer-token authentication, with separate tokens for clients and workers.
//!
//! A client token may call `AgentService`, `ExecutionService`, `WorkerService/ListWorkers` and
//! reflection; a worker token may call the rest of `WorkerService` (poll, progress, complete,
//! fail, cancel, release). So a leaked worker token cannot start or cancel executions, and a
//! client token cannot take work. A missing or unknown token is `UNAUTHENTICATED`; a known token
//! of the wrong kind is `PERMISSION_DENIED`. Health checks need no token (load balancers probe
//! them). With no tokens configured at all, authentication is off — the zero-config default of
//! `cairn dev`.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::Status;
use tonic::codegen::http;

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Client commands and operators.
    Client,
    /// Worker processes.
    Worker,
}

impl TokenKind {
    fn name(self) -> &'static str {
        match self {
            TokenKind::Client => "client",
            TokenKind::Worker => "worker",
        }
    }
}

/// The accepted tokens of each kind. Empty sets of both kinds turn authentication off.
#[derive(Clone, Default)]
pub struct Tokens {
    clients: Vec<String>,
    workers: Vec<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the tokens themselves.
        f.debug_struct("Tokens")
            .field("clients", &self.clients.len())
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Tokens {
    /// Tokens of both kinds; blank entries are ignored.
    pub fn new(clients: Vec<String>, workers: Vec<String>) -> Tokens {
        let keep = |tokens: Vec<String>| {
            tokens
                .into_iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect()
        };
        Tokens {
            clients: keep(clients),
            workers: keep(workers),
        }
    }

    /// Whether any token is configured (authentication is on).
    pub fn enabled(&self) -> bool {
        !self.clients.is_empty() || !self.workers.is_empty()
    }

    fn holds(list: &[String], token: &str) -> bool {
        // Compare every entry in full, so timing says nothing about which prefix matched.
        list.iter()
            .fold(false, |found, t| constant_time_eq(t, token) | found)
    }

    /// Checks the `authorization` header of a call to `path` (the gRPC method; the HTTP API asks
    /// with the method its route calls).
    pub(crate) fn check(
        &self,
        path: &str,
        authorization: Option<&http::HeaderValue>,
    ) -> Result<(), Status> {
        if !self.enabled() {
            return Ok(());
        }
        let Some(kind) = required_kind(path) else {
            return Ok(());
        };
        let token = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Status::unauthenticated(format!(
                    "{path} needs a {} token: send `authorization: Bearer <token>`",
                    kind.name()
                ))
            })?;
        let (right, wrong) = match kind {
            TokenKind::Client => (&self.clients, &self.workers),
            TokenKind::Worker => (&self.workers, &self.clients),
        };
        if Tokens::holds(right, token) {
            Ok(())
        } else if Tokens::holds(wrong, token) {
            Err(Status::permission_denied(format!(
                "{path} needs a {} token; this is a {} token",
                kind.name(),
                match kind {
                    TokenKind::Client => TokenKind::Worker.name(),
                    TokenKind::Worker => TokenKind::Client.name(),
                }
            )))
        } else {
            Err(Status::unauthenticated(format!(
                "{path}: the bearer token is not valid"
            )))
        }
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// The kind of token a gRPC method needs; `None` for methods open to all (health).
pub fn required_kind(path: &str) -> Option<TokenKind> {
    if path.starts_with("/grpc.health.v1.Health/") {
        None
    } else if path == "/cairn.v1.WorkerService/ListWorkers" {
        Some(TokenKind::Client)
    } else if path.starts_with("/cairn.v1.WorkerService/") {
        Some(TokenKind::Worker)
    } else {
        Some(TokenKind::Client)
    }
}

/// A tower layer that checks tokens before a call reaches any service.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    tokens: Arc<Tokens>,
}

impl AuthLayer {
    /// A layer accepting `tokens`.
    pub fn new(tokens: Tokens) -> Self {
        AuthLayer {
            tokens: Arc::new(tokens),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the routes.
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    tokens: Arc<Tokens>,
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

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let checked = self.tokens.check(
            request.uri().path(),
            request.headers().get(http::header::AUTHORIZATION),
        );
        match checked {
            Ok(()) => Either::Right(self.inner.call(request)),
            Err(status) => Either::Left(ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> http::HeaderValue {
        http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
    }

    #[test]
    fn each_kind_of_token_opens_only_its_own_methods() {
        let tokens = Tokens::new(vec!["c1".into()], vec!["w1".into()]);
        let start = "/cairn.v1.ExecutionService/StartExecution";
        let poll = "/cairn.v1.WorkerService/PollTasks";
        let list = "/cairn.v1.WorkerService/ListWorkers";
        assert!(tokens.check(start, Some(&bearer("c1"))).is_ok());
        assert!(tokens.check(list, Some(&bearer("c1"))).is_ok());
        assert!(tokens.check(poll, Some(&bearer("w1"))).is_ok());
        let code = |p, t: Option<&str>| tokens.check(p, t.map(bearer).as_ref()).unwrap_err().code();
        assert_eq!(code(start, Some("w1")), tonic::Code::PermissionDenied);
        assert_eq!(code(poll, Some("c1")), tonic::Code::PermissionDenied);
        assert_eq!(code(start, Some("nope")), tonic::Code::Unauthenticated);
        assert_eq!(code(poll, None), tonic::Code::Unauthenticated);
        assert!(tokens.check("/grpc.health.v1.Health/Check", None).is_ok());
    }

    #[test]
    fn no_tokens_means_no_authentication() {
        let tokens = Tokens::new(vec![" ".into()], Vec::new());
        assert!(!tokens.enabled());
        assert!(
            tokens
                .check("/cairn.v1.WorkerService/PollTasks", None)
                .is_ok()
        );
    }
}
