//! A TLS connection as a byte stream, terminated (a client's, reading through the buffer the
//! ClientHello arrived in) or originated (to an upstream): rustls over the socket. Written here
//! rather than taken from monoio-rustls for three reasons: no second pair of zeroed 16 KiB
//! buffers per connection (both allocated at accept and held while the connection idles), what
//! rustls queued after the handshake (the TLS 1.3 session ticket) leaves in the same send as the
//! first answer, and a relay's two halves share the session soundly ([`Duplex`]), as do the
//! two handles an exchange lends a connection for a moment ([`TlsStream::lend`]).

use std::borrow::BorrowMut;
use std::cell::RefCell;
use std::io::{self, BufRead, Write};
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr::NonNull;
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
/// its halves, which then see the session through a [`Shared`] (or a [`Lent`] one, their
/// buffers borrowed from the whole stream).
pub struct TlsStream<Io, C, B = ReadBuf, O = Vec<u8>> {
    tcp: Io,
    conn: C,
    /// Bytes read from the peer that rustls has not taken yet (the read side's).
    rb: B,
    /// Records on their way out, kept between writes for its allocation (the write side's).
    out: O,
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
        RefCell::borrow_mut(self).with(f)
    }
}

/// A session lent for a moment to two handles that drive it at once on this core (a request
/// body going up while the response comes down), borrowed from the whole stream for `'a`.
pub struct Lent<'a, C> {
    conn: NonNull<C>,
    _borrow: PhantomData<&'a mut C>,
}

impl<C: Session> Session for Lent<'_, C> {
    type Side = C::Side;

    fn with<R>(&mut self, f: impl FnOnce(&mut ConnectionCommon<Self::Side>) -> R) -> R {
        // SAFETY: `conn` comes from the `&'a mut` that `TlsStream::lend` took, so nothing else
        // reaches the session while a `Lent` lives; its two copies are on one thread (a
        // `NonNull` is not `Send`), and each reaches it only inside `f`, a closure of this
        // module that touches rustls alone and never awaits, so the two never hold it at once.
        unsafe { self.conn.as_mut() }.with(f)
    }
}

/// The read handle [`TlsStream::lend`] gives: a second descriptor on the socket, the stream's
/// read buffer.
pub type LentRead<'a, C> = TlsStream<TcpStream, Lent<'a, C>, &'a mut ReadBuf, Vec<u8>>;

/// The write handle [`TlsStream::lend`] gives: the stream's socket and record buffer.
pub type LentWrite<'a, C> = TlsStream<&'a mut TcpStream, Lent<'a, C>, ReadBuf, &'a mut Vec<u8>>;

impl<C: Session> TlsStream<TcpStream, C> {
    /// Two handles on this stream that may each wait while the other works: one reads (from a
    /// second descriptor on the socket, as a plain connection's watcher does), the other writes,
    /// and both drive the one session. What the reader read and rustls did not take yet stays
    /// in this stream's buffer, so the stream carries on whole once both are gone.
    pub fn lend(&mut self) -> io::Result<(LentRead<'_, C>, LentWrite<'_, C>)> {
        // SAFETY: the descriptor is this stream's socket, open for this borrow; it is only
        // duplicated.
        let dup = unsafe { BorrowedFd::borrow_raw(self.tcp.as_raw_fd()) }.try_clone_to_owned()?;
        let reader = TcpStream::from_std(std::net::TcpStream::from(dup))?;
        let conn = NonNull::from(&mut self.conn);
        let lent = || Lent { conn, _borrow: PhantomData };
        let read = TlsStream { tcp: reader, conn: lent(), rb: &mut self.rb, out: Vec::new() };
        let write = TlsStream { tcp: &mut self.tcp, conn: lent(), rb: ReadBuf::with_capacity(0), out: &mut self.out };
        Ok((read, write))
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

impl<Io: AsyncReadRent, C: Session, B: BorrowMut<ReadBuf>, O> TlsStream<Io, C, B, O> {
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
        let rb = self.rb.borrow_mut();
        let eof = rb.is_empty() && rb.fill(&mut self.tcp, READ_ROOM).await? == 0;
        self.take_records()?;
        Ok(eof)
    }

    /// Hands rustls the records in the read buffer and has them processed.
    fn take_records(&mut self) -> io::Result<()> {
        let rb = self.rb.borrow_mut();
        let mut data = rb.data();
        let before = data.len();
        self.conn.with(|conn| conn.read_tls(&mut data))?;
        let taken = before - data.len();
        rb.consume(taken);
        self.conn
            .with(|conn| conn.process_new_packets().map(drop))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl<C: Session> LentRead<'_, C> {
    /// Waits until the peer sent data (a TLS 1.3 session ticket alone is no answer) or ended
    /// the session; the data then waits in the session for the whole stream's reads. The
    /// socket is read only once readable and without an await after, so dropping the wait (the
    /// body it raced went up first) loses nothing.
    pub async fn answered(&mut self) -> io::Result<()> {
        loop {
            let waiting = self
                .conn
                .with(|conn| matches!(conn.reader().fill_buf(), Err(e) if e.kind() == io::ErrorKind::WouldBlock));
            if !waiting {
                return Ok(());
            }
            self.tcp.readable(false).await?;
            match self.rb.fill_now(self.tcp.as_raw_fd(), READ_ROOM) {
                Ok(0) => return Ok(()),
                // A session error is the stream's reads' to report.
                Ok(_) => {
                    if self.take_records().is_err() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl<Io: AsyncWriteRent, C: Session, B, O: BorrowMut<Vec<u8>>> TlsStream<Io, C, B, O> {
    /// `queued` (plaintext handed to rustls), once the records rustls made of it are sent: in
    /// one write when they fit.
    async fn sent(&mut self, queued: io::Result<usize>) -> io::Result<usize> {
        let n = queued?;
        while self.conn.with(|conn| conn.wants_write()) {
            let mut out = std::mem::take(self.out.borrow_mut());
            out.clear();
            self.conn.with(|conn| conn.write_tls(&mut out))?;
            let (res, out) = self.tcp.write_all(out).await;
            *self.out.borrow_mut() = out;
            res?;
        }
        Ok(n)
    }
}

impl<Io: AsyncReadRent, C: Session, B: BorrowMut<ReadBuf>, O> AsyncReadRent for TlsStream<Io, C, B, O> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        read_rent(buf, async |ptr, len| self.read_into(ptr, len).await).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        readv_rent(buf, async |ptr, len| self.read_into(ptr, len).await).await
    }
}

impl<Io: AsyncWriteRent, C: Session, B, O: BorrowMut<Vec<u8>>> AsyncWriteRent for TlsStream<Io, C, B, O> {
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
