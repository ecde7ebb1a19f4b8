//! A read window over an owned buffer, in the shape monoio's owned-buffer I/O wants, and
//! monoio's owned-buffer reads for readers that fill raw memory.

use std::io;

use monoio::buf::{IoBufMut, IoVecBufMut, SliceMut};
use monoio::io::AsyncReadRent;
use monoio::BufResult;

/// `AsyncReadRent::read` for a reader that fills raw memory (`fill(ptr, len)` writes at most
/// `len` bytes at `ptr` and returns how many), as the TLS stream and an HTTP/2 upstream's
/// response are: the one place where such a read marks the bytes initialised.
pub async fn read_rent<T: IoBufMut>(
    mut buf: T,
    fill: impl AsyncFnOnce(*mut u8, usize) -> io::Result<usize>,
) -> BufResult<usize, T> {
    let res = fill(buf.write_ptr(), buf.bytes_total()).await;
    if let Ok(n) = res {
        // SAFETY: `fill` wrote `n` bytes from the start of the buffer.
        unsafe { buf.set_init(n) };
    }
    (res, buf)
}

/// `AsyncReadRent::readv` for such a reader: the first non-empty slice only (a short read is a
/// read).
pub async fn readv_rent<T: IoVecBufMut>(
    mut buf: T,
    fill: impl AsyncFnOnce(*mut u8, usize) -> io::Result<usize>,
) -> BufResult<usize, T> {
    // SAFETY: monoio's contract: `write_iovec_ptr` points at `write_iovec_len` iovecs.
    let iovecs = unsafe { std::slice::from_raw_parts(buf.write_iovec_ptr(), buf.write_iovec_len()) };
    let Some(first) = iovecs.iter().find(|v| v.iov_len > 0).copied() else {
        return (Ok(0), buf);
    };
    let res = fill(first.iov_base.cast(), first.iov_len).await;
    if let Ok(n) = res {
        // SAFETY: as in `read_rent`, counted across the iovecs, the empty ones before `first`
        // adding nothing.
        unsafe { buf.set_init(n) };
    }
    (res, buf)
}

/// Bytes read but not yet consumed are `buf[start..]`; reads append into spare capacity, so a
/// connection reuses one allocation for its whole life.
pub struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    /// Bytes handed on by `write_to` since the last `take_written`: a body's size, for the
    /// access log.
    written: u64,
}

impl ReadBuf {
    pub fn with_capacity(cap: usize) -> Self {
        Self { buf: Vec::with_capacity(cap), start: 0, written: 0 }
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads once more from `stream`, appending; `Ok(0)` is EOF. Consumed bytes are dropped
    /// first and room for at least `min_room` bytes is made.
    pub async fn fill<S: AsyncReadRent>(&mut self, stream: &mut S, min_room: usize) -> io::Result<usize> {
        let spare = self.spare(min_room);
        let (res, spare) = stream.read(spare).await;
        self.buf = spare.into_inner();
        res
    }

    /// Appends what socket `fd` holds now, without waiting (`WouldBlock` when nothing is
    /// there); `Ok(0)` is EOF. Nothing is in flight when it returns: a wait for readiness that
    /// precedes it may be dropped at any point without losing a byte.
    pub fn fill_now(&mut self, fd: std::os::fd::RawFd, min_room: usize) -> io::Result<usize> {
        self.make_room(min_room);
        let spare = self.buf.spare_capacity_mut();
        // SAFETY: `spare` is valid for writes of its length; MSG_DONTWAIT never blocks, and a
        // closed or foreign `fd` only makes recv fail.
        let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), spare.len(), libc::MSG_DONTWAIT) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        // SAFETY: recv initialised the first `n` spare bytes.
        unsafe { self.buf.set_len(self.buf.len() + n) };
        Ok(n)
    }

    /// Drops consumed bytes and makes room for at least `min_room` more.
    fn make_room(&mut self, min_room: usize) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < min_room {
            self.buf.reserve(min_room);
        }
    }

    /// The buffer's spare capacity (at least `min_room` bytes, consumed bytes dropped first)
    /// as the target of one read. monoio reads into a whole `Vec` from index 0, so the read
    /// must get a slice starting at `len` to append.
    fn spare(&mut self, min_room: usize) -> SliceMut<Vec<u8>> {
        self.make_room(min_room);
        let buf = std::mem::take(&mut self.buf);
        let (len, cap) = (buf.len(), buf.capacity());
        buf.slice_mut(len..cap)
    }
}

impl ReadBuf {
    /// Writes the first `n` unconsumed bytes to `dst` and consumes them; bytes after them (a
    /// pipelined request, say) stay.
    pub async fn write_to<W: monoio::io::AsyncWriteRent>(&mut self, dst: &mut W, n: usize) -> io::Result<()> {
        use monoio::buf::IoBuf;
        use monoio::io::AsyncWriteRentExt;
        let buf = std::mem::take(&mut self.buf);
        let (res, slice) = dst.write_all(buf.slice(self.start..self.start + n)).await;
        self.buf = slice.into_inner();
        res?;
        self.consume(n);
        self.written += n as u64;
        Ok(())
    }

    /// Consumes the first `n` unconsumed bytes, which the caller handed on itself (copied into
    /// an HTTP/2 DATA frame, say), counting them as [`ReadBuf::write_to`] does.
    pub fn consume_written(&mut self, n: usize) {
        self.consume(n);
        self.written += n as u64;
    }

    /// Counts `n` bytes of the body handed on around the buffer (HTTP/2 DATA passed as it came).
    pub fn count_written(&mut self, n: usize) {
        self.written += n as u64;
    }

    /// Bytes written on with [`ReadBuf::write_to`], [`ReadBuf::consume_written`] or counted with
    /// [`ReadBuf::count_written`] since the last call.
    pub fn take_written(&mut self) -> u64 {
        std::mem::take(&mut self.written)
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use monoio::io::AsyncWriteRentExt;
    use monoio::net::{TcpListener, TcpStream};

    use super::ReadBuf;

    /// Reads append after unconsumed bytes (monoio would otherwise read into index 0).
    #[monoio::test_all(timer_enabled = true)]
    async fn fills_append_and_consume_keeps_the_rest() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut tx = TcpStream::connect(addr).await.unwrap();
        let (mut rx, _) = listener.accept().await.unwrap();
        let mut rb = ReadBuf::with_capacity(4);
        for part in [&b"GET /"[..], b"abc HTTP/1.1\r\n"] {
            let (res, _) = tx.write_all(part).await;
            res.unwrap();
            let before = rb.len();
            while rb.len() < before + part.len() {
                assert!(rb.fill(&mut rx, 4).await.unwrap() > 0);
            }
        }
        assert_eq!(rb.data(), b"GET /abc HTTP/1.1\r\n");
        rb.consume(4);
        let (res, _) = tx.write_all(&b"x"[..]).await;
        res.unwrap();
        rb.fill(&mut rx, 1).await.unwrap();
        assert_eq!(rb.data(), b"/abc HTTP/1.1\r\nx");
    }
}
