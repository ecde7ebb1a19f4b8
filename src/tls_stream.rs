//! A TLS connection as a byte stream, terminated (a client's, reading through the buffer the
//! ClientHello arrived in) or originated (to an upstream): rustls over the socket. Written here
//! rather than taken from monoio-rustls for three reasons: no second pair of zeroed 16 KiB
//! buffers per connection (both allocated at accept and held while the connection idles), what
//! rustls queued after the handshake (the TLS 1.3 session ticket) leaves in the same send as the
//! first answer, and a relay's two halves share the session soundly ([`Duplex`]).

use std::cell::RefCell;
use std::io::{self, BufRead, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Split, Splitable};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::client::ClientConnectionData;
use rustls::server::ServerConnectionData;
use rustls::{ClientConnection, ConnectionCommon, ServerConnection};

use crate::buf::{read_rent, readv_rent, ReadBuf};
use crate::duplex::Duplex;

/// One read from the socket asks for at least this much room: a whole TLS record.
const READ_ROOM: usize = 16 * 1024 + 5;

/// rustls over `tcp`: whole (a client's connection, terminated; a [`ClientStream`]), or one of
/// its halves, which then see the session through a [`Shared`].
pub struct TlsStream<Io, C> {
    tcp: Io,
    conn: C,
    /// Bytes read from the peer that rustls has not taken yet (the read side's).
    rb: ReadBuf,
    /// Records on their way out, kept between writes for its allocation (the write side's).
    out: Vec<u8>,
}

/// A connection to an upstream, originated.
pub type ClientStream = TlsStream<TcpStream, ClientConnection>;

/// The session both halves of a split stream drive. Each borrows it only between awaits, so
/// the two never hold it at once, and a borrow cannot outlive the closure given to `with`.
pub type Shared<C> = Rc<RefCell<C>>;

/// How a stream reaches its rustls session: owned when whole, shared when split.
pub trait Session {
    /// rustls's data for the server's or the client's side.
    type Side;

    fn with<R>(&mut self, f: impl FnOnce(&mut ConnectionCommon<Self::Side>) -> R) -> R;
}

impl Session for ServerConnection {
    type Side = ServerConnectionData;

    fn with<R>(&mut self, f: impl FnOnce(&mut ConnectionCommon<Self::Side>) -> R) -> R {
        f(self)
    }
}

impl Session for ClientConnection {
    type Side = ClientConnectionData;

    fn with<R>(&mut self, f: impl FnOnce(&mut ConnectionCommon<Self::Side>) -> R) -> R {
        f(self)
    }
}

impl<C: Session> Session for Shared<C> {
    type Side = C::Side;

    fn with<R>(&mut self, f: impl FnOnce(&mut ConnectionCommon<Self::Side>) -> R) -> R {
        self.borrow_mut().with(f)
    }
}

impl<Io> TlsStream<Io, ServerConnection> {
    /// A terminated connection: `rb` holds what the handshake read; bytes after the client's
    /// last handshake message are inside `conn` already.
    pub fn new(tcp: Io, conn: ServerConnection, mut rb: ReadBuf) -> Self {
        rb.clear();
        Self { tcp, conn, rb, out: Vec::new() }
    }
}

impl ClientStream {
    /// Runs the client's side of the handshake over `tcp`. A refusal the client decided (the
    /// server's certificate, say) is sent to the server as its alert before the error returns.
    pub async fn connect(tcp: TcpStream, conn: ClientConnection) -> io::Result<Self> {
        let mut stream = Self { tcp, conn, rb: ReadBuf::with_capacity(0), out: Vec::new() };
        while stream.conn.is_handshaking() {
            if stream.conn.wants_write() {
                stream.sent(Ok(0)).await?;
                continue;
            }
            match stream.read_records().await {
                Ok(false) => {}
                Ok(true) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof")),
                Err(e) => {
                    let _ = stream.sent(Ok(0)).await;
                    return Err(e);
                }
            }
        }
        stream.sent(Ok(0)).await?;
        Ok(stream)
    }
}

impl AsRawFd for ClientStream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

/// The halves share the session ([`Shared`]); the read half keeps the read buffer, the write
/// half the record buffer, and each its half of the socket (itself `Split`: `ClientTcp` says
/// why, monoio for `TcpStream`).
impl<Io, C> Duplex for TlsStream<Io, C>
where
    Io: AsyncReadRent + AsyncWriteRent + Split,
    C: Session,
{
    type Read = TlsStream<OwnedReadHalf<Io>, Shared<C>>;
    type Write = TlsStream<OwnedWriteHalf<Io>, Shared<C>>;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        let (r, w) = self.tcp.into_split();
        let conn = Rc::new(RefCell::new(self.conn));
        let read = TlsStream { tcp: r, conn: conn.clone(), rb: self.rb, out: Vec::new() };
        (read, TlsStream { tcp: w, conn, rb: ReadBuf::with_capacity(0), out: self.out })
    }
}

impl<Io: AsyncReadRent, C: Session> TlsStream<Io, C> {
    /// Copies received plaintext into `dst` (at most `len` bytes at `dst`), reading records from
    /// the socket until there is some; `Ok(0)` is the peer's close_notify.
    async fn read_into(&mut self, dst: *mut u8, len: usize) -> io::Result<usize> {
        loop {
            let plain = self.conn.with(|conn| {
                let mut reader = conn.reader();
                match reader.fill_buf() {
                    Ok(plain) => {
                        let n = plain.len().min(len);
                        // SAFETY: `dst` is valid for `len` bytes of writes (the caller's buffer),
                        // and rustls's buffer cannot overlap it.
                        unsafe { std::ptr::copy_nonoverlapping(plain.as_ptr(), dst, n) };
                        reader.consume(n);
                        Some(Ok(n))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                    Err(e) => Some(Err(e)),
                }
            });
            if let Some(plain) = plain {
                return plain;
            }
            self.read_records().await?;
        }
    }

    /// Hands rustls what the socket sent (reading more when nothing is left) and has it
    /// processed; `true` when the socket was at its end.
    async fn read_records(&mut self) -> io::Result<bool> {
        // At the peer's end of stream `data` is empty, and that read tells rustls so: it then
        // tells a close without close_notify (UnexpectedEof) from a clean one.
        let eof = self.rb.is_empty() && self.rb.fill(&mut self.tcp, READ_ROOM).await? == 0;
        let mut data = self.rb.data();
        let before = data.len();
        self.conn.with(|conn| conn.read_tls(&mut data))?;
        let taken = before - data.len();
        self.rb.consume(taken);
        self.conn
            .with(|conn| conn.process_new_packets().map(drop))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(eof)
    }
}

impl<Io: AsyncWriteRent, C: Session> TlsStream<Io, C> {
    /// `queued` (plaintext handed to rustls), once the records rustls made of it are sent: in
    /// one write when they fit.
    async fn sent(&mut self, queued: io::Result<usize>) -> io::Result<usize> {
        let n = queued?;
        while self.conn.with(|conn| conn.wants_write()) {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            self.conn.with(|conn| conn.write_tls(&mut out))?;
            let (res, out) = self.tcp.write_all(out).await;
            self.out = out;
            res?;
        }
        Ok(n)
    }
}

impl<Io: AsyncReadRent, C: Session> AsyncReadRent for TlsStream<Io, C> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        read_rent(buf, async |ptr, len| self.read_into(ptr, len).await).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        readv_rent(buf, async |ptr, len| self.read_into(ptr, len).await).await
    }
}

impl<Io: AsyncWriteRent, C: Session> AsyncWriteRent for TlsStream<Io, C> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: monoio's contract: `read_ptr` points at `bytes_init` initialised bytes.
        let bytes = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let queued = self.conn.with(|conn| conn.writer().write(bytes));
        (self.sent(queued).await, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: monoio's contract: `read_iovec_ptr` points at `read_iovec_len` iovecs, each
        // over initialised bytes that live as long as `buf`.
        let iovecs = unsafe { std::slice::from_raw_parts(buf.read_iovec_ptr(), buf.read_iovec_len()) };
        let (mut total, mut error) = (0, None);
        for v in iovecs {
            // SAFETY: as above.
            let bytes = unsafe { std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len) };
            match self.conn.with(|conn| conn.writer().write(bytes)) {
                Ok(n) if n == bytes.len() => total += n,
                Ok(n) => {
                    total += n;
                    break;
                }
                Err(e) => {
                    // After some bytes were taken, the error is the next write's to report.
                    error = (total == 0).then_some(e);
                    break;
                }
            }
        }
        let queued = error.map_or(Ok(total), Err);
        (self.sent(queued).await, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.sent(Ok(0)).await.map(drop)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.with(|conn| conn.send_close_notify());
        self.sent(Ok(0)).await?;
        self.tcp.shutdown().await
    }
}
