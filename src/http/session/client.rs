//! The HTTP/1.1 client's half of an exchange: its request body read through the session's
//! read window and passed up verbatim, its response heads and body written back in HTTP/1.1.

use std::convert::Infallible;
use std::io;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::{closing, CLIENT_BUF};
use crate::buf::ReadBuf;
use crate::http::body::{self, buffered_body_len, inline_body, BodyError, Watch, INLINE_BODY};
use crate::http::codec::{self, BodyFraming, ChunkedDecoder, ResponseEdits, ResponseHead};
use crate::http::dechunk;
use crate::http::exchange::{Client, Replay};
use crate::http::grpc;
use crate::http::head::Http1Request;
use crate::http::peer::Peer;
use crate::percore::WorkerCtx;

pub(super) struct Http1Client<'a, S> {
    stream: &'a mut S,
    rb: &'a mut ReadBuf,
    request: Http1Request,
    /// Whether the connection is closing, asked as the response head is written.
    ctx: &'a WorkerCtx,
    peer: &'a Peer,
    /// What writing the response head decided: close after it, and de-chunk its body.
    written: codec::ResponseWritten,
    /// A gRPC request's bodies as they pass (the response's once its framing is known).
    grpc: Watches,
}

impl<'a, S> Http1Client<'a, S> {
    pub(super) fn new(
        stream: &'a mut S,
        rb: &'a mut ReadBuf,
        request: Http1Request,
        ctx: &'a WorkerCtx,
        peer: &'a Peer,
        grpc: bool,
    ) -> Self {
        let written = codec::ResponseWritten { dechunk: false, close: false };
        let grpc = grpc.then(|| (Watch::new(request.framing), None));
        Http1Client { stream, rb, request, ctx, peer, written, grpc }
    }

    /// What a gRPC request's bodies showed.
    pub(super) fn grpc_seen(&self) -> grpc::Seen {
        let Some((request, response)) = &self.grpc else {
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

/// The request's and response's watches of a gRPC exchange.
type Watches = Option<(Watch, Option<Watch>)>;

/// The watch of a gRPC response body framed as `framing` as it reaches the client; `dechunk`:
/// an HTTP/1.0 client gets a chunked body's data alone.
fn response_watch(grpc: &mut Watches, framing: BodyFraming, dechunk: bool) -> Option<&mut Watch> {
    let framing = if dechunk { BodyFraming::None } else { framing };
    grpc.as_mut().map(|(_, response)| response.get_or_insert_with(|| Watch::new(framing)))
}

/// Shows `bytes` to `watch`, if there is one.
fn watched(mut watch: Option<&mut Watch>) -> impl FnMut(&[u8]) + '_ {
    move |bytes| {
        if let Some(w) = &mut watch {
            w.feed(bytes);
        }
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> Client for Http1Client<'_, S> {
    const HTTP2: bool = false;

    type Body = Infallible;

    /// One stream carries the body up and the response down.
    fn body(&self) -> Option<Infallible> {
        None
    }

    /// Not when the client waits for `100 Continue`: it sends nothing before the upstream asks.
    /// Waited for either way: the body goes up before the response is read.
    async fn hold_body(&mut self, _wait: bool) -> io::Result<()> {
        let framing = self.request.framing;
        let small = match framing {
            BodyFraming::ContentLength(n) => n <= INLINE_BODY as u64,
            BodyFraming::Chunked => true,
            BodyFraming::None | BodyFraming::UntilClose => false,
        };
        if !small || self.request.expect_continue {
            return Ok(());
        }
        while buffered_body_len(self.rb.data(), framing, INLINE_BODY).is_none() && self.rb.len() <= INLINE_BODY {
            if self.rb.fill(self.stream, CLIENT_BUF).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    fn inline_body(&mut self, out: &mut Vec<u8>) -> Option<u64> {
        let start = out.len();
        let n = inline_body(self.rb, self.request.framing, out)?;
        if let Some((request, _)) = &mut self.grpc {
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

    async fn send_body<W: AsyncWriteRent>(&mut self, upstream: &mut W, replay: &mut Replay) -> Result<(), BodyError> {
        let mut watch = watched(self.grpc.as_mut().map(|(request, _)| request));
        let seen = &mut |bytes: &[u8]| {
            replay.keep(bytes);
            watch(bytes);
        };
        match self.request.framing {
            BodyFraming::ContentLength(n) => body::copy_exact(self.stream, self.rb, upstream, n, seen).await,
            BodyFraming::Chunked => {
                let mut dec = ChunkedDecoder::new();
                body::copy_chunked(self.stream, self.rb, upstream, &mut dec, seen).await
            }
            BodyFraming::None | BodyFraming::UntilClose => Ok(()),
        }
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

    async fn relay_body<R: AsyncReadRent>(
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
