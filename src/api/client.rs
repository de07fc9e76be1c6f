//! Connecting to a Cairn server: plain or TLS, with a bearer token on every call. Shared by the
//! CLI's client commands and by remote workers.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// How to reach a server.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// The bearer token sent with every call (client or worker token).
    pub token: Option<String>,
    /// A PEM CA certificate to trust for `https://` servers (besides the system's roots).
    pub ca_cert: Option<Vec<u8>>,
    /// The name to check the server certificate against, when the URL's host is not it.
    pub tls_domain: Option<String>,
    /// A PEM client certificate and its key, presented to servers that verify workers'
    /// certificates (`--client-ca`).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("ca_cert", &self.ca_cert.is_some())
            .field("tls_domain", &self.tls_domain)
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not `http://HOST:PORT` or `https://HOST:PORT`.
    #[error("`{url}` is not a server URL; use http://HOST:PORT or https://HOST:PORT ({reason})")]
    Url {
        /// The URL as given, for the error message.
        url: String,
        /// Why.
        reason: String,
    },
    /// The token cannot be sent in a header.
    #[error("the token contains characters that cannot be sent in a header")]
    Token,
    /// TLS could not be configured.
    #[error("TLS for {url}: {reason}")]
    Tls {
        /// The URL as given, for the error message.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Adds `authorization: Bearer <token>` to every call (nothing when there is no token), and the
/// current span's W3C trace context.
#[derive(Clone, Debug)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        super::trace::inject(request.metadata_mut());
        Ok(request)
    }
}

/// A channel whose calls carry the bearer token.
pub type AuthChannel = InterceptedService<Channel, Bearer>;

impl ConnectOptions {
    /// The interceptor that sends the token.
    pub fn bearer(&self) -> Result<Bearer, ConnectError> {
        match &self.token {
            None => Ok(Bearer(None)),
            Some(token) => format!("Bearer {}", token.trim())
                .parse()
                .map(|v| Bearer(Some(v)))
                .map_err(|_| ConnectError::Token),
        }
    }

    /// The endpoint for `url`, with TLS when it is `https://`.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, ConnectError> {
        let bad_url = |reason: String| ConnectError::Url {
            url: url.to_string(),
            reason,
        };
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(bad_url("no http:// or https:// scheme".into()));
        }
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| bad_url(e.to_string()))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            // Find a dead server (or a dead path to it) within seconds, even mid long-poll.
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            // h2 counts, per connection and for its whole life, the frames that arrive on a
            // stream this side already reset (a watcher that stops reading before the stream's
            // end, a long poll given up), and at 1024 closes the connection with
            // GOAWAY(ENHANCE_YOUR_CALM), failing every call in flight on it (hyperium/h2#856).
            // A client of its own server leaves streams as a matter of course: no such limit.
            .http2_max_local_error_reset_streams(None);
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(pem) = &self.ca_cert {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some(domain) = &self.tls_domain {
                tls = tls.domain_name(domain.clone());
            }
            if let Some((cert, key)) = &self.identity {
                tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| ConnectError::Tls {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        }
        Ok(endpoint)
    }
}
