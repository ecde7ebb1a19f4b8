//! An HTTP/2 stream as the client's half of an exchange: its DATA frames go up in HTTP/1.1
//! framing ([`H2Body`], lent to the exchange so that they go up while the response comes
//! down; flow-control capacity released as they are written), the upstream's HTTP/1.1
//! response comes back as HEADERS (the codec's edits, read back by `head::response_of`, or
//! applied to an HTTP/2 upstream's own fields by `head::response_from`), DATA
//! (de-framed) and, from a chunked body, trailers, or, from an HTTP/2 upstream, its DATA and
//! trailers as they came; after a WebSocket's upgrade, the stream carries its bytes both ways.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, Write as _};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::head::{response_from, response_of};
use crate::buf::ReadBuf;
use crate::duplex::Duplex;
use crate::http::body::{self, BodyError, INLINE_BODY, STREAM_CHUNK};
use crate::http::codec::{self, BodyFraming, ChunkedDecoder, ResponseEdits, ResponseHead};
use crate::http::exchange::{Client, Replay, RequestBody, ResponseSource};
use crate::http::ext_authz::BodyRead;
use crate::http::grpc::{self, MessageCounter};
use crate::http::h2_io::send_data;
use crate::upstream::UpstreamConn;

/// The most trailer lines read from a chunked upstream body (the codec bounds their bytes).
const MAX_TRAILERS: usize = 64;

/// The request's side of an HTTP/2 stream: its DATA, read apart from the response's side.
pub(super) struct H2Body<'a> {
    body: &'a mut RecvStream,
    /// How the upstream head frames the request body: `None` when the request ended with its
    /// headers, a length when the client gave one, else chunked.
    framing: BodyFraming,
    /// Request DATA read ahead (for a retry or a mirror), and whether that is all of it.
    held: Vec<u8>,
    ended: bool,
    /// The DATA ended; its trailers are still to come.
    data_done: bool,
    /// The body's end went up (a retry sends it again from its copy).
    finished: bool,
    /// Request trailers, for a chunked upstream body.
    trailers: Option<HeaderMap>,
    /// Request body bytes streamed up after the head (the access log's and Istio's size).
    pub(super) streamed: u64,
    /// A gRPC request's messages; `None` for any other request.
    grpc: Option<MessageCounter>,
}

pub(super) struct H2Client<'a> {
    body: &'a RefCell<H2Body<'a>>,
    respond: &'a mut SendResponse<Bytes>,
    /// The response's stream, once its head went out.
    stream: Option<SendStream<Bytes>>,
    /// What `out` holds for [`Client::send`]: an interim head, or a final head of this length,
    /// with its whole body after it (`inline`) or none at all (`bodiless`).
    interim: bool,
    head_len: usize,
    inline: bool,
    bodiless: bool,
    /// The final head is a 101: a WebSocket's upgrade, taken.
    switched: bool,
    /// The final head made from an HTTP/2 upstream's fields (`head::response_from`), where
    /// `out` holds none; `Err` if the edits did not fit HTTP/2.
    made: Option<Result<http::Response<()>, ()>>,
    /// A gRPC response's messages and the `grpc-status` of its trailers; `None` for any other
    /// request.
    grpc: Option<(MessageCounter, Option<u8>)>,
}

impl<'a> H2Body<'a> {
    pub(super) fn new(body: &'a mut RecvStream, framing: BodyFraming, grpc: bool) -> Self {
        H2Body {
            body,
            framing,
            held: Vec::new(),
            ended: framing == BodyFraming::None,
            data_done: false,
            finished: false,
            trailers: None,
            streamed: 0,
            grpc: grpc.then(Default::default),
        }
    }

    /// The next DATA frame of the request (its capacity released: the caller writes it on at
    /// once or holds it, bounded); `None` at its end, after which its trailers are kept.
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        if !self.data_done {
            match self.body.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = self.body.flow_control().release_capacity(data.len());
                    if let Some(request) = &mut self.grpc {
                        request.feed(&data);
                    }
                    return Poll::Ready(Ok(Some(data)));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Ready(None) => self.data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        let trailers = std::task::ready!(self.body.poll_trailers(cx)).map_err(io::Error::other)?;
        self.ended = true;
        self.trailers = trailers;
        Poll::Ready(Ok(None))
    }

    async fn next_data(&mut self) -> io::Result<Option<Bytes>> {
        poll_fn(|cx| self.poll_data(cx)).await
    }

    /// Holds what the request's DATA brought so far, up to its end or past [`INLINE_BODY`],
    /// without waiting for more.
    fn hold(&mut self) -> io::Result<()> {
        if matches!(self.framing, BodyFraming::ContentLength(n) if n > INLINE_BODY as u64) {
            return Ok(());
        }
        let mut here = Context::from_waker(Waker::noop());
        while !self.ended && self.held.len() <= INLINE_BODY {
            let data = match self.poll_data(&mut here) {
                Poll::Ready(data) => data?,
                Poll::Pending => break,
            };
            if let Some(data) = data {
                self.held.extend_from_slice(&data);
            }
        }
        Ok(())
    }

    /// Holds the DATA until the body ends or more than `max` bytes are here, for a check that
    /// carries it (Envoy's ext_authz buffering): what it holds and whether that is all of it;
    /// `None` for a request without a body. The held bytes go up first, as [`Self::hold`]'s.
    pub(super) async fn read_for_check(&mut self, max: usize) -> io::Result<Option<BodyRead>> {
        if self.ended {
            return Ok(None);
        }
        while !self.ended && self.held.len() <= max {
            if let Some(data) = self.next_data().await? {
                self.held.extend_from_slice(&data);
            }
        }
        Ok(Some(BodyRead { data: self.held.clone(), whole: self.ended }))
    }

    fn inline(&mut self, out: &mut Vec<u8>) -> Option<u64> {
        if !self.ended || self.held.len() > INLINE_BODY {
            return None;
        }
        let held = std::mem::take(&mut self.held);
        self.frame(out, &held);
        self.frame_end(out);
        Some(held.len() as u64)
    }

    /// Streams what was held and the rest of the body to `upstream`, each piece kept in
    /// `replay` before it is written (what an earlier try sent is in its copy, not here).
    async fn send<W: AsyncWriteRent>(&mut self, upstream: &mut W, replay: &mut Replay<'_>) -> Result<(), BodyError> {
        let mut out = Vec::new();
        let held = std::mem::take(&mut self.held);
        self.frame(&mut out, &held);
        self.streamed += held.len() as u64;
        loop {
            if self.ended && !std::mem::replace(&mut self.finished, true) {
                self.frame_end(&mut out);
            }
            if !out.is_empty() {
                replay.keep(&out);
                let (res, back) = upstream.write_all(std::mem::take(&mut out)).await;
                res.map_err(sink)?;
                out = back;
                out.clear();
            }
            if self.ended {
                return Ok(());
            }
            if let Some(data) = self.next_data().await.map_err(source)? {
                self.streamed += data.len() as u64;
                self.frame(&mut out, &data);
            }
        }
    }

    /// Appends `data` to `out` in the upstream body's framing.
    fn frame(&self, out: &mut Vec<u8>, data: &[u8]) {
        if self.framing == BodyFraming::Chunked && !data.is_empty() {
            let _ = write!(out, "{:x}\r\n", data.len());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(data);
        }
    }

    /// Appends the end of a chunked body, the request's trailers in it.
    fn frame_end(&self, out: &mut Vec<u8>) {
        if self.framing != BodyFraming::Chunked {
            return;
        }
        out.extend_from_slice(b"0\r\n");
        for (name, value) in self.trailers.iter().flatten() {
            let value = value.as_bytes();
            // A value that would end its line is left out rather than smuggled (RFC 9113 §8.2.1).
            if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The stream's body lent to the exchange: only its upload borrows it while it runs (the
/// response's side never does), so the borrow held across its awaits is never contended.
impl RequestBody for &RefCell<H2Body<'_>> {
    #[allow(clippy::await_holding_refcell_ref)]
    async fn send<W: AsyncWriteRent>(self, upstream: &mut W, replay: &mut Replay<'_>) -> Result<(), BodyError> {
        self.borrow_mut().send(upstream, replay).await
    }
}

impl<'a> H2Client<'a> {
    pub(super) fn new(body: &'a RefCell<H2Body<'a>>, respond: &'a mut SendResponse<Bytes>, grpc: bool) -> Self {
        H2Client {
            body,
            respond,
            stream: None,
            interim: false,
            head_len: 0,
            inline: false,
            bodiless: false,
            switched: false,
            made: None,
            grpc: grpc.then(Default::default),
        }
    }

    /// What a gRPC request's bodies showed.
    pub(super) fn grpc_seen(&self) -> grpc::Seen {
        let request = self.body.borrow().grpc.as_ref().map_or(0, MessageCounter::count);
        self.grpc.as_ref().map_or_else(grpc::Seen::default, |(response, trailer_status)| grpc::Seen {
            messages: [request, response.count()],
            trailer_status: *trailer_status,
        })
    }

    /// The response began but cannot go on: the stream is reset.
    pub(super) fn cut(&mut self) {
        match &mut self.stream {
            Some(s) => s.send_reset(h2::Reason::INTERNAL_ERROR),
            None => self.respond.send_reset(h2::Reason::INTERNAL_ERROR),
        }
    }

    /// Sends `data` on the response stream within its flow-control window ([`send_data`]),
    /// counting a gRPC response's messages.
    async fn send_data(&mut self, data: Bytes, end: bool) -> io::Result<()> {
        if let Some((response, _)) = &mut self.grpc {
            response.feed(&data);
        }
        let stream = self.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        send_data(stream, data, end).await
    }

    /// After the upstream took a WebSocket's upgrade (its 101 went out as 200): the stream's
    /// DATA go up as they come, the upstream's bytes come back as DATA, and each side's end is
    /// passed on (END_STREAM as a write shutdown, the upstream's close as END_STREAM). A client
    /// that resets the stream ends both ways at once: nothing would take the upstream's bytes.
    #[allow(clippy::await_holding_refcell_ref)] // The exchange that lent the body is over.
    pub(super) async fn tunnel(&mut self, upstream: UpstreamConn) {
        let UpstreamConn { stream: upstream, buf: mut upstream_buf, open: _open, slot: _slot, .. } = upstream;
        let (mut up_r, mut up_w) = upstream.into_halves();
        let mut lent = self.body.borrow_mut();
        let (body, Some(stream)) = (&mut *lent.body, &mut self.stream) else {
            return;
        };
        // Whether the client reset the stream.
        let mut up = pin!(async {
            let reset = loop {
                match body.data().await {
                    Some(Ok(data)) => {
                        let _ = body.flow_control().release_capacity(data.len());
                        if up_w.write_all(data).await.0.is_err() {
                            break false;
                        }
                    }
                    Some(Err(_)) => break true,
                    None => break false,
                }
            };
            let _ = up_w.shutdown().await;
            reset
        });
        let mut down = pin!(async {
            if relay_until_close(stream, &mut up_r, &mut upstream_buf).await.is_err() {
                stream.send_reset(h2::Reason::CANCEL);
            }
        });
        monoio::select! {
            reset = &mut up => if !reset {
                down.await;
            },
            _ = &mut down => {
                up.await;
            },
        }
    }

    /// Sends the trailers of a chunked upstream body, `framing` the bytes after its last data
    /// (the last chunk's size line, the trailer section, the final CRLF); an empty end of
    /// stream when there are none.
    async fn send_trailers(&mut self, framing: &[u8]) -> io::Result<()> {
        self.end_with(trailers_of(framing)).await
    }

    /// Ends the response stream with `trailers`, or with an empty DATA when there are none.
    async fn end_with(&mut self, trailers: HeaderMap) -> io::Result<()> {
        if trailers.is_empty() {
            return self.send_data(Bytes::new(), true).await;
        }
        if let Some((_, status)) = &mut self.grpc {
            // A constant name: a string would be looked up on every gRPC response.
            const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
            *status = trailers.get(GRPC_STATUS).and_then(|v| grpc::status(v.as_bytes()));
        }
        let stream = self.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        stream.send_trailers(trailers).map_err(io::Error::other)
    }

    /// Passes an HTTP/2 upstream's DATA and trailers on as they come, without their trip
    /// through HTTP/1.1 framing; each frame's capacity is released as it is taken, and the
    /// next is read once the client's window let it go (`send_data`), so at most a window per
    /// stream waits here. The last frame carries the end of the stream when no trailers follow.
    async fn pass_frames(&mut self, body: &mut RecvStream, buf: &mut ReadBuf) -> Result<(), BodyError> {
        let upstream = |e: h2::Error| BodyError::Source(io::Error::other(e));
        while let Some(data) = body.data().await {
            let data = data.map_err(upstream)?;
            let _ = body.flow_control().release_capacity(data.len());
            let end = body.is_end_stream();
            buf.count_written(data.len());
            self.send_data(data, end).await.map_err(sink)?;
            if end {
                return Ok(());
            }
        }
        let trailers = body.trailers().await.map_err(upstream)?;
        self.end_with(trailers.unwrap_or_default()).await.map_err(sink)
    }
}

/// The trailers in `framing`, the bytes after a chunked body's last data (the last chunk's
/// size line, the trailer section, the final CRLF). Apart from the send that follows: its
/// lines would otherwise sit in the relay's future.
fn trailers_of(framing: &[u8]) -> HeaderMap {
    let mut lines = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    // The trailer section starts after the last chunk's size line.
    let section = framing
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| if i == 0 { &framing[2..] } else { framing })
        .and_then(|f| f.windows(2).position(|w| w == b"\r\n").map(|i| &f[i + 2..]));
    let mut trailers = HeaderMap::new();
    if let Some(Ok(httparse::Status::Complete((_, parsed)))) = section.map(|s| httparse::parse_headers(s, &mut lines)) {
        for h in parsed {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value)) {
                trailers.append(n, v);
            }
        }
    }
    trailers
}

/// Relays what `src` sends until it closes (what was read already sits in `buf`), then ends
/// the stream.
async fn relay_until_close<R: AsyncReadRent>(
    stream: &mut SendStream<Bytes>,
    src: &mut R,
    buf: &mut ReadBuf,
) -> Result<(), BodyError> {
    loop {
        if !buf.is_empty() {
            let data = Bytes::copy_from_slice(buf.data());
            buf.consume_written(data.len());
            send_data(stream, data, false).await.map_err(sink)?;
        }
        if buf.fill(src, STREAM_CHUNK).await.map_err(source)? == 0 {
            return send_data(stream, Bytes::new(), true).await.map_err(sink);
        }
    }
}

fn source(e: io::Error) -> BodyError {
    BodyError::Source(e)
}

fn sink(e: io::Error) -> BodyError {
    BodyError::Sink(e)
}

impl<'a> Client for H2Client<'a> {
    const HTTP2: bool = true;

    type Body = &'a RefCell<H2Body<'a>>;

    fn body(&self) -> Option<Self::Body> {
        Some(self.body)
    }

    /// Only a body that is small by its length or, unsized, turns out to be.
    async fn hold_body(&mut self) -> io::Result<()> {
        self.body.borrow_mut().hold()
    }

    fn inline_body(&mut self, out: &mut Vec<u8>) -> Option<u64> {
        self.body.borrow_mut().inline(out)
    }

    /// HTTP/2 clients do not wait for `100 Continue` before DATA.
    async fn send_continue(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn send_body<W: AsyncWriteRent>(
        &mut self,
        upstream: &mut W,
        replay: &mut Replay<'_>,
    ) -> Result<(), BodyError> {
        self.body.send(upstream, replay).await
    }

    /// 1xx other than 100 and 101 (103 Early Hints) go out as informational HEADERS.
    fn interim(&mut self, out: &mut Vec<u8>, raw: &[u8]) -> bool {
        out.clear();
        out.extend_from_slice(raw);
        self.interim = true;
        true
    }

    fn response_head(
        &mut self,
        out: &mut Vec<u8>,
        head: &ResponseHead<'_>,
        edits: ResponseEdits<'_>,
        _request_whole: bool,
        upstream: Option<HeaderMap>,
    ) {
        // An HTTP/2 stream is not a connection: nothing to close, no HTTP/1.0 to speak.
        let edits = ResponseEdits { close: false, http10_client: false, ..edits };
        match upstream {
            Some(fields) => self.made = Some(response_from(fields, head, &edits).ok_or(())),
            None => {
                codec::write_response_head(out, head, &edits);
            }
        }
        self.head_len = out.len();
        self.switched = head.status == 101;
        self.bodiless = head.framing == BodyFraming::None && !self.switched;
    }

    /// A chunked body is de-framed as it streams.
    fn inline_response(&mut self, out: &mut Vec<u8>, buf: &mut ReadBuf, framing: BodyFraming) -> Option<u64> {
        if framing == BodyFraming::Chunked {
            return None;
        }
        let n = body::inline_body(buf, framing, out)?;
        self.inline = true;
        Some(n)
    }

    async fn send(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "response head not representable in HTTP/2");
        if std::mem::take(&mut self.interim) {
            let (response, _) = response_of(out).ok_or_else(bad)?;
            return self.respond.send_informational(response).map_err(io::Error::other);
        }
        let mut response = match self.made.take() {
            Some(made) => made.map_err(|()| bad())?,
            None => response_of(&out[..self.head_len]).ok_or_else(bad)?.0,
        };
        if self.switched {
            // A WebSocket's upgrade taken is its extended CONNECT's 200 (RFC 8441 §5), without
            // the HTTP/1.1 handshake's proof, which HTTP/2 has no use for.
            *response.status_mut() = http::StatusCode::OK;
            response.headers_mut().remove("sec-websocket-accept");
        }
        let body = &out[self.head_len..];
        let ends = self.bodiless || (self.inline && body.is_empty());
        let stream = self.respond.send_response(response, ends).map_err(io::Error::other)?;
        self.stream = Some(stream);
        if !ends && !body.is_empty() {
            let body = Bytes::copy_from_slice(body);
            self.send_data(body, self.inline).await?;
        }
        Ok(())
    }

    async fn relay_body<R: ResponseSource>(
        &mut self,
        src: &mut R,
        buf: &mut ReadBuf,
        framing: BodyFraming,
    ) -> Result<(), BodyError> {
        if buf.is_empty() && framing != BodyFraming::None {
            if let Some(body) = src.frames() {
                return self.pass_frames(body, buf).await;
            }
        }
        let eof = || BodyError::Source(io::ErrorKind::UnexpectedEof.into());
        match framing {
            BodyFraming::None => Ok(()),
            BodyFraming::ContentLength(mut n) => {
                while n > 0 {
                    if buf.is_empty() && buf.fill(src, STREAM_CHUNK).await.map_err(source)? == 0 {
                        return Err(eof());
                    }
                    let k = (buf.len() as u64).min(n) as usize;
                    let data = Bytes::copy_from_slice(&buf.data()[..k]);
                    buf.consume_written(k);
                    n -= k as u64;
                    self.send_data(data, n == 0).await.map_err(sink)?;
                }
                Ok(())
            }
            BodyFraming::Chunked => {
                let mut dec = ChunkedDecoder::decoding();
                // The framing since the last data: at the end, the trailer section (bounded by
                // the decoder: a size line, the trailers).
                let mut tail = Vec::new();
                loop {
                    if buf.is_empty() && buf.fill(src, STREAM_CHUNK).await.map_err(source)? == 0 {
                        return Err(eof());
                    }
                    let progress = dec.feed(buf.data()).map_err(BodyError::Framing)?;
                    match progress.data {
                        Some(span) => {
                            let data = Bytes::copy_from_slice(&buf.data()[span.clone()]);
                            buf.consume(span.start);
                            buf.consume_written(span.len());
                            tail.clear();
                            self.send_data(data, false).await.map_err(sink)?;
                        }
                        None => {
                            tail.extend_from_slice(&buf.data()[..progress.consumed]);
                            buf.consume(progress.consumed);
                        }
                    }
                    if progress.done {
                        return self.send_trailers(&tail).await.map_err(sink);
                    }
                }
            }
            BodyFraming::UntilClose => {
                let stream = self.stream.as_mut().ok_or(BodyError::Sink(io::ErrorKind::NotConnected.into()))?;
                // Boxed: rare (an HTTP/1.1 upstream that gives no length), and its future would
                // otherwise sit in every response's.
                Box::pin(relay_until_close(stream, src, buf)).await
            }
        }
    }
}
