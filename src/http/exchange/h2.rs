//! A try on an HTTP/2 upstream, translated at the upstream's edge so that the rest of the
//! exchange keeps speaking HTTP/1.1 bytes (as `h2/head.rs` does at the client's edge): the
//! request head in `out` becomes HEADERS (connection-specific fields dropped, `:authority`
//! from `host`), the body the client sends in HTTP/1.1 framing becomes DATA ([`DataWriter`]),
//! and the response is read as an HTTP/1.1 head with a body, chunked with trailers when the
//! server gave no length ([`H2Response`]), which the relay reads as it reads an HTTP/1.1
//! upstream: retries on statuses and `grpc-status`, outlier detection and the client's codec
//! see no difference. An HTTP/2 client takes the body's frames as they came instead
//! ([`ResponseSource::frames`]), and the head's fields as the upstream sent them, to edit
//! ([`ResponseSource::head_fields`]); its request's first try goes as the HTTP/2 head the plan
//! made from its own fields ([`H2Request`]). The connections are multiplexed, per core
//! (`upstream/multiplex.rs`).

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io::{self, Write as _};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::{Connection, ResponseFuture};
use h2::RecvStream;
use monoio::buf::{IoBufMut, IoVecBufMut};
use monoio::io::AsyncReadRent;
use monoio::BufResult;

use super::attempt::{Failure, Try};
use super::relay::{alongside, request_body_error, Relayed, Source};
use super::{
    connect, connection_slot, Client, Exchange, Forwarded, H2Request, Pooled, Replay, RequestBody, ResponseSource,
    PENDING_POLL,
};
use crate::buf::{read_rent, readv_rent, ReadBuf};
use crate::http::body::BodyError;
use crate::http::codec::{self, BodyFraming, ChunkedDecoder};
use crate::http::error::ProxyError;
use crate::http::h2_io::{client_builder, request_of, DataWriter, PollIo};
use crate::http::head::ReqMeta;
use crate::http::headers::Merged;
use crate::percore::WorkerCtx;
use crate::upstream::{MuxState, MuxStream, UpstreamConn, UpstreamStream, UPSTREAM_BUF};

/// Bytes an HTTP/2 response's HTTP/1.1 head is first given.
const HEAD_ROOM: usize = 512;

/// How often a connection's driver looks at its idleness.
const WATCH: Duration = Duration::from_secs(1);

impl<C: Client> Exchange<'_, C> {
    /// One try on an HTTP/2 upstream: a stream on a pooled connection with room, or on a new
    /// one. A stream the connection refuses before anything was sent (it closed meanwhile, or
    /// sent GOAWAY) is tried once more on a fresh connection, as a reused HTTP/1.1 connection
    /// is.
    pub(super) async fn try_multiplexed(
        &mut self,
        at: &Try<'_>,
        meta: ReqMeta,
        inline: bool,
        replay: &mut Replay<'_>,
        response: &Merged<'_>,
        h2: Option<Box<H2Request>>,
    ) -> Result<Forwarded, Failure> {
        let ctx = self.ctx;
        let stream = mux_stream(at, ctx).await?;
        let tls = at.cluster.policy.tls.is_some();
        let (request, head_len, framing) = match h2 {
            Some(h2) => {
                let H2Request { request, head_len, framing } = *h2;
                (request, head_len, framing)
            }
            None => request_of(self.out, tls).map_err(|e| Failure::before(ProxyError::BadRequest(e)))?,
        };
        // Nothing follows the head: the request ends with its HEADERS.
        let ends =
            framing == BodyFraming::None || (inline && self.out.len() == head_len && framing != BodyFraming::Chunked);
        // The request goes on its first try as built; a second try (a refused stream) reads the
        // same head again rather than every request cloning its fields for a rare retry.
        let mut first = Some(request);
        let out = &*self.out;
        let request = || match first.take() {
            Some(request) => Ok(request),
            None => request_of(out, tls).map(|r| r.0).map_err(|e| Failure::before(ProxyError::BadRequest(e))),
        };
        let log = &mut self.account.log;
        let (stream, (response_future, body)) = send_h2(at, ctx, stream, request, ends, |local| {
            if let Some(r) = log {
                r.upstream_local = local;
            }
        })
        .await?;
        let sent_at = Instant::now();
        let mut writer =
            DataWriter { stream: body, decoder: (framing == BodyFraming::Chunked).then(ChunkedDecoder::decoding) };
        let mut source = H2Response::new(response_future, meta.is_head);
        let mut sent_whole = true;
        // A buffer per try: an HTTP/2 stream has no connection of its own to keep one with (h2
        // allocates per stream anyway).
        let mut buf = ReadBuf::with_capacity(UPSTREAM_BUF);
        let lent = if ends || inline { None } else { self.client.body() };
        if !ends && lent.is_none() {
            if inline {
                let body = &self.out[head_len..];
                writer.push_last(body).await.map_err(|e| Failure::before(ProxyError::UpstreamIo(e)))?;
            } else {
                self.client.send_continue().await.map_err(|e| Failure::before(ProxyError::DownstreamIo(e)))?;
                sent_whole = self.stream_body_h2(&mut writer, &mut source, replay).await?;
            }
        }
        let from = Source { buf: &mut buf, src: &mut source };
        let relayed = match lent {
            // The body goes up as DATA while the response comes down.
            Some(body) => {
                let upload = async {
                    replay.resend(&mut writer).await.map_err(BodyError::Sink)?;
                    body.send(&mut writer, replay).await?;
                    writer.finish().await.map_err(BodyError::Sink)
                };
                let whole = Cell::new(false);
                // Made in the call: see `alongside`.
                let (relayed, whole) =
                    alongside(upload, self.relay_response(from, meta, sent_at, at, response, &whole), &whole)
                        .await
                        .map_err(|e| self.body_failure(e))?;
                sent_whole = whole;
                relayed
            }
            None => self.relay_response(from, meta, sent_at, at, response, &Cell::new(sent_whole)).await,
        };
        drop(stream);
        match relayed? {
            Relayed::Done { .. } => Ok(Forwarded::Done { request_whole: sent_whole }),
            // Never: an HTTP/2 response has no 101, and the relay fails one unasked.
            Relayed::Upgraded => Err(Failure::started(ProxyError::UnexpectedUpgrade)),
        }
    }

    /// Streams the client's body up as DATA (`replay` first), unless the upstream answers first
    /// (as a server refusing an upload does): then `Ok(false)`, the rest unread, as on HTTP/1.1.
    async fn stream_body_h2(
        &mut self,
        writer: &mut DataWriter,
        source: &mut H2Response,
        replay: &mut Replay<'_>,
    ) -> Result<bool, Failure> {
        let Some(response) = source.response.as_mut() else {
            return Ok(false);
        };
        replay.resend(writer).await.map_err(|e| Failure::before(ProxyError::UpstreamIo(e)))?;
        let copied = monoio::select! {
            res = self.client.send_body(writer, replay) => Ok(res),
            answer = response => Err(answer),
        };
        let copied = match copied {
            Ok(copied) => copied,
            Err(answer) => {
                source.response = None;
                source.early = Some(answer);
                return Ok(false);
            }
        };
        copied.map_err(|e| Failure::before(request_body_error(e)))?;
        writer.finish().await.map_err(|e| Failure::before(ProxyError::UpstreamIo(e)))?;
        Ok(true)
    }
}

/// A stream for a try on `at`'s HTTP/2 endpoint: on a pooled connection with room, on one this
/// worker is opening, or on a new one.
pub(in crate::http) async fn mux_stream(at: &Try<'_>, ctx: &WorkerCtx) -> Result<MuxStream, Failure> {
    let policy = &at.cluster.policy;
    let (max_streams, max_requests) = (policy.max_concurrent_streams, policy.max_requests_per_connection);
    let pooled = || ctx.upstream.mux.take(at.key(), max_streams, max_requests);
    match pooled() {
        Some(s) => {
            ctx.stats.upstream_cx_reused.inc();
            Ok(s)
        }
        None => match attach(at, ctx, &pooled).await {
            Some(s) => Ok(s),
            None => open(at, ctx, &pooled).await,
        },
    }
}

/// Opens the stream of the request `request` makes (called once a try; its error ends the
/// call) on `stream`'s
/// connection (`ends`: with no body). One the connection refuses before anything was sent (it
/// closed meanwhile, or sent GOAWAY) goes once more on a fresh connection, as a reused
/// HTTP/1.1 connection is retried. `sending` learns each connection's local address. The
/// stream's hold on its connection comes back with it.
pub(in crate::http) async fn send_h2(
    at: &Try<'_>,
    ctx: &WorkerCtx,
    mut stream: MuxStream,
    mut request: impl FnMut() -> Result<http::Request<()>, Failure>,
    ends: bool,
    mut sending: impl FnMut(Option<std::net::SocketAddr>),
) -> Result<(MuxStream, (ResponseFuture, h2::SendStream<Bytes>)), Failure> {
    let policy = &at.cluster.policy;
    let (max_streams, max_requests) = (policy.max_concurrent_streams, policy.max_requests_per_connection);
    let pooled = || ctx.upstream.mux.take(at.key(), max_streams, max_requests);
    let mut fresh = false;
    loop {
        sending(stream.state.local);
        at.stats.rq_total.inc();
        let ready = poll_fn(|cx| stream.send.poll_ready(cx)).await;
        let request = request()?;
        match ready.and_then(|()| stream.send.send_request(request, ends)) {
            Ok(sent) => return Ok((stream, sent)),
            Err(e) if !fresh => {
                tracing::debug!(error = %e, "h2 upstream connection refused a stream: opening another");
                stream.state.closed.set(true);
                stream = open(at, ctx, &pooled).await?;
                fresh = true;
            }
            Err(e) => return Err(Failure::before(ProxyError::UpstreamIo(io::Error::other(e)))),
        }
    }
}

/// A stream on a connection to `at`'s endpoint that this worker is opening, waited for while
/// it would have room (within the connect timeout that bounds its opening); `None` when there
/// is none or it came without room.
async fn attach(at: &Try<'_>, ctx: &WorkerCtx, pooled: &impl Fn() -> Option<MuxStream>) -> Option<MuxStream> {
    let waiting = ctx.upstream.mux.wait_for_opening(at.key(), at.cluster.policy.max_concurrent_streams)?;
    loop {
        super::within::sleep(PENDING_POLL).await;
        if let Some(stream) = pooled() {
            ctx.stats.upstream_cx_reused.inc();
            return Some(stream);
        }
        if !waiting.still_opening() {
            return None;
        }
    }
}

/// A stream on a new connection to `at`'s endpoint, within `maxConnections` (or, waiting as a
/// pending request, on a pooled one that got room meanwhile): connected, TLS with ALPN `h2`
/// when the cluster originates it, the HTTP/2 handshake sent, a driver task spawned on this core.
async fn open(at: &Try<'_>, ctx: &WorkerCtx, pooled: &impl Fn() -> Option<MuxStream>) -> Result<MuxStream, Failure> {
    let slot = match connection_slot(at, pooled).await? {
        Pooled::Found(stream) => {
            ctx.stats.upstream_cx_reused.inc();
            return Ok(stream);
        }
        Pooled::Open(slot) => slot,
    };
    let opening = ctx.upstream.mux.opening(at.key());
    let UpstreamConn { stream, open: counted, .. } = connect(at, ctx, true).await?;
    let local = stream.local_addr().ok();
    // Boxed, as `connect` is: only a request that opens a connection pays for it.
    let handshake = Box::pin(client_builder().handshake::<_, Bytes>(PollIo::new(stream)));
    let (send, connection) =
        handshake.await.map_err(|e| Failure::before(ProxyError::ConnectFailed(io::Error::other(e))))?;
    let state = MuxState::new(local);
    let policy = &at.cluster.policy;
    let (idle, max_requests) = (policy.http_idle_timeout, policy.max_requests_per_connection);
    let driven = state.clone();
    monoio::spawn(async move {
        drive(connection, &driven, idle, max_requests).await;
        driven.closed.set(true);
        // The connection leaves the endpoint's and the cluster's counts as it closes.
        drop((counted, slot));
    });
    // Its first stream is this one, taken before the waiting streams see it.
    let first = MuxStream::new(send.clone(), state.clone());
    ctx.upstream.mux.put(at.key(), send, state);
    drop(opening);
    Ok(first)
}

/// Runs a connection until it ends (the server's GOAWAY once its streams are done, an error),
/// or until it has been idle for the cluster's idle timeout or has carried its
/// `maxRequestsPerConnection` and has no stream left, as Envoy's pool closes it. It notes the
/// server's SETTINGS_MAX_CONCURRENT_STREAMS as it goes.
async fn drive(
    mut connection: Connection<PollIo<UpstreamStream>, Bytes>,
    state: &Rc<MuxState>,
    idle: Duration,
    max_requests: u32,
) {
    let run = poll_fn(|cx| {
        let polled = Pin::new(&mut connection).poll(cx);
        state.server_max.set(u32::try_from(connection.max_concurrent_send_streams()).unwrap_or(u32::MAX));
        polled
    });
    let watch = async {
        loop {
            monoio::time::sleep(WATCH.min(idle)).await;
            if state.active.get() == 0 && (state.spent(max_requests) || state.idle_since.get().elapsed() >= idle) {
                return;
            }
        }
    };
    monoio::select! {
        res = run => if let Err(e) = res {
            tracing::debug!(error = %e, "h2 upstream connection ended");
        },
        _ = watch => {}
    }
}

/// An HTTP/2 response read as HTTP/1.1 bytes: the head (a length kept, else chunked), then the
/// body's DATA, then, chunked, the trailers in the last chunk's trailer section.
struct H2Response {
    response: Option<ResponseFuture>,
    /// The response when it came while the request body was still going up.
    early: Option<Result<http::Response<RecvStream>, h2::Error>>,
    body: Option<RecvStream>,
    /// The head's fields, for an HTTP/2 client to take as they are ([`ResponseSource::head_fields`]).
    fields: Option<http::HeaderMap>,
    chunked: bool,
    is_head: bool,
    /// Bytes made and not yet read: `pending[pos..]`.
    pending: Vec<u8>,
    pos: usize,
}

impl H2Response {
    fn new(response: ResponseFuture, is_head: bool) -> Self {
        H2Response {
            response: Some(response),
            early: None,
            body: None,
            fields: None,
            chunked: false,
            is_head,
            pending: Vec::new(),
            pos: 0,
        }
    }

    /// Makes the next bytes; none at the end.
    async fn next(&mut self) -> io::Result<()> {
        self.pending.clear();
        self.pos = 0;
        let answer = match (self.early.take(), &mut self.response) {
            (Some(answer), _) => Some(answer),
            (None, Some(response)) => Some(response.await),
            (None, None) => None,
        };
        if let Some(answer) = answer {
            self.response = None;
            let answer = answer.map_err(io::Error::other)?;
            self.head(answer);
            return Ok(());
        }
        let Some(body) = &mut self.body else {
            return Ok(());
        };
        while self.pending.is_empty() {
            match body.data().await {
                Some(Ok(data)) => {
                    let _ = body.flow_control().release_capacity(data.len());
                    if data.is_empty() {
                        continue;
                    }
                    if self.chunked {
                        let _ = write!(self.pending, "{:x}\r\n", data.len());
                        self.pending.extend_from_slice(&data);
                        self.pending.extend_from_slice(b"\r\n");
                    } else {
                        self.pending.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => {
                    let trailers = body.trailers().await.map_err(io::Error::other)?;
                    self.body = None;
                    if self.chunked {
                        self.pending.extend_from_slice(b"0\r\n");
                        for (name, value) in trailers.iter().flatten() {
                            line(&mut self.pending, name.as_str(), value.as_bytes());
                        }
                        self.pending.extend_from_slice(b"\r\n");
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The HTTP/1.1 head for `response`: its fields, and the framing of what follows. A
    /// response that ended with its headers (a trailers-only gRPC answer) gets a zero length.
    fn head(&mut self, response: http::Response<RecvStream>) {
        let (parts, body) = response.into_parts();
        let status = parts.status;
        // Room for a usual head at once, where growing from empty copied it three times.
        self.pending.reserve(HEAD_ROOM);
        codec::put_status_line(&mut self.pending, status.as_u16(), status.canonical_reason().unwrap_or(""));
        for (name, value) in &parts.headers {
            line(&mut self.pending, name.as_str(), value.as_bytes());
        }
        let bodiless = self.is_head || status.is_informational() || status == 204 || status == 304;
        let has_length = parts.headers.contains_key(http::header::CONTENT_LENGTH);
        if !bodiless && !has_length {
            if body.is_end_stream() {
                self.pending.extend_from_slice(b"content-length: 0\r\n");
            } else {
                self.pending.extend_from_slice(b"transfer-encoding: chunked\r\n");
                self.chunked = true;
            }
        }
        self.pending.extend_from_slice(b"\r\n");
        if !bodiless && !body.is_end_stream() {
            self.body = Some(body);
        }
        self.fields = Some(parts.headers);
    }

    /// Copies up to `room` pending bytes to `dst`, making more first when none are left.
    async fn read_into(&mut self, dst: *mut u8, room: usize) -> io::Result<usize> {
        if self.pos == self.pending.len() {
            self.next().await?;
        }
        let n = room.min(self.pending.len() - self.pos);
        // SAFETY: `dst` is valid for `room` bytes of writes (the caller's buffer contract) and
        // cannot overlap `pending`, which this type owns.
        unsafe { std::ptr::copy_nonoverlapping(self.pending[self.pos..].as_ptr(), dst, n) };
        self.pos += n;
        Ok(n)
    }
}

/// One field line; a value that would end its line (h2 lets none through, said here anyway)
/// is left out rather than smuggled into the HTTP/1.1 bytes.
fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return;
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

impl ResponseSource for H2Response {
    /// The body, while none of it was made into bytes (all that was made, the head, was read).
    fn frames(&mut self) -> Option<&mut RecvStream> {
        if self.pos < self.pending.len() {
            return None;
        }
        self.body.as_mut()
    }

    fn head_fields(&mut self) -> Option<http::HeaderMap> {
        self.fields.take()
    }
}

impl AsyncReadRent for H2Response {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        read_rent(buf, async |ptr, len| self.read_into(ptr, len).await).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        readv_rent(buf, async |ptr, len| self.read_into(ptr, len).await).await
    }
}
