//! An upstream connection's byte stream: plain TCP, or TLS originated from the cluster's
//! DestinationRule `tls` settings. One type, so that pools, relays and tunnels need not care.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Split, Splitable};
use monoio::net::TcpStream;
use monoio::BufResult;
use monoio_rustls::{ClientTlsStream, TlsConnector};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use crate::duplex::Duplex;
use crate::snapshot::Cluster;

pub enum UpstreamStream {
    Plain(TcpStream),
    /// Boxed: rustls's session and buffers would otherwise size every plain connection too.
    /// The socket's descriptor is kept beside it: the rustls stream does not lend its socket.
    Tls(Box<ClientTlsStream<TcpStream>>, RawFd),
}

// SAFETY: both variants may be read and written from two halves at once (monoio marks
// `TcpStream` and rustls streams over it `Split`), and the enum adds no shared state.
unsafe impl Split for UpstreamStream {}

impl Duplex for UpstreamStream {
    type Read = OwnedReadHalf<UpstreamStream>;
    type Write = OwnedWriteHalf<UpstreamStream>;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

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
        let fd = stream.as_raw_fd();
        let tls = TlsConnector::from(config).connect(name, stream).await.map_err(io::Error::other)?;
        Ok(Self::Tls(Box::new(tls), fd))
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
            Self::Tls(_, fd) => *fd,
        }
    }
}

impl AsyncReadRent for UpstreamStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.read(buf).await,
            Self::Tls(s, _) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.readv(buf).await,
            Self::Tls(s, _) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for UpstreamStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.write(buf).await,
            Self::Tls(s, _) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.writev(buf).await,
            Self::Tls(s, _) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush().await,
            Self::Tls(s, _) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.shutdown().await,
            Self::Tls(s, _) => s.shutdown().await,
        }
    }
}
