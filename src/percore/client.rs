//! The accepted socket as the protocol paths read it, directly or under TLS: a TCP stream
//! whose reads while the connection is idle between requests end when the worker drains.

use std::cell::Cell;
use std::io;
use std::rc::Rc;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, CancelHandle, CancelableAsyncReadRent, Split};
use monoio::net::TcpStream;
use monoio::BufResult;

pub struct ClientTcp {
    stream: TcpStream,
    /// Set by the HTTP session while it waits for the next request; TLS reads through this
    /// type too, so the flag (not the read call) is how a wait is marked cancelable.
    idle: Rc<Cell<bool>>,
    /// Fires when the worker starts draining.
    drain: CancelHandle,
}

// SAFETY: a `TcpStream` may be read and written from two halves at once; the flag is only
// touched on this thread.
unsafe impl Split for ClientTcp {}

impl ClientTcp {
    pub fn new(stream: TcpStream, drain: CancelHandle) -> Self {
        Self { stream, idle: Rc::default(), drain }
    }

    /// The flag to raise around a wait for the next request.
    pub fn idle_flag(&self) -> Rc<Cell<bool>> {
        self.idle.clone()
    }

    pub fn into_inner(self) -> TcpStream {
        self.stream
    }
}

impl AsyncReadRent for ClientTcp {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.idle.get() {
            self.stream.cancelable_read(buf, self.drain.clone()).await
        } else {
            self.stream.read(buf).await
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.idle.get() {
            self.stream.cancelable_readv(buf, self.drain.clone()).await
        } else {
            self.stream.readv(buf).await
        }
    }
}

impl AsyncWriteRent for ClientTcp {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.stream.write(buf).await
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.stream.writev(buf).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.stream.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }
}
