//! TLS for the one port: the server's certificate and key, and the handshakes.
//!
//! The server does its own handshakes rather than tonic's, whose ALPN offers only `h2`: a
//! client that asks for `http/1.1` alone (Python's urllib3, Node's fetch, `curl --http1.1`) would
//! be refused the connection, and the HTTP/JSON API is for such clients too. Here ALPN offers
//! both, and the connection then speaks what was agreed (gRPC clients ask for `h2`).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

/// How long a client may take to finish its handshake before its connection is dropped, so a
/// connection that never speaks holds nothing for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server's TLS identity, checked when it is read (a bad certificate or key is refused at
/// start-up, not at the first connection), and optionally the CA its workers' client
/// certificates must be signed by.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    /// Whether the worker service needs a client certificate (`--client-ca`).
    verifies_workers: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls { .. }")
    }
}

impl ServerTls {
    /// Reads the PEM certificate chain and private key files.
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> std::io::Result<ServerTls> {
        ServerTls::load_with_client_ca(cert, key, None)
    }

    /// Reads the PEM certificate chain and private key files, and the PEM CA certificates that
    /// sign workers' client certificates. With a CA, a client may still connect without a
    /// certificate (clients of the other services have none), but one it presents must verify,
    /// and the worker service refuses calls over a connection that presented none.
    pub fn load_with_client_ca(
        cert: &std::path::Path,
        key: &std::path::Path,
        client_ca: Option<&std::path::Path>,
    ) -> std::io::Result<ServerTls> {
        let invalid = |path: &std::path::Path, what: &str, e: &dyn std::fmt::Display| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a PEM {what}: {e}", path.display()),
            )
        };
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
            })
        };
        let chain = CertificateDer::pem_slice_iter(&read(cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(cert, "certificate chain", &e))?;
        if chain.is_empty() {
            return Err(invalid(
                cert,
                "certificate chain",
                &"it holds no certificate",
            ));
        }
        let private = PrivateKeyDer::from_pem_slice(&read(key)?)
            .map_err(|e| invalid(key, "private key", &e))?;
        let builder = ServerConfig::builder();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for certificate in CertificateDer::pem_slice_iter(&read(ca)?) {
                    let certificate = certificate.map_err(|e| invalid(ca, "CA certificate", &e))?;
                    roots
                        .add(certificate)
                        .map_err(|e| invalid(ca, "CA certificate", &e))?;
                }
                if roots.is_empty() {
                    return Err(invalid(ca, "CA certificate", &"it holds no certificate"));
                }
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| invalid(ca, "CA certificate", &e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, private)
            .map_err(|e| invalid(key, "key for that certificate", &e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            verifies_workers: client_ca.is_some(),
        })
    }

    /// Whether the worker service needs a verified client certificate.
    pub fn verifies_workers(&self) -> bool {
        self.verifies_workers
    }

    /// The connections of `tcp` after their handshakes, each done in a task of its own so a
    /// slow client delays no other; failed handshakes are logged and dropped.
    pub(super) fn accept(
        &self,
        mut tcp: impl Stream<Item = std::io::Result<TcpStream>> + Unpin + Send + 'static,
    ) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> + Send + 'static {
        let acceptor = TlsAcceptor::from(self.config.clone());
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            while let Some(accepted) = tokio_stream::StreamExt::next(&mut tcp).await {
                let stream = match accepted {
                    Ok(stream) => stream,
                    Err(e) => {
                        if tx.send(Err(e)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}
