//! A terminated client connection as a byte stream: rustls over the client's socket, reading
//! through the buffer the ClientHello arrived in. Written here rather than taken from
//! monoio-rustls for two reasons: no second pair of zeroed 16 KiB buffers per connection (both
//! allocated at accept and held while the connection idles), and what rustls queued after the
//! handshake (the TLS 1.3 session ticket) leaves in the same send as the first answer.

use std::io::{self, BufRead, Write};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split};
use monoio::BufResult;
use rustls::ServerConnection;

use crate::buf::ReadBuf;
use crate::percore::ClientTcp;

/// One read from the socket asks for at least this much room: a whole TLS record.
const READ_ROOM: usize = 16 * 1024 + 5;

pub struct ServerStream {
    tcp: ClientTcp,
    conn: ServerConnection,
    /// Bytes read from the client that rustls has not taken yet.
    rb: ReadBuf,
    /// Records on their way out, kept between writes for its allocation.
    out: Vec<u8>,
}

// SAFETY: the read half touches `rb` and the write half `out`; both use `conn` only between
// awaits, never across one, and `tcp` is itself `Split`.
unsafe impl Split for ServerStream {}

impl ServerStream {
    /// `rb` holds what the handshake read; bytes after the client's last handshake message are
    /// inside `conn` already.
    pub fn new(tcp: ClientTcp, conn: ServerConnection, mut rb: ReadBuf) -> Self {
        rb.clear();
        Self { tcp, conn, rb, out: Vec::new() }
    }

    /// Copies received plaintext into `dst` (at most `len` bytes at `dst`), reading records from
    /// the socket until there is some; `Ok(0)` is the client's close_notify.
    async fn read_into(&mut self, dst: *mut u8, len: usize) -> io::Result<usize> {
        loop {
            let mut reader = self.conn.reader();
            match reader.fill_buf() {
                Ok(plain) => {
                    let n = plain.len().min(len);
                    // SAFETY: `dst` is valid for `len` bytes of writes (the caller's buffer),
                    // and rustls's buffer cannot overlap it.
                    unsafe { std::ptr::copy_nonoverlapping(plain.as_ptr(), dst, n) };
                    reader.consume(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // At the client's end of stream `data` is empty, and that read tells rustls so: it
            // then tells a close without close_notify (UnexpectedEof) from a clean one.
            if self.rb.is_empty() {
                self.rb.fill(&mut self.tcp, READ_ROOM).await?;
            }
            let mut data = self.rb.data();
            let before = data.len();
            self.conn.read_tls(&mut data)?;
            let taken = before - data.len();
            self.rb.consume(taken);
            self.conn.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }

    /// `queued` (plaintext handed to rustls), once the records rustls made of it are sent: in
    /// one write when they fit.
    async fn sent(&mut self, queued: io::Result<usize>) -> io::Result<usize> {
        let n = queued?;
        while self.conn.wants_write() {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            self.conn.write_tls(&mut out)?;
            let (res, out) = self.tcp.write_all(out).await;
            self.out = out;
            res?;
        }
        Ok(n)
    }
}

impl AsyncReadRent for ServerStream {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let res = self.read_into(buf.write_ptr(), buf.bytes_total()).await;
        if let Ok(n) = res {
            // SAFETY: `read_into` wrote `n` bytes from the start of the buffer.
            unsafe { buf.set_init(n) };
        }
        (res, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // The first non-empty slice only: a short read is a read.
        // SAFETY: monoio's contract: `write_iovec_ptr` points at `write_iovec_len` iovecs.
        let iovecs = unsafe { std::slice::from_raw_parts(buf.write_iovec_ptr(), buf.write_iovec_len()) };
        let Some(first) = iovecs.iter().find(|v| v.iov_len > 0).copied() else {
            return (Ok(0), buf);
        };
        let res = self.read_into(first.iov_base.cast(), first.iov_len).await;
        if let Ok(n) = res {
            // SAFETY: as in `read`, counted across the iovecs, the empty ones before `first`
            // adding nothing.
            unsafe { buf.set_init(n) };
        }
        (res, buf)
    }
}

impl AsyncWriteRent for ServerStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: monoio's contract: `read_ptr` points at `bytes_init` initialised bytes.
        let bytes = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let queued = self.conn.writer().write(bytes);
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
            match self.conn.writer().write(bytes) {
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
        self.conn.send_close_notify();
        self.sent(Ok(0)).await?;
        self.tcp.shutdown().await
    }
}
