//! A stream a relay drives both ways at once (a WebSocket tunnel, a TCP route's copy), taken
//! apart into a read half and a write half that may each wait while the other works.

use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

/// A byte stream whose two directions can be used concurrently once split.
///
/// Unlike monoio's `Split` marker, which lends both halves the whole stream, an implementation
/// says what each half holds: a TLS stream's halves share its session only between awaits.
pub trait Duplex: AsyncReadRent + AsyncWriteRent {
    type Read: AsyncReadRent;
    type Write: AsyncWriteRent;

    fn into_halves(self) -> (Self::Read, Self::Write);
}

/// A socket's reads and writes are separate operations on one descriptor, as monoio promises
/// by marking `TcpStream` `Split`.
impl Duplex for TcpStream {
    type Read = OwnedReadHalf<TcpStream>;
    type Write = OwnedWriteHalf<TcpStream>;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}
