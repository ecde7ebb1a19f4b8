//! The client side: a rustls config that trusts `--ca` or, with `-k`, any certificate, and
//! connectors that open TCP and handshake within `--timeout`: `Tls` for HTTP/1.1 on monoio's
//! own I/O (monoio-rustls), `PollTls` for HTTP/2.
//!
//! `PollTls` runs rustls through tokio-rustls over monoio's poll-io TCP stream, because h2
//! reads and writes through tokio's `AsyncRead`/`AsyncWrite`, which monoio-rustls's stream
//! lacks (it has monoio's owned-buffer traits only). Bridging those (monoio-compat) either
//! copies through a buffer of its own with a boxed future per operation, or, without the copy,
//! needs the caller to hand the same buffer back on every poll until the kernel is done with it
//! (its unsafe half), which h2's codec does not promise; monoio-http's h2 fork is stale and
//! pins an old rustls. tokio-rustls is the rustls project's own adapter, on the same rustls
//! 0.23, and readiness-based poll-io hands the kernel no buffer to own: no unsafe of ours, no
//! copy between two layers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::tcp::stream_poll::TcpStreamPoll;
use monoio::net::TcpStream;
use monoio_rustls::{ClientTlsStream, TlsConnector};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use strait::kit::SkipVerify;

use crate::connect::{self, Connect};
use crate::error::BenchError;
use crate::stats::ErrorKind;
use crate::tls::H2;

/// Whom the server's certificate must chain to.
pub enum Trust {
    /// The CAs of a `--ca` bundle.
    Roots(Arc<RootCertStore>),
    /// Anyone (`-k`): the chain is not checked, the handshake's signatures still are.
    Anyone,
}

impl Trust {
    pub fn new(ca: Option<&Path>, insecure: bool) -> Result<Trust, BenchError> {
        match (ca, insecure) {
            (Some(ca), _) => {
                let pem = std::fs::read(ca).map_err(BenchError::io(format!("reading {}", ca.display())))?;
                let mut roots = RootCertStore::empty();
                for cert in rustls_pemfile::certs(&mut &*pem) {
                    let cert = cert.map_err(BenchError::io(format!("parsing {}", ca.display())))?;
                    roots.add(cert).map_err(|e| BenchError::Tls(format!("{}: {e}", ca.display())))?;
                }
                if roots.is_empty() {
                    return Err(BenchError::Tls(format!("{}: no PEM certificate in it", ca.display())));
                }
                Ok(Trust::Roots(Arc::new(roots)))
            }
            (None, true) => Ok(Trust::Anyone),
            (None, false) => Err(BenchError::Usage(
                "a TLS load needs --ca FILE (the CA that signed the server's certificate) or -k/--insecure".into(),
            )),
        }
    }
}

/// A client config on the ring provider offering `alpn`, resuming sessions or never.
pub fn config(trust: &Trust, resume: bool, alpn: &[u8]) -> Result<ClientConfig, BenchError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| BenchError::Tls(e.to_string()))?;
    let mut config = match trust {
        Trust::Roots(roots) => builder.with_root_certificates(roots.clone()).with_no_client_auth(),
        Trust::Anyone => builder
            .dangerous()
            // The handshake's signatures are still checked: the crypto measured is a verifying
            // client's, less the chain walk.
            .with_custom_certificate_verifier(Arc::new(SkipVerify(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Ok(config)
}

/// TCP to `addr`, then a handshake as `name`, both within `timeout`.
#[derive(Clone)]
pub struct Tls {
    pub addr: SocketAddr,
    pub name: ServerName<'static>,
    pub timeout: Duration,
    pub config: Arc<ClientConfig>,
}

impl Tls {
    /// The same connector with a session store of its own. rustls's in-memory store keeps at
    /// most 8 TLS 1.3 tickets per server, and each resumption uses one up: more connections
    /// sharing a store than that drain it whenever their tickets arrive in a burst (measured:
    /// 4% full handshakes at 16 connections, 42% at 64). A store per connection, which takes one
    /// ticket and gets two for each handshake, never runs dry.
    pub fn with_own_sessions(&self) -> Tls {
        let mut config = (*self.config).clone();
        config.resumption = Resumption::default();
        Tls { config: Arc::new(config), ..self.clone() }
    }
}

impl Connect for Tls {
    type Stream = ClientTlsStream<TcpStream>;

    async fn connect(&self) -> Result<Self::Stream, ErrorKind> {
        let started = Instant::now();
        let tcp = connect::tcp(self.addr, self.timeout).await?;
        let left = self.timeout.saturating_sub(started.elapsed());
        match monoio::time::timeout(left, TlsConnector::from(self.config.clone()).connect(self.name.clone(), tcp)).await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(_)) => Err(ErrorKind::Tls),
            Err(_) => Err(ErrorKind::Timeout),
        }
    }
}

/// The same TCP and handshake offering only `h2`, on a poll-io stream. A server that does not
/// choose `h2` fails the handshake as a TLS error: it would not understand the connection
/// preface that follows.
#[derive(Clone)]
pub struct PollTls(pub Tls);

impl Connect for PollTls {
    type Stream = tokio_rustls::client::TlsStream<TcpStreamPoll>;

    async fn connect(&self) -> Result<Self::Stream, ErrorKind> {
        let Tls { addr, name, timeout, config } = &self.0;
        let started = Instant::now();
        let tcp = connect::tcp(*addr, *timeout).await?.try_into_poll_io().map_err(|_| ErrorKind::Io)?;
        let left = timeout.saturating_sub(started.elapsed());
        let handshake = tokio_rustls::TlsConnector::from(config.clone()).connect(name.clone(), tcp);
        match monoio::time::timeout(left, handshake).await {
            Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(H2) => Ok(stream),
            Ok(_) => Err(ErrorKind::Tls),
            Err(_) => Err(ErrorKind::Timeout),
        }
    }
}
