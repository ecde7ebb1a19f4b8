//! The one place an upstream connection is opened, for proxied HTTP requests, TCP routes and
//! mirrored copies alike: TCP within the cluster's `connectTimeout`, socket options, then TLS
//! when the cluster's DestinationRule originates it. Circuit breakers and counting stay with the
//! callers, where they differ: HTTP waits as a pending request and counts per endpoint, TCP
//! refuses at once and counts per route and cluster, a mirrored copy counts nothing.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use tracing::debug;

use super::UpstreamStream;
use crate::snapshot::{Cluster, TlsConfig};
use crate::tls_stream::ClientStream;

/// Why no connection was made.
#[derive(Debug)]
pub enum ConnectError {
    /// Connecting or the TLS handshake failed.
    Failed(io::Error),
    /// Not done within the cluster's `connectTimeout`.
    TimedOut,
}

impl From<ConnectError> for io::Error {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Failed(e) => e,
            ConnectError::TimedOut => io::ErrorKind::TimedOut.into(),
        }
    }
}

/// Connects to `addr`, an endpoint of `cluster`; `client` gives this core's copy of the
/// cluster's TLS client config when it originates TLS.
pub async fn connect(
    addr: SocketAddr,
    cluster: &Cluster,
    client: impl FnOnce(&TlsConfig<ClientConfig>) -> Arc<ClientConfig>,
) -> Result<UpstreamStream, ConnectError> {
    let tls = cluster.policy.tls.as_ref().map(|t| client(&t.config));
    match monoio::time::timeout(cluster.policy.connect_timeout, open(addr, cluster, tls)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => {
            debug!(cluster = %cluster.name, %addr, "upstream connect failed: {e}");
            Err(ConnectError::Failed(e))
        }
        Err(_) => {
            debug!(cluster = %cluster.name, %addr, "upstream connect timed out");
            Err(ConnectError::TimedOut)
        }
    }
}

/// Connects to `addr` of `cluster`, then runs the TLS handshake with `tls` (this core's copy of
/// the cluster's client config) when the cluster originates TLS.
async fn open(addr: SocketAddr, cluster: &Cluster, tls: Option<Arc<ClientConfig>>) -> io::Result<UpstreamStream> {
    let stream = TcpStream::connect_addr(addr).await?;
    // Requests and heads are written whole: Nagle would only hold their last segment.
    let _ = stream.set_nodelay(true);
    super::keepalive::configure(&stream, cluster);
    let (Some(config), Some(settings)) = (tls, &cluster.policy.tls) else {
        return Ok(UpstreamStream::Plain(stream));
    };
    // Istio's SNI: the DestinationRule's, else the service's own name.
    let name = settings.sni.as_deref().unwrap_or(&cluster.host);
    let name = ServerName::try_from(name.to_string()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    Ok(UpstreamStream::Tls(Box::new(ClientStream::connect(stream, conn).await?)))
}
