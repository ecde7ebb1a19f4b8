//! The accepted socket as the protocol paths read it, directly or under TLS: a TCP stream
//! whose reads while the connection is idle between requests end when the worker drains.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, CancelHandle, CancelableAsyncReadRent, OwnedReadHalf, OwnedWriteHalf, Split,
    Splitable,
};
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::duplex::Duplex;

pub struct ClientTcp {
    stream: TcpStream,
    /// Set by the HTTP session while it waits for the next request; TLS reads through this
    /// type too, so the flag (not the read call) is how a wait is marked cancelable.
    idle: Rc<Cell<bool>>,
    /// Fires when the worker starts draining.
    drain: CancelHandle,
}

// SAFETY: each half lends the whole `ClientTcp` to its pending call, so a read and a write may
// hold it at once; they share nothing that either changes: a read uses `stream` (one receive
// on its descriptor), reads `idle` and clones `drain`'s handle; a write uses `stream` only (one
// send). That a receive and a send may be pending on one `TcpStream` at once is monoio's
// promise, made by its own `Split` for `TcpStream`. All of it lives on one thread (`Rc`, `Cell`).
unsafe impl Split for ClientTcp {}

impl Duplex for ClientTcp {
    type Read = OwnedReadHalf<ClientTcp>;
    type Write = OwnedWriteHalf<ClientTcp>;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }

    fn socket(&self) -> Option<RawFd> {
        Some(self.stream.as_raw_fd())
    }
}

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
