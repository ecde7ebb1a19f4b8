//! One HTTP/2 connection: its settings (bounded, see README's "HTTP/2"), a task per stream on
//! this core, GOAWAY when the worker drains, a reload removes its port or changes the TLS
//! settings it was made under, or it idles; and one stream served as one request: planned,
//! answered or forwarded, accounted.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::request::Parts;

use super::client::{H2Body, H2Client};
use super::flood::FloodGuard;
use super::head::{self, response_of, H2Head};
use crate::duplex::Duplex;
use crate::http::account::Account;
use crate::http::body::STREAM_CHUNK;
use crate::http::callouts;
use crate::http::codec::{self, HeaderSlots, ParseError};
use crate::http::error::ProxyError;
use crate::http::exchange::{self, Exchange, Forwarded};
use crate::http::ext_authz::Verdict;
use crate::http::fault::Injected;
use crate::http::h2_io::PollIo;
use crate::http::local;
use crate::http::peer::Peer;
use crate::http::plan::{plan, Disposition, Inputs, FAULT_ABORT};
use crate::http::session::{encode, local_flag, Downstream, Ending};
use crate::limits::ClientLimits;
use crate::percore::WorkerCtx;
use crate::upstream::Generation;

/// Streams open at once on one connection. Envoy's default under istiod is 2^31-1, i.e. none;
/// a bound keeps one client's tasks and upstream connections on a core in check, while 1024
/// leaves room for the deepest multiplexing a browser or a gRPC channel asks (Chrome opens
/// at most 100 to 256; h2load's benchmarks run 256).
const MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Flow-control windows: what a client may send ahead of our reads, per stream and per
/// connection. Envoy's defaults (256 MiB each) bound nothing; these are its own edge-proxy
/// recommendation ("Configuring Envoy as an edge proxy": 64 KiB and 1 MiB). Capacity is given
/// back as the body is written upstream, so a connection holds at most 1 MiB of request data.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Streams the client resets before we accept them, outstanding at once, before the
/// connection is ended with GOAWAY (rapid reset, CVE-2023-44487): h2's default, said here.
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Room a stream's buffers start with, so that a common request's heads are written without
/// the buffer growing through several reallocations: the client's head as HTTP/1.1, then the
/// upstream's head and the client's response head (with the gateway's added fields).
const HEAD_ROOM: usize = 512;
const OUT_ROOM: usize = 1024;
/// How often an open connection looks at the worker's drain, its TLS settings and its idleness.
const WATCH: Duration = Duration::from_secs(1);

fn builder(limits: &ClientLimits) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        // Decoded header bytes, as the HTTP/1.1 head limit (Envoy's `max_request_headers_kb`):
        // an HPACK bomb is refused before it is held.
        .max_header_list_size(u32::try_from(limits.head.max_head).unwrap_or(u32::MAX))
        // Response data queued per stream: the relay waits for window before it reads on.
        .max_send_buffer_size(STREAM_CHUNK)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        // WebSockets over HTTP/2 (RFC 8441), carried to HTTP/1.1 upstreams as upgrades.
        .enable_connect_protocol();
    b
}

/// Serves an HTTP/2 connection until it closes, errs, or ends after a GOAWAY; `first`: bytes
/// already read from `stream` (the client preface, when the HTTP/1.1 session sniffed it).
pub(in crate::http) async fn serve<S>(stream: S, first: Vec<u8>, downstream: Downstream, ctx: Rc<WorkerCtx>)
where
    S: Duplex,
    S::Read: 'static,
    S::Write: 'static,
{
    let Downstream { conn, tls, .. } = downstream;
    let limits = ctx.limits;
    let handshake = builder(&limits).handshake::<_, Bytes>(PollIo::watched(stream, first, FloodGuard::new()));
    let mut connection = match monoio::time::timeout(limits.request_headers_timeout, handshake).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return tracing::debug!(peer = %conn.peer, error = %e, "h2 handshake failed"),
        Err(_) => return tracing::debug!(peer = %conn.peer, "h2 handshake not complete in time"),
    };
    let peer = Rc::new(RefCell::new(Peer { conn, ip: conn.client.ip().to_string(), tls, buckets: Default::default() }));
    let open = Rc::new(Cell::new(0usize));
    let mut idle_since = Instant::now();
    let mut closing = false;
    // One timer for the connection, set again each time it fires: a sleep made anew per loop
    // would never fire while streams arrive more often than WATCH, and a busy connection would
    // never be told to go away on a drain.
    let mut watch = std::pin::pin!(monoio::time::sleep(WATCH));
    loop {
        // Accepting also drives the connection: the streams' frames go out while it waits.
        let accepted = monoio::select! {
            accepted = connection.accept() => Some(accepted),
            _ = &mut watch => None,
        };
        match accepted {
            Some(Some(Ok((request, respond)))) => {
                // The stream's future (kilobytes) is made in a box of its own at the task's
                // first poll: spawned as the task, it was copied whole twice on its way in.
                let (ctx, peer, open) = (ctx.clone(), peer.clone(), Open::count(&open));
                monoio::spawn(async move { Box::pin(serve_stream(ctx, peer, open, request, respond)).await });
            }
            Some(Some(Err(e))) => {
                tracing::debug!(peer = %conn.peer, error = %e, "h2 connection error");
                break;
            }
            Some(None) => break,
            None => {
                watch.as_mut().reset(monoio::time::Instant::now() + WATCH);
                if open.get() > 0 {
                    idle_since = Instant::now();
                }
                // Envoy sends GOAWAY as it drains, closes an idle connection after its idle
                // timeout, and drains the connections of a removed listener or a changed
                // filter chain; the streams under way end first.
                let idle = idle_since.elapsed() >= limits.idle_timeout;
                let removed = ctx.snapshot().listener(conn.listener_port).is_none();
                if !closing && (ctx.draining() || removed || peer.borrow().stale() || idle) {
                    connection.graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// One of the connection's streams under way, counted while it lives.
struct Open(Rc<Cell<usize>>);

impl Open {
    fn count(open: &Rc<Cell<usize>>) -> Self {
        open.set(open.get() + 1);
        Self(open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Serves one stream as one request, then counts it and logs it; `_open` counts it among the
/// connection's streams until then.
async fn serve_stream(
    ctx: Rc<WorkerCtx>,
    peer: Rc<RefCell<Peer>>,
    _open: Open,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let (ctx, peer) = (&ctx, &*peer);
    // h2 hands over streams the client reset before we took them: such a stream asks nothing
    // of anyone, so that a rapid reset (CVE-2023-44487) costs the upstreams no request.
    if respond.poll_reset(&mut Context::from_waker(Waker::noop())).is_ready() {
        return;
    }
    let snap = {
        let peer = &mut *peer.borrow_mut();
        let snap = ctx.snapshot();
        match &mut peer.tls {
            Some(tls) => tls.follow(snap, peer.conn.listener_port),
            None => snap,
        }
    };
    let (parts, mut body) = request.into_parts();
    let mut head = Vec::with_capacity(HEAD_ROOM);
    let key = || {
        let mut key = [0u8; 16];
        for chunk in key.chunks_mut(4) {
            chunk.copy_from_slice(&ctx.random().to_ne_bytes());
        }
        key
    };
    if head::write_h1_request(&parts, body.is_end_stream(), key, &mut head).is_err() {
        return respond.send_reset(Reason::PROTOCOL_ERROR);
    }
    let mut stream =
        Stream { ctx, account: Account::new(ctx.access_log.is_some()), out: Vec::with_capacity(OUT_ROOM), streamed: 0 };
    stream.account.begin();
    stream.serve(&snap, peer, &head, parts, &mut body, &mut respond).await;
    stream.account.finish(ctx, &snap, stream.streamed);
}

/// One stream's request under way.
struct Stream<'a> {
    ctx: &'a Rc<WorkerCtx>,
    account: Account,
    /// The upstream head, then the client's head (as HTTP/1.1, read back for HTTP/2).
    out: Vec<u8>,
    /// Request body bytes streamed after the head.
    streamed: u64,
}

impl Stream<'_> {
    async fn serve(
        &mut self,
        snap: &Rc<Generation>,
        peer: &RefCell<Peer>,
        head: &[u8],
        client: Parts,
        body: &mut RecvStream,
        respond: &mut SendResponse<Bytes>,
    ) {
        let ctx = self.ctx;
        // As on HTTP/1.1, the parsed head and its slots end before any await.
        let parsed = {
            let mut slots = HeaderSlots::new();
            match codec::parse_request(head, &mut slots, &ctx.limits.head) {
                Ok(Some(h1)) => {
                    let framing = h1.framing;
                    let view = H2Head::new(h1, client);
                    let inputs = Inputs {
                        mirror_shadow_suffix: ctx.mirror_shadow_suffix,
                        random: || ctx.random(),
                        clock: crate::snapshot::now,
                        jwt: &ctx.jwt,
                        worker: ctx.id,
                    };
                    let log = self.account.log.as_deref_mut();
                    let (meta, disposition, fault, check, call) =
                        plan(snap, &view, &mut self.out, &peer.borrow(), &inputs, log);
                    let disposition = match disposition {
                        Disposition::Local { answer, close, details } => {
                            let status = encode(&mut self.out, &answer, Ending { close: false, http10: false });
                            Disposition::Local { answer: status, close, details }
                        }
                        Disposition::Forward { route, dest, extras } => Disposition::Forward { route, dest, extras },
                    };
                    Ok((meta, framing, disposition, fault, check, call))
                }
                // Never: the head is whole.
                Ok(None) => Err(ParseError::HeadTooLarge),
                Err(e) => Err(e),
            }
        };
        ctx.stats.downstream_rq_total.inc();
        let (meta, framing, mut disposition, mut fault, check, call) = match parsed {
            Ok(planned) => planned,
            Err(e) => return self.answer_error(&ProxyError::BadRequest(e), false, respond).await,
        };
        // The stream's start, noted as it was taken (`Account::begin`).
        let began = *self.account.tally.began.get_or_insert_with(Instant::now);
        self.account.tally.received = head.len() as u64;
        self.account.tally.grpc = meta.grpc;
        ctx.stats.record_rbac(meta.rbac);
        if let (Some(sink), Some(r)) = (&ctx.access_log, &mut self.account.log) {
            r.start = Some(sink.wall(began));
        }
        // The filters that ask another service (ext_authz, then the rate limit services): a
        // denial replaces whatever the later filters planned, and they never see the request.
        // The request's DATA, lent to the exchange; a check carrying the body reads it first.
        let mut lent = H2Body::new(body, framing, meta.grpc);
        let body = match check.as_ref().and_then(|c| c.body()) {
            Some(with) => match lent.read_for_check(with.max).await {
                Ok(read) => read,
                Err(e) => {
                    tracing::debug!(error = %e, "request body unread for ext_authz");
                    return respond.send_reset(Reason::CANCEL);
                }
            },
            None => None,
        };
        let aborted = fault.abort.is_some();
        if let Some(verdict) = callouts::run(check, body, call, meta.global_limit, aborted, ctx, snap).await {
            match verdict {
                Verdict::Allow { upstream, downstream } => {
                    callouts::allow(&mut self.out, &mut disposition, &upstream, downstream)
                }
                Verdict::Deny { status, headers, body, details } => {
                    self.out.clear();
                    let answer = Verdict::answer(&headers, status, &body, &meta);
                    let status = encode(&mut self.out, &answer, Ending { close: false, http10: false });
                    disposition = Disposition::Local { answer: status, close: false, details };
                    fault = Injected::default();
                }
            }
        }
        // Envoy's fault filter: the delay first, then the abort, before any upstream is asked.
        if let Some(delay) = fault.delay {
            exchange::sleep(delay).await;
        }
        let disposition = match fault.abort {
            Some(abort) => {
                self.out.clear();
                let end = Ending { close: false, http10: false };
                let status = encode(&mut self.out, &local::fault_abort(abort, meta.grpc), end);
                Disposition::Local { answer: status, close: false, details: FAULT_ABORT }
            }
            None => disposition,
        };
        match disposition {
            Disposition::Local { answer: status, details, .. } => {
                self.account.note_local(&ctx.stats, status, &self.out, local_flag(details), details);
                self.send_local(respond);
            }
            Disposition::Forward { route, dest, extras } => {
                let lent = RefCell::new(lent);
                let mut exchange = Exchange {
                    client: H2Client::new(&lent, respond, meta.grpc),
                    ctx,
                    out: &mut self.out,
                    account: &mut self.account,
                    peer: peer.borrow().conn.peer,
                    max_request_duration: ctx.limits.max_request_duration,
                };
                let forwarded = exchange.forward(snap, meta, route, dest, extras).await;
                self.streamed = lent.borrow().streamed;
                exchange.account.tally.saw(exchange.client.grpc_seen());
                match forwarded {
                    Forwarded::Done { .. } => {}
                    // A WebSocket's extended CONNECT that the upstream took: its bytes both
                    // ways as the stream's DATA.
                    Forwarded::Upgraded(upstream) => exchange.client.tunnel(*upstream).await,
                    Forwarded::Cut => exchange.client.cut(),
                    Forwarded::Failed(err) => {
                        drop(exchange);
                        self.answer_error(&err, meta.grpc, respond).await;
                    }
                }
            }
        }
    }

    /// Answers a failure before any response byte went out, as a gRPC answer to a `grpc`
    /// request.
    async fn answer_error(&mut self, err: &ProxyError, grpc: bool, respond: &mut SendResponse<Bytes>) {
        tracing::debug!(error = %err, "answering an error on an h2 stream");
        let answer = local::failure(err, grpc);
        let (flag, details) = err.log_fields();
        self.out.clear();
        let status = encode(&mut self.out, &answer, Ending { close: false, http10: false });
        self.account.note_local(&self.ctx.stats, status, &self.out, flag, details);
        self.send_local(respond);
    }

    /// Sends the gateway's own answer that `out` holds (as HTTP/1.1) on the stream. Its body is
    /// small and whole: queued at once, whatever the window (h2 sends it as the window opens).
    fn send_local(&mut self, respond: &mut SendResponse<Bytes>) {
        self.account.tally.sent += self.out.len() as u64;
        let Some((response, len)) = response_of(&self.out) else {
            return respond.send_reset(Reason::INTERNAL_ERROR);
        };
        let body = &self.out[len..];
        match respond.send_response(response, body.is_empty()) {
            Ok(mut stream) if !body.is_empty() => {
                let _ = stream.send_data(Bytes::copy_from_slice(body), true);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "h2 stream gone before its answer"),
        }
    }
}
