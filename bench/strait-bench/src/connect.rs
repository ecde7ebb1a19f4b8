//! How a load connection is opened. The HTTP loop is the same over plain TCP and TLS; only the
//! connector differs.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

use crate::stats::ErrorKind;

/// Opens one connection ready for requests (TCP connected, TLS handshaken).
pub trait Connect: Clone + Send + Sync + 'static {
    type Stream: AsyncReadRent + AsyncWriteRent + 'static;
    fn connect(&self) -> impl Future<Output = Result<Self::Stream, ErrorKind>>;
}

/// Plain TCP with Nagle off, as every load generator does.
#[derive(Debug, Clone)]
pub struct Tcp {
    pub addr: SocketAddr,
    pub timeout: Duration,
}

impl Connect for Tcp {
    type Stream = TcpStream;

    async fn connect(&self) -> Result<TcpStream, ErrorKind> {
        tcp(self.addr, self.timeout).await
    }
}

/// A TCP connection within `timeout`, Nagle off.
pub async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ErrorKind> {
    match monoio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(_)) => Err(ErrorKind::Connect),
        Err(_) => Err(ErrorKind::Timeout),
    }
}
