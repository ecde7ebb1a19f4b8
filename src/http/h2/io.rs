//! tokio's poll-based `AsyncRead`/`AsyncWrite`, which h2 speaks, over one of our rent-based
//! streams (a client socket, or the TLS stream over it), on either monoio driver.
//!
//! Why not monoio's `poll-io` (`TcpStream::into_poll_io`): it covers a bare socket only, and a
//! TLS connection here is our own rustls stream (`tls_stream.rs`), so TLS would need a second
//! adapter anyway; nor does it let the h2c sniff hand over the bytes the HTTP/1.1 session read
//! first. Why not `monoio-compat`'s `StreamWrapper`: it lends one stream to a read and a write
//! in flight at once through a raw pointer, which our TLS stream (one rustls session) cannot
//! soundly take. Here the stream is taken apart into its [`Duplex`] halves, each owned by its
//! one operation in flight, so a read and a write may wait at once without aliasing anything.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::flood::FloodGuard;
use crate::duplex::Duplex;

/// Room for one read: a TLS record's worth, h2's largest default frame and its header.
const READ_ROOM: usize = 16 * 1024 + 9;

/// An operation in flight, owning its half and its buffer (boxed: h2 polls, it cannot hold
/// our futures; one allocation per socket operation, on the HTTP/2 path only).
type Op<H, T> = Pin<Box<dyn Future<Output = (H, T)>>>;

enum Side<H, T> {
    Idle(H),
    Busy(Op<H, T>),
    /// Only between taking the half out and putting it back, or after a shutdown.
    Gone,
}

/// One stream as h2's transport.
pub(super) struct PollIo<S: Duplex> {
    read: Side<S::Read, (io::Result<usize>, Vec<u8>)>,
    /// What the last read brought and h2 has not taken yet: `rbuf[pos..]`.
    rbuf: Vec<u8>,
    pos: usize,
    write: Side<S::Write, (io::Result<()>, Vec<u8>)>,
    /// The write buffer, back between writes for its allocation.
    wbuf: Vec<u8>,
    shut: bool,
    /// Envoy's frame-flood bounds over the frames passing both ways.
    guard: FloodGuard,
}

// The halves are moved into boxed operations, never pinned in place.
impl<S: Duplex> Unpin for PollIo<S> {}

impl<S: Duplex> PollIo<S>
where
    S::Read: 'static,
    S::Write: 'static,
{
    /// `first`: bytes already read from `stream` (the h2c sniff's), handed to h2 first.
    pub(super) fn new(stream: S, first: Vec<u8>) -> Self {
        let (r, w) = stream.into_halves();
        let mut guard = FloodGuard::new();
        guard.inbound(&first);
        PollIo { read: Side::Idle(r), rbuf: first, pos: 0, write: Side::Idle(w), wbuf: Vec::new(), shut: false, guard }
    }

    /// Waits for the write in flight, if any, to end; its error, if it failed.
    fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Side::Busy(op) = &mut self.write else {
            return Poll::Ready(Ok(()));
        };
        let (half, (res, buf)) = ready!(op.as_mut().poll(cx));
        self.write = Side::Idle(half);
        self.wbuf = buf;
        Poll::Ready(res)
    }
}

impl<S: Duplex> AsyncRead for PollIo<S>
where
    S::Read: 'static,
    S::Write: 'static,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // A flood ends the connection: h2 sees the transport fail and closes it, as Envoy
            // closes a connection past its flood bounds.
            if let Some(flood) = this.guard.tripped() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, flood.what())));
            }
            if this.pos < this.rbuf.len() {
                let n = out.remaining().min(this.rbuf.len() - this.pos);
                out.put_slice(&this.rbuf[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            match std::mem::replace(&mut this.read, Side::Gone) {
                Side::Idle(mut half) => {
                    let mut buf = std::mem::take(&mut this.rbuf);
                    buf.clear();
                    buf.reserve(READ_ROOM);
                    this.pos = 0;
                    this.read = Side::Busy(Box::pin(async move {
                        let (res, buf) = half.read(buf).await;
                        (half, (res, buf))
                    }));
                }
                Side::Busy(mut op) => match op.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.read = Side::Busy(op);
                        return Poll::Pending;
                    }
                    Poll::Ready((half, (res, buf))) => {
                        this.read = Side::Idle(half);
                        this.rbuf = buf;
                        this.pos = 0;
                        match res {
                            // End of stream: nothing put in `out`.
                            Ok(0) => return Poll::Ready(Ok(())),
                            Ok(_) => this.guard.inbound(&this.rbuf),
                            Err(e) => return Poll::Ready(Err(e)),
                        }
                    }
                },
                Side::Gone => return Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
            }
        }
    }
}

impl<S: Duplex> AsyncWrite for PollIo<S>
where
    S::Read: 'static,
    S::Write: 'static,
{
    /// Takes `data` at once into the write buffer and starts writing it; the next write (or a
    /// flush) waits for that one to end, so at most one buffer is ever in flight.
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_written(cx))?;
        let Side::Idle(mut half) = std::mem::replace(&mut this.write, Side::Gone) else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let mut buf = std::mem::take(&mut this.wbuf);
        buf.clear();
        buf.extend_from_slice(data);
        this.guard.outbound(data);
        this.write = Side::Busy(Box::pin(async move {
            let (res, buf) = half.write_all(buf).await;
            (half, (res.map(drop), buf))
        }));
        // Submitted now, and the task woken when it ends.
        match this.poll_written(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(data.len())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_written(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.poll_written(cx))?;
            if this.shut {
                return Poll::Ready(Ok(()));
            }
            let Side::Idle(mut half) = std::mem::replace(&mut this.write, Side::Gone) else {
                return Poll::Ready(Ok(()));
            };
            this.shut = true;
            this.write = Side::Busy(Box::pin(async move {
                let res = half.shutdown().await;
                (half, (res, Vec::new()))
            }));
        }
    }
}
