//! Where tokens and certificates come from: files named by flags (or their environment
//! variables) and the environment itself — never command-line values, which other users of the
//! machine can read from the process list.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::api::{ConnectOptions, Security, ServerTls, TokenKind, Tokens};

/// The token clients and workers send: `CAIRN_TOKEN`, or the first token in `--token-file`.
const TOKEN_ENV: &str = "CAIRN_TOKEN";
/// Client tokens a server accepts, comma-separated (besides `--client-tokens-file`).
const CLIENT_TOKENS_ENV: &str = "CAIRN_CLIENT_TOKENS";
/// Worker tokens a server accepts, comma-separated (besides `--worker-tokens-file`).
const WORKER_TOKENS_ENV: &str = "CAIRN_WORKER_TOKENS";

/// How a server guards its port. With no tokens at all, authentication is off.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct SecurityArgs {
    /// A file of client tokens, one per line (`#` starts a comment); also CAIRN_CLIENT_TOKENS.
    /// A line may bind its token: `TOKEN namespace=a,b role=client|admin` (a plain token is a
    /// client of every namespace; an admin may also list workers and delete executions).
    #[arg(long, env = "CAIRN_CLIENT_TOKENS_FILE")]
    client_tokens_file: Option<PathBuf>,
    /// A file of worker tokens, one per line; also CAIRN_WORKER_TOKENS.
    #[arg(long, env = "CAIRN_WORKER_TOKENS_FILE")]
    worker_tokens_file: Option<PathBuf>,
    /// The server's PEM certificate chain, to serve TLS (with --tls-key).
    #[arg(long, env = "CAIRN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The server's PEM private key.
    #[arg(long, env = "CAIRN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates that sign workers' client certificates: the worker service then
    /// refuses connections without one (mutual TLS; other services take any client).
    #[arg(long, env = "CAIRN_CLIENT_CA", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Serve a non-loopback address with no tokens, so anyone who can reach the port can run
    /// agents and claim their tasks. Without it such a server refuses to start.
    #[arg(long, env = "CAIRN_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
}

impl SecurityArgs {
    /// Reads the files and the environment, for a server that listens on `listen`. A server
    /// reachable from other machines must check tokens unless the operator says otherwise: auth
    /// that is off by default on `0.0.0.0` is off in every deployment nobody reviewed.
    pub(super) fn load_for(&self, listen: SocketAddr) -> anyhow::Result<Security> {
        let security = self.load()?;
        if security.tokens.enabled() || listen.ip().is_loopback() {
            return Ok(security);
        }
        if !self.insecure_no_auth {
            anyhow::bail!(
                "refusing to serve {listen} without authentication: anyone who can reach it could \
                 run agents and take their tasks. Give client and worker tokens \
                 (--client-tokens-file or CAIRN_CLIENT_TOKENS, --worker-tokens-file or \
                 CAIRN_WORKER_TOKENS), listen on a loopback address, or pass --insecure-no-auth \
                 to serve without them"
            );
        }
        eprintln!(
            "warning: serving {listen} with authentication OFF (--insecure-no-auth): anyone who \
             can reach this port can run agents and claim their tasks"
        );
        tracing::warn!(%listen, "serving a non-loopback address with authentication off");
        Ok(security)
    }

    /// Reads the files and the environment.
    fn load(&self) -> anyhow::Result<Security> {
        let mut tokens = Tokens::default();
        for (file, env, kind) in [
            (
                &self.client_tokens_file,
                CLIENT_TOKENS_ENV,
                TokenKind::Client,
            ),
            (
                &self.worker_tokens_file,
                WORKER_TOKENS_ENV,
                TokenKind::Worker,
            ),
        ] {
            if let Some(path) = file {
                tokens
                    .add_lines(&read_tokens(path)?, kind)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            }
            if let Ok(list) = std::env::var(env) {
                tokens
                    .add_lines(&env_tokens(&list), kind)
                    .map_err(|e| anyhow::anyhow!("{env}: {e}"))?;
            }
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(ServerTls::load_with_client_ca(
                cert,
                key,
                self.client_ca.as_deref(),
            )?),
            _ => None,
        };
        Ok(Security { tokens, tls })
    }
}

/// The token lines of an environment variable: comma-separated plain tokens, or, once any
/// token has attributes (`namespace=a,b` holds a comma of its own), one per line.
fn env_tokens(list: &str) -> Vec<String> {
    if list.contains('=') {
        list.lines().map(str::to_string).collect()
    } else {
        list.split(',').map(str::to_string).collect()
    }
}

/// How a client or worker reaches a server.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct ConnectArgs {
    /// A file holding the bearer token to send (else CAIRN_TOKEN).
    #[arg(long, global = true, env = "CAIRN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// A PEM CA certificate to trust for https:// servers (besides the system's roots).
    #[arg(long, global = true, env = "CAIRN_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// The name the server's certificate must carry, when the URL's host is not it.
    #[arg(long, global = true, env = "CAIRN_TLS_DOMAIN")]
    tls_domain: Option<String>,
}

impl ConnectArgs {
    /// Reads the token and the CA certificate.
    pub(super) fn load(&self) -> anyhow::Result<ConnectOptions> {
        let token = match &self.token_file {
            Some(path) => Some(
                read_tokens(path)?
                    .into_iter()
                    .next()
                    // The token alone, should the line be copied from a server's file.
                    .and_then(|line| line.split_whitespace().next().map(str::to_string))
                    .with_context(|| format!("{} holds no token", path.display()))?,
            ),
            None => std::env::var(TOKEN_ENV)
                .ok()
                .filter(|t| !t.trim().is_empty()),
        };
        let ca_cert =
            match &self.ca_cert {
                Some(path) => Some(std::fs::read(path).with_context(|| {
                    format!("cannot read the CA certificate {}", path.display())
                })?),
                None => None,
            };
        Ok(ConnectOptions {
            token,
            ca_cert,
            tls_domain: self.tls_domain.clone(),
            identity: None,
        })
    }
}

/// The tokens in a file: one per line, blank lines and `#` comments skipped.
fn read_tokens(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// A worker's client certificate and key (mutual TLS), read from their PEM files.
pub(super) fn read_identity(cert: &Path, key: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    Ok((read(cert)?, read(key)?))
}
