//! An upstream connection's byte stream: plain TCP, or TLS originated from the cluster's
//! DestinationRule `tls` settings. One type, so that pools, relays and tunnels need not care.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::duplex::MaybeTls;
use crate::snapshot::Cluster;
use crate::tls_stream::ClientStream;

/// Plain TCP, or TLS originated from the cluster's DestinationRule `tls` settings.
pub type UpstreamStream = MaybeTls<TcpStream, ClientStream>;

impl UpstreamStream {
    /// Connects to `addr` of `cluster`, then runs the TLS handshake with `tls` (this core's
    /// copy of the cluster's client config) when the cluster originates TLS.
    pub async fn open(addr: SocketAddr, cluster: &Cluster, tls: Option<Arc<ClientConfig>>) -> io::Result<Self> {
        let stream = TcpStream::connect_addr(addr).await?;
        // Requests and heads are written whole: Nagle would only hold their last segment.
        let _ = stream.set_nodelay(true);
        super::keepalive::configure(&stream, cluster);
        let (Some(config), Some(settings)) = (tls, &cluster.policy.tls) else {
            return Ok(Self::Plain(stream));
        };
        // Istio's SNI: the DestinationRule's, else the service's own name.
        let name = settings.sni.as_deref().unwrap_or(&cluster.host);
        let name =
            ServerName::try_from(name.to_string()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(Self::Tls(Box::new(ClientStream::connect(stream, conn).await?)))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        let addr = super::keepalive::with_socket(self, |sock| sock.local_addr())?;
        addr.as_socket().ok_or_else(|| io::ErrorKind::Unsupported.into())
    }
}

/// The socket under any TLS, for socket options and readiness.
impl AsRawFd for UpstreamStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Self::Plain(s) => s.as_raw_fd(),
            Self::Tls(s) => s.as_raw_fd(),
        }
    }
}
