//! An upstream connection's byte stream: plain TCP, or TLS originated from the cluster's
//! DestinationRule `tls` settings. One type, so that pools, relays and tunnels need not care.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;
use monoio::BufResult;
use monoio_rustls::ClientTlsStream;

pub enum UpstreamStream {
    Plain(TcpStream),
    /// Boxed: rustls's session and buffers would otherwise size every plain connection too.
    /// The socket's descriptor is kept beside it: the rustls stream does not lend its socket.
    Tls(Box<ClientTlsStream<TcpStream>>, RawFd),
}

// SAFETY: both variants may be read and written from two halves at once (monoio marks
// `TcpStream` and rustls streams over it `Split`), and the enum adds no shared state.
unsafe impl Split for UpstreamStream {}

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
