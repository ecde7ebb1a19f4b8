//! The HTTP/1.1 client's half of an exchange: its request body read through the session's
//! read window and passed up verbatim ([`H1Body`]; on a plain socket lent to the exchange, read
//! through a second handle on it while the response is written), its response heads and body
//! written back in HTTP/1.1.

use std::cell::RefCell;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use http::HeaderMap;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::{closing, CLIENT_BUF};
use crate::buf::ReadBuf;
use crate::http::body::{self, buffered_body_len, inline_body, BodyError, Watch, INLINE_BODY};
use crate::http::codec::{self, BodyFraming, ChunkedDecoder, ResponseEdits, ResponseHead};
use crate::http::dechunk;
use crate::http::exchange::{Client, Replay, RequestBody, ResponseSource};
use crate::http::grpc;
use crate::http::head::Http1Request;
use crate::http::peer::Peer;
use crate::percore::WorkerCtx;

/// The request's side of an HTTP/1.1 exchange: its body, from the session's read window on.
pub(super) struct H1Body<'a> {
    rb: &'a mut ReadBuf,
    framing: BodyFraming,
    /// Where the body stands, across tries: the bytes of a length still to come, a chunked
    /// body's decoder, whether it ended.
    left: u64,
    chunks: ChunkedDecoder,
    done: bool,
    /// The client's socket when it is plain TCP (under TLS one session carries both ways).
    socket: Option<RawFd>,
    /// A gRPC request's body as it passes.
    grpc: Option<Watch>,
}

impl<'a> H1Body<'a> {
    pub(super) fn new(rb: &'a mut ReadBuf, framing: BodyFraming, socket: Option<RawFd>, grpc: bool) -> Self {
        let (left, done) = match framing {
            BodyFraming::ContentLength(n) => (n, n == 0),
            BodyFraming::Chunked => (0, false),
            BodyFraming::None | BodyFraming::UntilClose => (0, true),
        };
        let grpc = grpc.then(|| Watch::new(framing));
        H1Body { rb, framing, left, chunks: ChunkedDecoder::new(), done, socket, grpc }
    }

    /// Streams the rest of the body from `src` (what was read already sits in the read window)
    /// to `upstream` verbatim, each piece kept in `replay` before it is written. A piece kept
    /// leaves the read window at once and goes up from the copy: a try cut short mid-write has
    /// it in the copy alone, which the next try sends first.
    async fn copy<R: AsyncReadRent, W: AsyncWriteRent>(
        &mut self,
        src: &mut R,
        upstream: &mut W,
        replay: &mut Replay<'_>,
    ) -> Result<(), BodyError> {
        while !self.done {
            if self.rb.is_empty() {
                body::refill(src, self.rb).await?;
            }
            let (n, done) = match self.framing {
                BodyFraming::Chunked => {
                    let progress = self.chunks.feed(self.rb.data()).map_err(BodyError::Framing)?;
                    (progress.consumed, progress.done)
                }
                _ => {
                    let n = (self.rb.len() as u64).min(self.left);
                    self.left -= n;
                    (n as usize, self.left == 0)
                }
            };
            self.done = done;
            let piece = &self.rb.data()[..n];
            if let Some(w) = &mut self.grpc {
                w.feed(piece);
            }
            if replay.keep(piece) {
                self.rb.consume_written(n);
                replay.send_last(upstream, n).await.map_err(BodyError::Sink)?;
            } else {
                self.rb.write_to(upstream, n).await.map_err(BodyError::Sink)?;
            }
        }
        Ok(())
    }
}

/// The body lent to the exchange, read through a second descriptor of the client's socket while
/// the response is written through the first (as the upstream side reads an answer while it
/// writes a body); made only once a body streams, never for one sent whole with the head. Only
/// the upload borrows the body while it runs.
impl RequestBody for &RefCell<H1Body<'_>> {
    #[allow(clippy::await_holding_refcell_ref)]
    async fn send<W: AsyncWriteRent>(self, upstream: &mut W, replay: &mut Replay<'_>) -> Result<(), BodyError> {
        let mut body = self.borrow_mut();
        let fd = body.socket.ok_or_else(|| BodyError::Source(io::ErrorKind::Unsupported.into()))?;
        // SAFETY: the session's stream owns the descriptor and outlives this exchange; the
        // borrow only lasts for the duplication.
        let dup = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned().map_err(BodyError::Source)?;
        let mut reader = TcpStream::from_std(std::net::TcpStream::from(dup)).map_err(BodyError::Source)?;
        body.copy(&mut reader, upstream, replay).await
    }
}

pub(super) struct Http1Client<'a, S> {
    stream: &'a mut S,
    body: &'a RefCell<H1Body<'a>>,
    request: Http1Request,
    /// Whether the connection is closing, asked as the response head is written.
    ctx: &'a WorkerCtx,
    peer: &'a Peer,
    /// What writing the response head decided: close after it, and de-chunk its body.
    written: codec::ResponseWritten,
    /// A gRPC response's body as it passes, once its framing is known; `None` for any other
    /// request.
    grpc: Option<Option<Watch>>,
}

impl<'a, S> Http1Client<'a, S> {
    pub(super) fn new(
        stream: &'a mut S,
        body: &'a RefCell<H1Body<'a>>,
        request: Http1Request,
        ctx: &'a WorkerCtx,
        peer: &'a Peer,
        grpc: bool,
    ) -> Self {
        let written = codec::ResponseWritten { dechunk: false, close: false };
        Http1Client { stream, body, request, ctx, peer, written, grpc: grpc.then_some(None) }
    }

    /// What a gRPC request's bodies showed.
    pub(super) fn grpc_seen(&self) -> grpc::Seen {
        let (Some(request), Some(response)) = (&self.body.borrow().grpc, &self.grpc) else {
            return grpc::Seen::default();
        };
        grpc::Seen {
            messages: [request.messages(), response.as_ref().map_or(0, Watch::messages)],
            trailer_status: response.as_ref().and_then(Watch::trailer_status),
        }
    }

    /// The response said `connection: close`: the connection ends after it.
    pub(super) fn closes(&self) -> bool {
        self.written.close
    }
}

/// The watch of a gRPC response body framed as `framing` as it reaches the client; `dechunk`:
/// an HTTP/1.0 client gets a chunked body's data alone.
fn response_watch(grpc: &mut Option<Option<Watch>>, framing: BodyFraming, dechunk: bool) -> Option<&mut Watch> {
    let framing = if dechunk { BodyFraming::None } else { framing };
    grpc.as_mut().map(|response| response.get_or_insert_with(|| Watch::new(framing)))
}

/// Shows `bytes` to `watch`, if there is one.
fn watched(mut watch: Option<&mut Watch>) -> impl FnMut(&[u8]) + '_ {
    move |bytes| {
        if let Some(w) = &mut watch {
            w.feed(bytes);
        }
    }
}

impl<'a, S: AsyncReadRent + AsyncWriteRent> Client for Http1Client<'a, S> {
    const HTTP2: bool = false;

    type Body = &'a RefCell<H1Body<'a>>;

    /// On a plain socket; under TLS one session carries the body up and the response down.
    fn body(&self) -> Option<Self::Body> {
        self.body.borrow().socket.map(|_| self.body)
    }

    /// Not when the client waits for `100 Continue`: it sends nothing before the upstream asks.
    /// A chunked body (a client that streams) only when it cannot be lent: one that waits for
    /// an answer before it sends on must get one. A small body of known length
    /// comes unasked: it is read whole, to go up with the head.
    #[allow(clippy::await_holding_refcell_ref)] // Before the exchange lends the body out.
    async fn hold_body(&mut self) -> io::Result<()> {
        let mut body = self.body.borrow_mut();
        let framing = body.framing;
        let small = match framing {
            BodyFraming::ContentLength(n) => n <= INLINE_BODY as u64,
            BodyFraming::Chunked => body.socket.is_none(),
            BodyFraming::None | BodyFraming::UntilClose => false,
        };
        if !small || self.request.expect_continue {
            return Ok(());
        }
        while buffered_body_len(body.rb.data(), framing, INLINE_BODY).is_none() && body.rb.len() <= INLINE_BODY {
            if body.rb.fill(self.stream, CLIENT_BUF).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    fn inline_body(&mut self, out: &mut Vec<u8>) -> Option<u64> {
        let body = &mut *self.body.borrow_mut();
        let start = out.len();
        let n = inline_body(body.rb, body.framing, out)?;
        if let Some(request) = &mut body.grpc {
            request.feed(&out[start..]);
        }
        Some(n)
    }

    async fn send_continue(&mut self) -> io::Result<()> {
        if self.request.expect_continue {
            let (res, _) = self.stream.write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await;
            res?;
        }
        Ok(())
    }

    /// The body goes up through the client's own stream, which nothing else uses meanwhile.
    #[allow(clippy::await_holding_refcell_ref)]
    async fn send_body<W: AsyncWriteRent>(
        &mut self,
        upstream: &mut W,
        replay: &mut Replay<'_>,
    ) -> Result<(), BodyError> {
        self.body.borrow_mut().copy(self.stream, upstream, replay).await
    }

    /// HTTP/1.0 has no interim responses: its clients get none.
    fn interim(&mut self, out: &mut Vec<u8>, raw: &[u8]) -> bool {
        if self.request.http10 {
            return false;
        }
        out.clear();
        out.extend_from_slice(raw);
        true
    }

    fn response_head(
        &mut self,
        out: &mut Vec<u8>,
        head: &ResponseHead<'_>,
        edits: ResponseEdits<'_>,
        request_whole: bool,
        _upstream: Option<HeaderMap>,
    ) {
        // The client's unread body would be taken for its next request: the answer ends the
        // connection, and says so.
        let close = !(self.request.keep_alive && request_whole) || closing(self.ctx, self.peer);
        let edits = ResponseEdits { close, http10_client: self.request.http10, ..edits };
        self.written = codec::write_response_head(out, head, &edits);
    }

    /// Not a body to de-chunk: that one is decoded as it streams.
    fn inline_response(&mut self, out: &mut Vec<u8>, buf: &mut ReadBuf, framing: BodyFraming) -> Option<u64> {
        if self.written.dechunk {
            return None;
        }
        let start = out.len();
        let n = inline_body(buf, framing, out)?;
        if let Some(watch) = response_watch(&mut self.grpc, framing, false) {
            watch.feed(&out[start..]);
        }
        Some(n)
    }

    async fn send(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let (res, back) = self.stream.write_all(std::mem::take(out)).await;
        *out = back;
        res.map(drop)
    }

    async fn relay_body<R: ResponseSource>(
        &mut self,
        src: &mut R,
        buf: &mut ReadBuf,
        framing: BodyFraming,
    ) -> Result<(), BodyError> {
        let dechunk = self.written.dechunk;
        let seen = &mut watched(response_watch(&mut self.grpc, framing, dechunk));
        match framing {
            BodyFraming::None => Ok(()),
            BodyFraming::ContentLength(n) => body::copy_exact(src, buf, self.stream, n, seen).await,
            BodyFraming::Chunked if dechunk => dechunk::relay(src, buf, self.stream, seen).await,
            BodyFraming::Chunked => {
                let mut dec = ChunkedDecoder::new();
                body::copy_chunked(src, buf, self.stream, &mut dec, seen).await
            }
            BodyFraming::UntilClose => body::copy_until_close(src, buf, self.stream, seen).await,
        }
    }
}
