//! An upstream connection's byte stream: plain TCP, or TLS originated from the cluster's
//! DestinationRule `tls` settings. One type, so that pools, relays and tunnels need not care.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use monoio::net::TcpStream;

use crate::duplex::MaybeTls;
use crate::tls_stream::ClientStream;

/// Plain TCP, or TLS originated from the cluster's DestinationRule `tls` settings.
pub type UpstreamStream = MaybeTls<TcpStream, ClientStream>;

impl UpstreamStream {
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
