//! A stream a relay drives both ways at once (a WebSocket tunnel, a TCP route's copy), taken
//! apart into a read half and a write half that may each wait while the other works.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use monoio::BufResult;

/// A byte stream whose two directions can be used concurrently once split.
///
/// Unlike monoio's `Split` marker, which lends both halves the whole stream, an implementation
/// says what each half holds: a TLS stream's halves share its session only between awaits.
pub trait Duplex: AsyncReadRent + AsyncWriteRent {
    type Read: AsyncReadRent;
    type Write: AsyncWriteRent;

    fn into_halves(self) -> (Self::Read, Self::Write);

    /// The socket when the stream is plain TCP: a second descriptor on it may read while this
    /// stream writes. `None` under TLS, where one session carries both ways.
    fn socket(&self) -> Option<RawFd> {
        None
    }
}

/// A socket's reads and writes are separate operations on one descriptor, as monoio promises
/// by marking `TcpStream` `Split`.
impl Duplex for TcpStream {
    type Read = OwnedReadHalf<TcpStream>;
    type Write = OwnedWriteHalf<TcpStream>;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }

    fn socket(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }
}

/// A stream that is plain or under TLS, whole or one of its halves. The TLS side is boxed: a
/// session and its buffers would otherwise size every plain connection too.
pub enum MaybeTls<P, T> {
    Plain(P),
    Tls(Box<T>),
}

impl<P: AsyncReadRent, T: AsyncReadRent> AsyncReadRent for MaybeTls<P, T> {
    async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Self::Plain(s) => s.read(buf).await,
            Self::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<B: IoVecBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Self::Plain(s) => s.readv(buf).await,
            Self::Tls(s) => s.readv(buf).await,
        }
    }
}

impl<P: AsyncWriteRent, T: AsyncWriteRent> AsyncWriteRent for MaybeTls<P, T> {
    async fn write<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Self::Plain(s) => s.write(buf).await,
            Self::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<B: IoVecBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Self::Plain(s) => s.writev(buf).await,
            Self::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush().await,
            Self::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.shutdown().await,
            Self::Tls(s) => s.shutdown().await,
        }
    }
}

impl<P: Duplex, T: Duplex> Duplex for MaybeTls<P, T> {
    type Read = MaybeTls<P::Read, T::Read>;
    type Write = MaybeTls<P::Write, T::Write>;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        match self {
            Self::Plain(s) => {
                let (r, w) = s.into_halves();
                (MaybeTls::Plain(r), MaybeTls::Plain(w))
            }
            Self::Tls(s) => {
                let (r, w) = s.into_halves();
                (MaybeTls::Tls(Box::new(r)), MaybeTls::Tls(Box::new(w)))
            }
        }
    }

    fn socket(&self) -> Option<RawFd> {
        match self {
            Self::Plain(s) => s.socket(),
            Self::Tls(_) => None,
        }
    }
}
