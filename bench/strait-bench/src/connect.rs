//! How a load connection is opened. The HTTP loop is the same over plain TCP and TLS; only the
//! connector differs. HTTP/2 runs over the same connectors' poll-io forms (`PollTcp`, and
//! `tls::client::PollTls`): h2 reads and writes through tokio's I/O traits.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use monoio::net::tcp::stream_poll::TcpStreamPoll;
use monoio::net::TcpStream;

use crate::stats::ErrorKind;

/// Opens one connection ready for requests (TCP connected, TLS handshaken). Its stream is
/// monoio's own (`AsyncReadRent`) or a poll-io one (tokio's `AsyncRead`); each load says which
/// it needs.
pub trait Connect: Clone + Send + Sync + 'static {
    type Stream: 'static;
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

/// Plain TCP as a poll-io stream: h2c, with prior knowledge.
#[derive(Debug, Clone)]
pub struct PollTcp(pub Tcp);

impl Connect for PollTcp {
    type Stream = TcpStreamPoll;

    async fn connect(&self) -> Result<TcpStreamPoll, ErrorKind> {
        self.0.connect().await?.try_into_poll_io().map_err(|_| ErrorKind::Io)
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
