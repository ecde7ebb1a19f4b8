//! The per-connection HTTP/1.1 loop: read a request, route it on the worker's snapshot, answer
//! it locally or forward it over a pooled upstream connection, stream the answer back.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::AsyncWriteRentExt;

use super::access_log::Record;
use super::affinity;
use super::body::{self, BodyError};
use super::codec::{
    self, BodyFraming, ChunkedDecoder, HeaderSlots, Limits, RequestEdits, ResponseEdits, ResponseWritten, TryLines,
};
use super::fault::{self, Injected};
use super::headers::Merged;
use super::limits::ClientLimits;
use super::local::{self, Ending};
use super::retry::{self, TryFailure};
use super::{cors, mirror};
use crate::admin::{EndpointCounters, HttpCluster};
use crate::buf::ReadBuf;
use crate::duplex::Duplex;
use crate::error::ProxyError;
use crate::snapshot::{
    Cluster, ClusterId, Destination, Observation, RequestInfo, RetryPolicy, Route, RouteAction, RouteDecision, Snapshot,
};
use crate::upstream::{PoolKey, UpstreamConn, UpstreamStream, UPSTREAM_BUF};
use crate::worker::{ConnInfo, WorkerCtx};

/// Response code details of the gateway's own answers, as Envoy logs them.
const NO_ROUTE: &str = "route_not_found";
const DIRECT: &str = "direct_response";
const NO_UPSTREAM: &str = "no_healthy_upstream";
const FAULT_ABORT: &str = "fault_filter_abort";
const CORS_PREFLIGHT: &str = "cors_response";

/// Client read window, and what a read asks room for: most heads fit in one read, a larger one
/// grows it; bodies stream through in bigger reads. Small, as an idle keep-alive connection
/// holds one in its pending read.
const CLIENT_BUF: usize = 2 * 1024;
/// Room for the heads a request writes, allocated when a request begins and given back
/// between requests.
const OUT_BUF: usize = 4 * 1024;
/// Bodies up to this size that already sit in a read window go out in the same write as the
/// head; a request body so sent also stays replayable for a retry.
const INLINE_BODY: usize = 16 * 1024;
/// How long a closing connection may take to send its end of stream.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);
/// Lingering close, as nginx's `lingering_close`: after answering a request whose body it did
/// not read, the gateway reads and discards what the client still sends, for this long and
/// this many bytes at most, before it closes.
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// What the session knows of a connection besides its bytes.
pub struct Downstream {
    pub conn: ConnInfo,
    /// The client socket's idle flag ([`crate::worker::ClientTcp::idle_flag`]), raised while
    /// waiting for the next request so that draining ends the wait.
    pub idle: Rc<Cell<bool>>,
    /// Set when the gateway terminated TLS on the connection.
    pub tls: Option<TlsSession>,
}

/// A terminated TLS connection, as routing and header edits see it.
pub struct TlsSession {
    /// The ClientHello's SNI: each request finds its Gateway server by it, in the snapshot the
    /// request is served with.
    pub sni: Option<Box<str>>,
    /// `x-forwarded-client-cert` for a verified client certificate.
    pub xfcc: Option<Box<str>>,
    /// The latest snapshot in which the connection's server has the TLS rules its handshake was
    /// made under.
    #[allow(clippy::redundant_allocation)] // the worker's handle, see `WorkerCtx::snapshot`
    settled: Rc<Arc<Snapshot>>,
    /// A reload changed those rules: the connection serves its request under the ones it was
    /// made with, then closes.
    stale: bool,
}

impl TlsSession {
    pub fn new(sni: Option<Box<str>>, xfcc: Option<Box<str>>, handshake: Rc<Arc<Snapshot>>) -> Self {
        Self { sni, xfcc, settled: handshake, stale: false }
    }

    /// The snapshot to serve the next request with. A reload applies to the connection at
    /// once unless it changed its server's TLS rules (another mode, pins, versions or suites;
    /// see `Server::continues`): a client admitted under the old rules must not go on under
    /// the new, so the request is served with the snapshot the connection was made under,
    /// and the connection then ends, as Envoy drains the connections of a changed filter chain.
    #[allow(clippy::redundant_allocation)] // the worker's handle, see `WorkerCtx::snapshot`
    fn follow(&mut self, current: Rc<Arc<Snapshot>>, port: u16) -> Rc<Arc<Snapshot>> {
        if self.stale {
            return self.settled.clone();
        }
        if current.generation == self.settled.generation {
            return current;
        }
        let sni = self.sni.as_deref();
        let now = current.listener(port).and_then(|l| l.server_for_sni(sni));
        let then = self.settled.listener(port).and_then(|l| l.server_for_sni(sni));
        match (now, then) {
            (Some(now), Some(then)) if now.continues(then) => {
                self.settled = current.clone();
                current
            }
            _ => {
                self.stale = true;
                self.settled.clone()
            }
        }
    }
}

/// Serves one client connection until it closes, errs, or the worker drains.
pub async fn serve_connection<S>(client: S, downstream: Downstream, ctx: Rc<WorkerCtx>)
where
    S: Duplex,
{
    let ctx_limits = ctx.limits;
    let Downstream { conn, idle, tls } = downstream;
    let mut session = Session {
        client,
        idle,
        peer: Peer { conn, ip: conn.peer.ip().to_string(), tls },
        log: ctx.access_log.is_some().then(Box::default),
        ctx,
        rb: ReadBuf::with_capacity(CLIENT_BUF),
        out: Vec::new(),
        limits: ctx_limits,
        head_deadline: Some(Instant::now() + ctx_limits.request_headers_timeout),
        response_started: false,
        tally: Tally::default(),
    };
    let mut linger = false;
    loop {
        // Between requests the connection waits here, outside the request's state (boxed, and
        // only while a request is under way), so that an idle connection holds little more
        // than its session and read buffer.
        if session.rb.is_empty() && !session.await_request().await {
            break;
        }
        match Box::pin(session.serve_one()).await {
            Next::KeepAlive => continue,
            Next::Close => break,
            Next::Linger => {
                linger = true;
                break;
            }
            Next::Upgrade(upstream) => {
                // Boxed, as the request is: its state would otherwise size every connection.
                Box::pin(super::tunnel::run(session.client, session.rb, *upstream)).await;
                return;
            }
        }
    }
    // Over TLS this is the close_notify that tells a close-delimited answer's end from a cut
    // connection (RFC 8446 §6.1); bounded, as a client that reads nothing would never take it.
    let _ = monoio::time::timeout(CLOSE_NOTIFY_WAIT, session.client.shutdown()).await;
    if linger {
        session.linger().await;
    }
}

/// What to do with the client connection after one exchange.
enum Next {
    KeepAlive,
    Close,
    /// Close, the answer having gone out (saying `connection: close`) before the request body
    /// was read: the close lingers ([`Session::linger`]).
    Linger,
    /// The upstream switched protocols (WebSocket): the two connections become a tunnel.
    Upgrade(Box<UpstreamConn>),
}

/// What a parsed response head decided, kept once the head's borrow ends.
enum ResponseStart {
    /// A 1xx other than 101: passed on (`forward`) or dropped, then the next head is read.
    Interim { head_len: usize, forward: bool },
    /// `out` holds the client's head.
    Final { status: u16, head_len: usize, framing: BodyFraming, keep_alive: bool, written: ResponseWritten },
}

/// How a response relay ended.
enum Relayed {
    Done { next: Next, reusable: bool },
    Upgraded,
}

struct Session<S> {
    client: S,
    /// See [`Downstream::idle`].
    idle: Rc<Cell<bool>>,
    peer: Peer,
    ctx: Rc<WorkerCtx>,
    rb: ReadBuf,
    /// Reused for every head written, either direction.
    out: Vec<u8>,
    limits: ClientLimits,
    /// When the head being awaited must be complete: set from the connection's start for the
    /// first request, from its first byte for a later one; `None` while idle between requests.
    head_deadline: Option<Instant>,
    /// The request being served, as the access log tells it; `None` without `--access-log`.
    /// Boxed: a connection without the log should not carry its room.
    log: Option<Box<Record>>,
    /// A response head (final or interim) of the current request reached the client: a
    /// failure can then only close the connection, and nothing is retried.
    response_started: bool,
    /// The current request as Istio's metrics count it.
    tally: Tally,
}

/// What Istio's standard metrics need of one request, gathered whether or not the access log
/// is on: plain numbers, no strings.
#[derive(Default)]
struct Tally {
    /// When the head was parsed; `None` until then (nothing to count).
    began: Option<Instant>,
    status: u16,
    flags: &'static str,
    /// The cluster the request went to (in the snapshot it was served with).
    cluster: Option<ClusterId>,
    /// Bytes on the wire, heads included, as Istio's request and response sizes count them.
    received: u64,
    sent: u64,
    /// The last try failed in a way the retry policy retries, with no retry left.
    retries_exhausted: bool,
}

impl Tally {
    /// The response flags, with Envoy's URX where retries ran out (in Envoy's flag order).
    fn flags(&self) -> &'static str {
        match (self.retries_exhausted, self.flags) {
            (false, flags) => flags,
            (true, "UF") => "UF,URX",
            (true, "UC") => "UC,URX",
            (true, "UT") => "UT,URX",
            (true, "UPE") => "URX,UPE",
            (true, "-") => "URX",
            (true, other) => other,
        }
    }
}

/// The client, as routing and header edits see it.
///
/// Every client is external, as Envoy 1.40 judges clients at an Istio gateway: istiod sets
/// `use_remote_address` on gateway connection managers and no `internal_address_config`
/// (unless `ENABLE_HCM_INTERNAL_NETWORKS`), and since Envoy 1.33 (its runtime guard
/// `explicit_internal_address_config`, removed in 1.36) no address is internal without one,
/// private and loopback ones included. So a request always gets `x-envoy-external-address`
/// and a fresh `x-request-id`, never `x-envoy-internal`.
struct Peer {
    conn: ConnInfo,
    /// Formatted once per connection for `x-forwarded-for`.
    ip: String,
    /// `Some` on an HTTPS connection.
    tls: Option<TlsSession>,
}

impl Peer {
    /// See [`TlsSession::follow`].
    fn stale(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.stale)
    }
}

/// What the head told us, kept once the head's borrow of the read window ends.
#[derive(Clone, Copy)]
struct ReqMeta {
    head_len: usize,
    framing: BodyFraming,
    keep_alive: bool,
    http10: bool,
    is_head: bool,
    expect_continue: bool,
    upgrade: bool,
    /// The session-affinity hash, when the chosen cluster hashes and the request has the key.
    affinity: Option<u64>,
}

/// The routing outcome, decided while the head is borrowed.
enum Plan<'s> {
    /// `out` holds a complete local answer with this status.
    Local { status: u16, close: bool, details: &'static str },
    /// `out` holds the upstream request head.
    Forward { route: &'s Route, dest: &'s Destination, extras: Extras },
}

/// What a forwarded request carries beside its head, decided while the head is borrowed.
#[derive(Default)]
struct Extras {
    /// Response lines CORS adds (the allowed Origin echoed back).
    cors: Vec<(&'static str, String)>,
    /// Copies for the route's mirrors, heads only so far.
    mirrors: Vec<mirror::Copy>,
    /// The session-affinity cookie generated for this request.
    set_cookie: Option<String>,
    /// The try lines the head ends with (the first try's).
    try_lines: TryLines,
}

/// What `out` holds for the upstream: the head, ending at `head_end` with the try lines
/// `lines` (a retry rewrites them), and after it the whole body when `inline`, which makes
/// the request replayable.
#[derive(Clone, Copy)]
struct Outgoing {
    head_end: usize,
    lines: TryLines,
    inline: bool,
}

impl<S: Duplex> Session<S> {
    /// Serves one request, then counts it and logs it when `--access-log` is on.
    async fn serve_one(&mut self) -> Next {
        // The snapshot is held here so that the request is counted against the cluster it
        // was served by, even across a reload.
        let mut snap = self.ctx.snapshot();
        if let Some(tls) = &mut self.peer.tls {
            snap = tls.follow(snap, self.peer.conn.listener_port);
        }
        let next = self.serve_request(&snap).await;
        let streamed = self.rb.take_written();
        self.tally.received += streamed;
        // One clock reading serves the metrics and the log, and none is taken for neither.
        let counted = cfg!(feature = "istio-metrics") || self.log.is_some();
        let elapsed = self.tally.began.filter(|_| counted).map(|began| began.elapsed());
        #[cfg(feature = "istio-metrics")]
        if let Some(elapsed) = elapsed {
            let t = &self.tally;
            let cluster = t.cluster.map(|id| snap.cluster(id));
            self.ctx.with_istio_series(cluster, t.status, t.flags(), |s| {
                s.requests.inc();
                s.duration.record(elapsed.as_micros() as u64);
                s.request_bytes.record(t.received * 1000);
                s.response_bytes.record(t.sent * 1000);
            });
        }
        if let (Some(sink), Some(r)) = (&self.ctx.access_log, &mut self.log) {
            if r.start.is_some() {
                r.bytes_received += streamed;
                r.flags = self.tally.flags();
                r.duration_ms = elapsed.map_or(0, |d| d.as_millis() as u64);
                sink.log(r, self.ctx.draining());
            }
            r.reset();
        }
        next
    }

    /// Waits for the first bytes of the next request, up to the head deadline (first request)
    /// or the idle timeout, cut short when draining starts. False: the connection is done.
    async fn await_request(&mut self) -> bool {
        // Nothing to write while idle.
        self.out = Vec::new();
        let deadline = self.head_deadline.unwrap_or_else(|| Instant::now() + self.limits.idle_timeout);
        // Draining may have begun before the flag went up: then there is nothing to wait for.
        if self.ctx.draining() {
            return false;
        }
        self.idle.set(true);
        let filled = monoio::time::timeout_at(deadline.into(), self.rb.fill(&mut self.client, CLIENT_BUF)).await;
        self.idle.set(false);
        matches!(filled, Ok(Ok(n)) if n > 0)
    }

    /// Reads and discards what the client still sends, once the connection's write side is shut
    /// down after an answer that left the request body unread, until the client closes or
    /// [`LINGER_TIME`] or [`LINGER_BYTES`] runs out. Closing a socket with unread bytes sends
    /// a reset, which can destroy the answer before the client has read it.
    async fn linger(&mut self) {
        let deadline = Instant::now() + LINGER_TIME;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            self.rb.clear();
            match monoio::time::timeout_at(deadline.into(), self.rb.fill(&mut self.client, CLIENT_BUF)).await {
                Ok(Ok(n)) if n > 0 => discarded += n,
                _ => return,
            }
        }
    }

    async fn serve_request(&mut self, snap: &Arc<Snapshot>) -> Next {
        self.out.reserve(OUT_BUF);
        self.response_started = false;
        self.tally = Tally::default();
        let (meta, plan, fault) = loop {
            // The header slots must not live across an await: they would sit in every
            // connection's future.
            let parsed = {
                let mut slots = HeaderSlots::new();
                let data = self.rb.data();
                codec::parse_request(data, &mut slots, &self.limits.head).map(|head| {
                    head.map(|head| {
                        let body_here = buffered_body_len(&data[head.head_len..], head.framing, usize::MAX).is_some();
                        let log = self.log.as_deref_mut();
                        plan(snap, &head, body_here, &mut self.out, &self.ctx, &self.peer, log)
                    })
                })
            };
            match parsed {
                Ok(Some(planned)) => break planned,
                Ok(None) => {
                    // A head under way has a deadline: from the connection's start for the
                    // first request, from its first byte for a later one.
                    let deadline =
                        *self.head_deadline.get_or_insert_with(|| Instant::now() + self.limits.request_headers_timeout);
                    match monoio::time::timeout_at(deadline.into(), self.rb.fill(&mut self.client, CLIENT_BUF)).await {
                        Err(_) => {
                            tracing::debug!(peer = %self.peer.conn.peer, "request head not complete in time");
                            self.ctx.stats.downstream_rq_total.inc();
                            return self.answer_error(&ProxyError::RequestHeadersTimeout, Ending::CLOSE).await;
                        }
                        Ok(Ok(0) | Err(_)) => {
                            // A partial head then EOF: nobody to answer.
                            tracing::debug!(peer = %self.peer.conn.peer, "client closed mid-head");
                            return Next::Close;
                        }
                        Ok(Ok(_)) => {}
                    }
                }
                Err(e) => {
                    self.ctx.stats.downstream_rq_total.inc();
                    return self.answer_error(&ProxyError::BadRequest(e), Ending::CLOSE).await;
                }
            }
        };
        self.ctx.stats.downstream_rq_total.inc();
        self.rb.consume(meta.head_len);
        self.head_deadline = None;
        let began = Instant::now();
        self.tally.began = Some(began);
        self.tally.received = meta.head_len as u64;
        if let (Some(sink), Some(r)) = (&self.ctx.access_log, &mut self.log) {
            r.start = Some(sink.wall(began));
        }
        // Envoy's fault filter: the delay first, then the abort, before any upstream is asked.
        if let Some(delay) = fault.delay {
            monoio::time::sleep(delay).await;
        }
        let plan = match fault.abort {
            Some(status) => {
                let unread = buffered_body_len(self.rb.data(), meta.framing, usize::MAX).is_none();
                let end = Ending { close: !meta.keep_alive || self.closing() || unread, http10: meta.http10 };
                self.out.clear();
                local::simple(&mut self.out, status, fault::ABORT_BODY, end);
                Plan::Local { status, close: end.close, details: FAULT_ABORT }
            }
            None => plan,
        };
        let next = match plan {
            Plan::Local { status, close, details } => {
                let flag = match details {
                    NO_ROUTE => "NR",
                    FAULT_ABORT => "FI",
                    _ => "-",
                };
                self.note_status(status, flag, details);
                // An unread body would desync the connection: skip it if it is all here, else
                // the answer said `connection: close` and the close lingers.
                let body_done = self.skip_buffered_body(meta.framing);
                match self.write_out().await {
                    Err(_) => Next::Close,
                    Ok(()) if !body_done => Next::Linger,
                    Ok(()) if close => Next::Close,
                    Ok(()) => Next::KeepAlive,
                }
            }
            Plan::Forward { route, dest, extras } => self.forward(snap, meta, route, dest, extras).await,
        };
        match next {
            Next::KeepAlive if self.closing() => Next::Close,
            other => other,
        }
    }

    /// The connection takes no request after this one: the gateway drains, or the TLS
    /// settings it was made under are gone.
    fn closing(&self) -> bool {
        self.ctx.draining() || self.peer.stale()
    }

    /// Consumes a request body that already sits whole in the read window; false when it does
    /// not (the connection must then close after a local answer).
    fn skip_buffered_body(&mut self, framing: BodyFraming) -> bool {
        let len = buffered_body_len(self.rb.data(), framing, usize::MAX);
        if let Some(len) = len {
            self.rb.consume(len);
        }
        len.is_some()
    }

    /// Answers a failure before any response byte went out; the connection then ends as `end`
    /// says.
    async fn answer_error(&mut self, err: &ProxyError, end: Ending) -> Next {
        tracing::debug!(peer = %self.peer.conn.peer, error = %err, "answering an error");
        let (status, body) = err.answer();
        let (flag, details) = err.log_fields();
        self.note_status(status, flag, details);
        self.out.clear();
        // Envoy marks answers its circuit breakers gave, so clients can tell them from the upstream's.
        let overloaded: &[(&str, &str)] =
            if matches!(err, ProxyError::Overflow) { &[("x-envoy-overloaded", "true")] } else { &[] };
        local::answer(&mut self.out, status, overloaded, body.as_bytes(), false, end);
        if self.write_out().await.is_err() || end.close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    async fn forward(
        &mut self,
        snap: &Arc<Snapshot>,
        meta: ReqMeta,
        route: &Route,
        dest: &Destination,
        extras: Extras,
    ) -> Next {
        let Some(cluster) = dest.cluster else {
            return self.fail_request(meta, &ProxyError::NoCluster).await;
        };
        self.tally.cluster = Some(cluster);
        if let Some(r) = &mut self.log {
            r.cluster(&snap.cluster(cluster).name);
        }
        let retries = &route.policy.retries;
        // A small body is worth holding whole when a retry or a mirror may need it again.
        let replay_wanted = !extras.mirrors.is_empty()
            || (retries.attempts > 0
                && (retry::retries_statuses(retries) || retry::retries(retries, TryFailure::Reset)));
        if replay_wanted && self.hold_small_body(meta).await.is_err() {
            return Next::Close;
        }
        // Small bodies already read go out with the head, and stay replayable.
        let head_end = self.out.len();
        let inline = inline_body(&mut self.rb, meta.framing, &mut self.out);
        if let Some(n) = inline {
            self.tally.received += n;
            if let Some(r) = &mut self.log {
                r.bytes_received = n;
            }
        }
        let inline = inline.is_some();
        if inline {
            for mut copy in extras.mirrors {
                copy.bytes.extend_from_slice(&self.out[head_end..]);
                mirror::send(&self.ctx, snap, copy, route.policy.timeout);
            }
        } else if !extras.mirrors.is_empty() {
            tracing::debug!(peer = %self.peer.conn.peer, "request body too large to hold for a mirror: not mirrored");
        }
        let mut response = Merged::new(&[], &[&dest.headers.response, &route.policy.headers.response]);
        // CORS lines replace any the backend sent (Envoy's `setInline`).
        response.remove.extend(extras.cors.iter().map(|(n, _)| *n));
        response.add.extend(extras.cors.iter().map(|(n, v)| (*n, v.as_str())));
        response.add.extend(extras.set_cookie.as_deref().map(|c| ("set-cookie", c)));
        // The route's timeout, or what is left of the request's maximum duration if sooner.
        let left = self
            .limits
            .max_request_duration
            .map(|d| d.saturating_sub(self.tally.began.map_or(Duration::ZERO, |b| b.elapsed())));
        let (timeout, expired) = match (route.policy.timeout, left) {
            (Some(t), Some(l)) if l < t => (Some(l), ProxyError::DurationTimeout),
            (None, Some(l)) => (Some(l), ProxyError::DurationTimeout),
            (t, _) => (t, ProxyError::UpstreamTimeout),
        };
        let outgoing = Outgoing { head_end, lines: extras.try_lines, inline };
        let exchange = self.exchange(snap, cluster, route, meta, outgoing, &response);
        let result = match timeout {
            Some(t) => monoio::time::timeout(t, exchange).await.ok(),
            None => Some(exchange.await),
        };
        let result = result.unwrap_or_else(|| Err(self.failure(expired)));
        match result {
            Ok(next) => next,
            Err(Failure { err, response_started }) => {
                tracing::debug!(peer = %self.peer.conn.peer, error = %err, "request failed");
                // The gateway's answer for a failed try is the cluster's too (Envoy's router
                // charges an abort to `upstream_rq_<code>`); a failure path, so the lookup is
                // no concern.
                if !response_started && err.observation().is_some() {
                    self.ctx.http_cluster(&snap.cluster(cluster).name).record_status(err.answer().0);
                }
                if matches!(err, ProxyError::DownstreamIo(_)) {
                    // The client went away: Envoy's DC, whatever status was under way.
                    self.tally.flags = "DC";
                }
                if response_started {
                    Next::Close
                } else {
                    self.fail_request(meta, &err).await
                }
            }
        }
    }

    /// Reads the rest of a small request body into the read window (never more than
    /// `INLINE_BODY`), so the request can be sent again. Not when the client waits for
    /// `100 Continue`: it sends nothing before the upstream asks.
    async fn hold_small_body(&mut self, meta: ReqMeta) -> std::io::Result<()> {
        let small = match meta.framing {
            BodyFraming::ContentLength(n) => n <= INLINE_BODY as u64,
            BodyFraming::Chunked => true,
            BodyFraming::None | BodyFraming::UntilClose => false,
        };
        if !small || meta.expect_continue {
            return Ok(());
        }
        while buffered_body_len(self.rb.data(), meta.framing, INLINE_BODY).is_none() && self.rb.len() <= INLINE_BODY {
            if self.rb.fill(&mut self.client, CLIENT_BUF).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// A failure now: after the response began, only closing the connection can tell.
    fn failure(&self, err: ProxyError) -> Failure {
        Failure { err, response_started: self.response_started }
    }

    /// Answers `err`; the client connection survives only when the request body was fully
    /// consumed, and the answer says which.
    async fn fail_request(&mut self, meta: ReqMeta, err: &ProxyError) -> Next {
        let body_done = self.skip_buffered_body(meta.framing);
        let close = !body_done || !meta.keep_alive || self.closing();
        match self.answer_error(err, Ending { close, http10: meta.http10 }).await {
            Next::Close if !body_done => Next::Linger,
            next => next,
        }
    }

    /// Judges a response head; for a final one, writes the client's head into `out` and notes
    /// the status.
    fn start_response(
        &mut self,
        head: &codec::ResponseHead<'_>,
        meta: ReqMeta,
        sent_at: Instant,
        response: &Merged<'_>,
    ) -> Result<ResponseStart, Failure> {
        let (status, head_len) = (head.status, head.head_len);
        if head.is_informational() && !head.is_switching_protocols() {
            // Interim answers (103 Early Hints…) pass through; 100 was answered by us.
            return Ok(ResponseStart::Interim { head_len, forward: !head.is_continue() && !meta.http10 });
        }
        if head.is_switching_protocols() && !meta.upgrade {
            return Err(Failure::before(ProxyError::UnexpectedUpgrade));
        }
        self.out.clear();
        let service_time = sent_at.elapsed().as_millis() as u64;
        let close = !meta.keep_alive || self.closing();
        // A response without `date` gets the gateway's, as Envoy's connection manager adds one.
        let written = local::date(|date| {
            let edits = ResponseEdits {
                upstream_service_time_ms: Some(service_time),
                date: Some(date),
                close,
                http10_client: meta.http10,
                add: &response.add,
                remove: &response.remove,
                ..ResponseEdits::default()
            };
            codec::write_response_head(&mut self.out, head, &edits)
        });
        self.note_status(status, "-", "via_upstream");
        if let Some(r) = &mut self.log {
            r.upstream_service_time = Some(service_time);
        }
        Ok(ResponseStart::Final { status, head_len, framing: head.framing, keep_alive: head.keep_alive, written })
    }

    /// Counts the status, and notes it with Envoy's response flag and details for the log.
    fn note_status(&mut self, status: u16, flag: &'static str, details: &'static str) {
        self.ctx.stats.record_status(status);
        // A request refused before its head parsed is counted too.
        self.tally.began.get_or_insert_with(Instant::now);
        self.tally.status = status;
        self.tally.flags = flag;
        if let Some(r) = &mut self.log {
            r.answered(status, details);
        }
    }

    /// Writes `out` whole to the client.
    async fn write_out(&mut self) -> std::io::Result<()> {
        self.tally.sent += self.out.len() as u64;
        let out = std::mem::take(&mut self.out);
        let (res, out) = self.client.write_all(out).await;
        self.out = out;
        res.map(drop)
    }

    /// Connect, send, and relay the response, trying again as the route's retry policy says;
    /// `out` holds the request as `outgoing` tells.
    async fn exchange(
        &mut self,
        snap: &Snapshot,
        cluster: ClusterId,
        route: &Route,
        meta: ReqMeta,
        mut outgoing: Outgoing,
        response: &Merged<'_>,
    ) -> Result<Next, Failure> {
        let (retries, inline) = (&route.policy.retries, outgoing.inline);
        let began = Instant::now();
        let cl = snap.cluster(cluster);
        let policy = &cl.policy;
        // The slot of the retry in flight, if any, under the cluster's `maxRetries`.
        let mut retry_slot = None;
        let statuses_retried = inline && retry::retries_statuses(retries);
        let mut tried: [usize; 8] = [usize::MAX; 8];
        let mut attempt = 0usize;
        let ctx = self.ctx.clone();
        let cluster_stats = ctx.http_cluster(&cl.name);
        let upstream = &ctx.upstream;
        loop {
            let Some(mut pick) =
                upstream.balancer.pick(snap, cluster, &tried[..attempt.min(8)], ctx.random(), meta.affinity)
            else {
                return Err(Failure::before(ProxyError::NoHealthyUpstream));
            };
            let addr = cl.endpoints[pick.endpoint].addr;
            if let Some(r) = &mut self.log {
                r.upstream(addr);
            }
            let attempts_left = attempt < retries.attempts as usize;
            // `maxRetries` bounds the retries in flight on the whole cluster (Envoy's retry
            // circuit breaker): with none free, this try is the last. A retry's own slot passes
            // to the next retry.
            let retry_left = attempts_left && (retry_slot.is_some() || cl.retries.has_room(policy.max_retries));
            let try_once = Try {
                endpoint: pick.endpoint,
                retry_statuses: (statuses_retried && retry_left).then_some(retries),
                counters: &pick.counters,
                cluster: cl,
                stats: &cluster_stats,
            };
            let tried_once = self.try_endpoint(try_once, meta, inline, response);
            let result = match retries.per_try_timeout {
                Some(t) => monoio::time::timeout(t, tried_once)
                    .await
                    .unwrap_or_else(|_| Err(self.failure(ProxyError::PerTryTimeout))),
                None => tried_once.await,
            };
            let endpoint = pick.endpoint;
            // A relayed status was told to outlier detection as its head arrived.
            pick.settle(match &result {
                Ok(_) => None,
                Err(f) => f.err.observation(),
            });
            drop(pick);
            match result {
                // A try cut short by its timeout while writing took the request with it: then
                // there is nothing left to send again.
                Err(f)
                    if retry_left
                        && !f.response_started
                        && retried(retries, &f.err, inline)
                        && self.out.len() >= outgoing.head_end =>
                {
                    // The retry that led here is over: its slot goes back before the next is taken.
                    drop(retry_slot.take());
                    let Some(slot) = cl.retries.try_acquire(policy.max_retries) else {
                        return Err(f);
                    };
                    retry_slot = Some(slot);
                    tracing::debug!(%addr, error = %f.err, "retrying on another endpoint");
                    tried[attempt.min(7)] = endpoint;
                    attempt += 1;
                    cluster_stats.rq_retry.inc();
                    monoio::time::sleep(retry::backoff(attempt as u32, ctx.random())).await;
                    // Envoy's router stamps each retry with its number and the time left.
                    let lines = TryLines {
                        attempt: Some(attempt as u32 + 1),
                        expected_timeout_ms: retry::expected_timeout_ms(
                            route.policy.timeout,
                            retries.per_try_timeout,
                            began.elapsed(),
                        ),
                    };
                    outgoing.head_end =
                        codec::rewrite_try_lines(&mut self.out, outgoing.head_end, &outgoing.lines, &lines);
                    outgoing.lines = lines;
                }
                other => {
                    // The last try ended as a retry would have been asked for: Envoy's URX.
                    self.tally.retries_exhausted = retries.attempts > 0
                        && !attempts_left
                        && match &other {
                            Ok(_) => statuses_retried && retry::status_retried(retries, self.tally.status),
                            Err(f) => !f.response_started && retried(retries, &f.err, inline),
                        };
                    return other;
                }
            }
        }
    }

    async fn try_endpoint(
        &mut self,
        at: Try<'_>,
        meta: ReqMeta,
        inline: bool,
        response: &Merged<'_>,
    ) -> Result<Next, Failure> {
        let ctx = self.ctx.clone();
        let stats = &ctx.stats;
        let mut conn = match ctx.upstream.pools.take(at.key()) {
            Some(c) => {
                stats.upstream_cx_reused.inc();
                c
            }
            None => new_connection(&at, &ctx).await?,
        };
        if let Some(r) = &mut self.log {
            // Asked of the kernel once per connection, not per request.
            if conn.local.is_none() {
                conn.local = conn.stream.local_addr().ok();
            }
            r.upstream_local = conn.local;
        }
        loop {
            at.stats.rq_total.inc();
            let sent_at = Instant::now();
            // A reused connection the upstream closed meanwhile fails on this write or with an
            // EOF before any response byte: the request (head and inline body, still in `out`)
            // is then replayed once on a fresh connection.
            let replayable = conn.reused && inline;
            let out = std::mem::take(&mut self.out);
            let (res, out) = conn.stream.write_all(out).await;
            self.out = out;
            if let Err(e) = res {
                if replayable {
                    drop(conn);
                    conn = new_connection(&at, &ctx).await?;
                    continue;
                }
                return Err(Failure::before(ProxyError::UpstreamIo(e)));
            }
            // Whether the whole request went out: not when the upstream answered first.
            let mut sent_whole = true;
            if !inline {
                if meta.expect_continue {
                    let (res, _) = self.client.write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await;
                    res.map_err(|e| Failure::before(ProxyError::DownstreamIo(e)))?;
                }
                sent_whole = self.stream_request_body(&mut conn, meta.framing).await?;
            }
            // The client's unread body would be taken for its next request: the answer ends the
            // connection, and says so.
            let relayed_meta = ReqMeta { keep_alive: meta.keep_alive && sent_whole, ..meta };
            return match self.relay_response(&mut conn, relayed_meta, sent_at, &at, response).await {
                Err(f) if replayable && f.is_reset_before_response() => {
                    drop(conn);
                    conn = new_connection(&at, &ctx).await?;
                    continue;
                }
                Err(f) => Err(f),
                Ok(Relayed::Done { next, reusable }) => {
                    conn.requests += 1;
                    let policy = &at.cluster.policy;
                    let quota = policy.max_requests_per_connection;
                    if reusable && sent_whole && (quota == 0 || conn.requests < quota) {
                        ctx.upstream.pools.put(conn, policy.http_idle_timeout);
                    }
                    Ok(if sent_whole { next } else { Next::Linger })
                }
                Ok(Relayed::Upgraded) => Ok(Next::Upgrade(Box::new(conn))),
            };
        }
    }

    /// Streams the request body to the upstream, unless the upstream answers (or closes)
    /// first, as a server refusing an upload with 413 or 401 does: then `Ok(false)`, the rest
    /// of the body stays unread, and neither connection may carry another request.
    async fn stream_request_body(&mut self, conn: &mut UpstreamConn, framing: BodyFraming) -> Result<bool, Failure> {
        let watcher = match conn.watcher() {
            Ok(w) => w,
            Err(e) => return Err(Failure::before(ProxyError::UpstreamIo(e))),
        };
        let copy = async {
            match framing {
                BodyFraming::ContentLength(n) => {
                    body::copy_exact(&mut self.client, &mut self.rb, &mut conn.stream, n).await
                }
                BodyFraming::Chunked => {
                    let mut dec = ChunkedDecoder::new();
                    body::copy_chunked(&mut self.client, &mut self.rb, &mut conn.stream, &mut dec).await
                }
                _ => Ok(()),
            }
        };
        let res = match watcher {
            Some(watcher) => monoio::select! {
                res = copy => res,
                _ = watcher.readable(false) => return Ok(false),
            },
            None => copy.await,
        };
        res.map(|()| true).map_err(|e| match e {
            BodyError::Source(e) => Failure::before(ProxyError::DownstreamIo(e)),
            BodyError::Framing(e) => Failure::before(ProxyError::BadRequest(e)),
            BodyError::Sink(e) => Failure::before(ProxyError::UpstreamIo(e)),
        })
    }

    /// Reads the response head, relays head and body. Returns the client's fate and whether
    /// the upstream connection may go back to the pool.
    /// With `at.retry_statuses`, a final response whose status that policy retries is not
    /// relayed: it fails the try with [`ProxyError::RetriableStatus`] (`out` still holds the
    /// request then). A relayed final status reaches outlier detection before the client sees
    /// it, as Envoy's router reports it on the upstream's headers: a client holding the head
    /// that ejects an endpoint finds it ejected.
    async fn relay_response(
        &mut self,
        conn: &mut UpstreamConn,
        meta: ReqMeta,
        sent_at: Instant,
        at: &Try<'_>,
        response: &Merged<'_>,
    ) -> Result<Relayed, Failure> {
        loop {
            // As for requests: the parsed head and its slots end before any await.
            let start = {
                let mut slots = HeaderSlots::new();
                match codec::parse_response(conn.buf.data(), &mut slots, meta.is_head, &Limits::default()) {
                    Ok(Some(head))
                        if !head.is_informational()
                            && at.retry_statuses.is_some_and(|p| retry::status_retried(p, head.status)) =>
                    {
                        return Err(Failure::before(ProxyError::RetriableStatus(head.status)));
                    }
                    Ok(Some(head)) => Some(self.start_response(&head, meta, sent_at, response)?),
                    Ok(None) => None,
                    Err(e) => return Err(Failure::before(ProxyError::UpstreamProtocol(e))),
                }
            };
            let (status, head_len, framing, upstream_keep_alive, written) = match start {
                None => {
                    let had = !conn.buf.is_empty();
                    match conn.buf.fill(&mut conn.stream, UPSTREAM_BUF).await {
                        Ok(0) if had => {
                            return Err(Failure::before(ProxyError::UpstreamIo(
                                std::io::ErrorKind::UnexpectedEof.into(),
                            )))
                        }
                        Ok(0) => return Err(Failure::before(ProxyError::ResetBeforeResponse)),
                        Ok(_) => continue,
                        Err(_) if !had => return Err(Failure::before(ProxyError::ResetBeforeResponse)),
                        Err(e) => return Err(Failure::before(ProxyError::UpstreamIo(e))),
                    }
                }
                Some(ResponseStart::Interim { head_len, forward: true }) => {
                    self.response_started = true;
                    conn.buf
                        .write_to(&mut self.client, head_len)
                        .await
                        .map_err(|e| Failure::started(ProxyError::DownstreamIo(e)))?;
                    continue;
                }
                Some(ResponseStart::Interim { head_len, forward: false }) => {
                    conn.buf.consume(head_len);
                    continue;
                }
                Some(ResponseStart::Final { status, head_len, framing, keep_alive, written }) => {
                    at.cluster.observe(at.endpoint, Observation::Status(status));
                    at.stats.record_status(status);
                    (status, head_len, framing, keep_alive, written)
                }
            };
            let (dechunk, close_client) = (written.dechunk, written.close);
            conn.buf.consume(head_len);
            self.response_started = true;
            if status == 101 {
                self.write_out().await.map_err(|e| Failure::started(ProxyError::DownstreamIo(e)))?;
                return Ok(Relayed::Upgraded);
            }
            // A small body already read goes out in the same write as the head: one segment
            // and one wake-up of the client instead of two.
            let body_inline = if dechunk { None } else { inline_body(&mut conn.buf, framing, &mut self.out) };
            self.write_out().await.map_err(|e| Failure::started(ProxyError::DownstreamIo(e)))?;
            conn.buf.take_written();
            let relayed = match framing {
                _ if body_inline.is_some() => Ok(()),
                BodyFraming::None => Ok(()),
                BodyFraming::ContentLength(n) => {
                    body::copy_exact(&mut conn.stream, &mut conn.buf, &mut self.client, n).await
                }
                BodyFraming::Chunked if dechunk => {
                    super::dechunk::relay(&mut conn.stream, &mut conn.buf, &mut self.client).await
                }
                BodyFraming::Chunked => {
                    let mut dec = ChunkedDecoder::new();
                    body::copy_chunked(&mut conn.stream, &mut conn.buf, &mut self.client, &mut dec).await
                }
                BodyFraming::UntilClose => {
                    body::copy_until_close(&mut conn.stream, &mut conn.buf, &mut self.client).await
                }
            };
            relayed.map_err(|e| {
                Failure::started(match e {
                    BodyError::Sink(e) => ProxyError::DownstreamIo(e),
                    BodyError::Source(e) => ProxyError::UpstreamIo(e),
                    BodyError::Framing(e) => ProxyError::UpstreamProtocol(e),
                })
            })?;
            let streamed = conn.buf.take_written();
            self.tally.sent += streamed;
            if let Some(r) = &mut self.log {
                r.bytes_sent = body_inline.unwrap_or(0) + streamed;
            }
            // Bytes beyond the framed response mean the upstream is confused: never reuse it.
            let reusable = upstream_keep_alive && conn.buf.is_empty() && !matches!(framing, BodyFraming::UntilClose);
            let next = if close_client { Next::Close } else { Next::KeepAlive };
            return Ok(Relayed::Done { next, reusable });
        }
    }
}

/// Routes the request and writes either the local answer or the upstream head into `out`;
/// also draws the route's faults. `body_here`: the request's body (if any) is all read.
fn plan<'s>(
    snap: &'s Snapshot,
    head: &codec::RequestHead<'_>,
    body_here: bool,
    out: &mut Vec<u8>,
    ctx: &WorkerCtx,
    peer: &Peer,
    mut log: Option<&mut Record>,
) -> (ReqMeta, Plan<'s>, Injected) {
    // Envoy's connection manager gives every request its id before routing, so the access log
    // shows one for the gateway's own answers too; a client's own is replaced (see `Peer`).
    let request_id = RequestId::new(ctx.random(), ctx.random(), ctx.random(), ctx.random());
    if let Some(r) = log.as_deref_mut() {
        let sni = peer.tls.as_ref().and_then(|t| t.sni.as_deref());
        r.begin(head, peer.conn.local, peer.conn.peer, &peer.ip, sni, request_id.as_str());
    }
    let mut meta = ReqMeta {
        head_len: head.head_len,
        framing: head.framing,
        keep_alive: head.keep_alive,
        http10: head.version == 0,
        is_head: head.method == "HEAD",
        expect_continue: head.expect_continue,
        upgrade: head.upgrade.is_some(),
        affinity: None,
    };
    let host = head.host().unwrap_or("");
    let scheme = if peer.tls.is_some() { "https" } else { "http" };
    let info = RequestInfo {
        host,
        method: head.method,
        path: head.path(),
        query: head.query(),
        scheme,
        headers: head.headers(),
    };
    // A local answer given before the body is all read ends the connection, and says so.
    let end = Ending { close: !meta.keep_alive || ctx.draining() || peer.stale() || !body_here, http10: meta.http10 };
    let close = end.close;
    out.clear();
    let Some(listener) = snap.listener(peer.conn.listener_port) else {
        // The port was removed by a reload while this connection lived.
        let status = local::not_found(out, Ending { close: true, ..end });
        return (meta, Plan::Local { status, close: true, details: NO_ROUTE }, Injected::default());
    };
    // HTTPS: the routes of the server the connection's SNI picks, in this request's snapshot.
    let routes = match &peer.tls {
        None => Some(&listener.http_routes),
        Some(tls) => listener.server_for_sni(tls.sni.as_deref()).map(|s| &s.routes),
    };
    let decision = routes.map_or(RouteDecision::NoVirtualHost, |r| r.route(&info));
    let (route, block) = match decision {
        RouteDecision::NoVirtualHost | RouteDecision::NoRoute(_) => {
            let plan = Plan::Local { status: local::not_found(out, end), close, details: NO_ROUTE };
            return (meta, plan, Injected::default());
        }
        RouteDecision::HttpsRedirect(_) => {
            let plan = Plan::Local { status: local::https_redirect(out, &info, end), close, details: DIRECT };
            return (meta, plan, Injected::default());
        }
        RouteDecision::Matched { route, block, .. } => (route, block),
    };
    // Envoy's filter order: CORS answers preflights before the fault filter sees them.
    let cors = route.policy.cors.as_ref();
    if let Some(cors::Preflight::Answer(lines)) = cors.map(|c| cors::preflight(c, &info)) {
        let lines: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (*n, &**v)).collect();
        let status = local::answer(out, 200, &lines, b"", false, end);
        return (meta, Plan::Local { status, close, details: CORS_PREFLIGHT }, Injected::default());
    }
    let fault = route.policy.fault.as_ref().map(|f| fault::inject(f, ctx.random(), ctx.random())).unwrap_or_default();
    // Envoy's CORS filter also sees the gateway's own answers: an allowed Origin gets its lines.
    let cors_lines = cors.map(|c| cors::response_headers(c, &info)).unwrap_or_default();
    let response_headers = || {
        let mut lines = Merged::new(&[], &[&route.policy.headers.response]).add;
        lines.retain(|(n, _)| !cors_lines.iter().any(|(c, _)| c == n));
        lines.extend(cors_lines.iter().map(|(n, v)| (*n, &**v)));
        lines
    };
    let plan = match &route.action {
        RouteAction::DirectResponse { status, body } => {
            let status = local::answer(out, *status, &response_headers(), body, meta.is_head, end);
            Plan::Local { status, close, details: DIRECT }
        }
        RouteAction::Redirect(r) => {
            let status = local::redirect(out, r, &info, peer.conn.listener_port, &response_headers(), end);
            Plan::Local { status, close, details: DIRECT }
        }
        RouteAction::Forward(dests) => match dests.pick(ctx.random()) {
            Some(dest) => {
                let affinity = dest
                    .cluster
                    .map(|c| affinity::request_affinity(snap.cluster(c), head, peer.conn.peer))
                    .unwrap_or_default();
                meta.affinity = affinity.hash;
                let path = super::rewrite::path(route, block, &info);
                let base_remove: &[&str] = if meta.expect_continue { &["expect"] } else { &[] };
                let levels = [&dest.headers.request, &route.policy.headers.request];
                // Nothing to merge on most routes: no allocation then.
                let merged = levels.iter().any(|l| !l.is_empty()).then(|| Merged::new(base_remove, &levels));
                let (add, remove, header_authority) = match &merged {
                    Some(m) => (&m.add[..], &m.remove[..], m.authority),
                    None => (&[][..], base_remove, None),
                };
                // `rewrite.authority` wins over a `host` set in `headers`, as istiod orders them.
                let authority = route.policy.rewrite.as_ref().and_then(|r| r.authority.as_deref()).or(header_authority);
                let try_lines = TryLines {
                    attempt: Some(1),
                    expected_timeout_ms: retry::expected_timeout_ms(
                        route.policy.timeout,
                        route.policy.retries.per_try_timeout,
                        Duration::ZERO,
                    ),
                };
                let edits = RequestEdits {
                    path: path.as_deref(),
                    authority,
                    x_forwarded_proto: scheme,
                    x_forwarded_for_append: &peer.ip,
                    request_id: Some(request_id.as_str()),
                    x_envoy_external_address: Some(&peer.ip),
                    x_forwarded_client_cert: peer.tls.as_ref().and_then(|t| t.xfcc.as_deref()),
                    add,
                    remove,
                    keep_alive: true,
                    allow_upgrade: meta.upgrade,
                    try_lines,
                };
                codec::write_request_head(out, head, &edits);
                let extras = Extras {
                    cors: cors_lines.iter().map(|(n, v)| (*n, v.to_string())).collect(),
                    mirrors: if meta.upgrade { Vec::new() } else { mirror_copies(route, head, &edits, ctx) },
                    set_cookie: affinity.set_cookie,
                    try_lines,
                };
                if let Some(r) = log {
                    r.forwarded(route.name.as_deref());
                }
                Plan::Forward { route, dest, extras }
            }
            None => Plan::Local { status: local::simple(out, 503, b"", end), close, details: NO_UPSTREAM },
        },
    };
    (meta, plan, fault)
}

/// The heads of this request's mirror copies, one per mirror drawn: the upstream head as
/// sent, with `connection: close` (and `HOST-shadow` with `--mirror-shadow-suffix`).
fn mirror_copies(
    route: &Route,
    head: &codec::RequestHead<'_>,
    edits: &RequestEdits<'_>,
    ctx: &WorkerCtx,
) -> Vec<mirror::Copy> {
    let mut copies = Vec::new();
    for m in &route.policy.mirrors {
        let Some(cluster) = m.destination.cluster else {
            continue;
        };
        if !fault::drawn(m.percent, ctx.random()) {
            continue;
        }
        let shadow =
            ctx.mirror_shadow_suffix.then(|| mirror::shadow_host(edits.authority.or(head.host()).unwrap_or("")));
        let edits = RequestEdits { authority: shadow.as_deref().or(edits.authority), keep_alive: false, ..*edits };
        let mut bytes = Vec::with_capacity(1024);
        codec::write_request_head(&mut bytes, head, &edits);
        copies.push(mirror::Copy { cluster, bytes });
    }
    copies
}

/// Moves a body that sits whole (and small) in `rb` behind the head already in `out`, so both
/// leave in one write. Returns the body's length when the message is now complete in `out`;
/// an `UntilClose` body never is.
fn inline_body(rb: &mut ReadBuf, framing: BodyFraming, out: &mut Vec<u8>) -> Option<u64> {
    let len = buffered_body_len(rb.data(), framing, INLINE_BODY)?;
    out.extend_from_slice(&rb.data()[..len]);
    rb.consume(len);
    Some(len as u64)
}

/// The length of a body (its chunked framing included) that sits whole at the start of
/// `data`, if it is at most `max` bytes.
fn buffered_body_len(data: &[u8], framing: BodyFraming, max: usize) -> Option<usize> {
    let len = match framing {
        BodyFraming::None => 0,
        BodyFraming::ContentLength(n) => usize::try_from(n).ok().filter(|&n| n <= data.len())?,
        BodyFraming::Chunked => match ChunkedDecoder::new().feed(data) {
            Ok(p) if p.done => p.consumed,
            _ => return None,
        },
        BodyFraming::UntilClose => return None,
    };
    (len <= max).then_some(len)
}

/// One try of an exchange: where, with which limits, and (when a retry is left and the body
/// is replayable) the policy whose statuses are retried instead of relayed.
struct Try<'p> {
    /// Its index in the cluster.
    endpoint: usize,
    retry_statuses: Option<&'p RetryPolicy>,
    /// The endpoint's counters on this worker, which a new connection keeps.
    counters: &'p Arc<EndpointCounters>,
    /// Its policy (timeouts, keepalive, `maxRequestsPerConnection`) and circuit breakers.
    cluster: &'p Cluster,
    /// The cluster's HTTP counters on this worker.
    stats: &'p HttpCluster,
}

impl Try<'_> {
    fn addr(&self) -> SocketAddr {
        self.cluster.endpoints[self.endpoint].addr
    }

    fn key(&self) -> PoolKey {
        (self.addr(), self.cluster.policy.tls.as_ref().map_or(0, |t| t.pool_id))
    }
}

/// Whether a try that failed with `err` (before any response byte reached the client) is
/// sent again. What went out on the wire can only be resent when it is still held (`inline`).
fn retried(policy: &RetryPolicy, err: &ProxyError, inline: bool) -> bool {
    let outcome = match err {
        ProxyError::ConnectFailed(_) | ProxyError::ConnectTimeout => TryFailure::ConnectFailure,
        ProxyError::ResetBeforeResponse
        | ProxyError::UpstreamIo(_)
        | ProxyError::UpstreamProtocol(_)
        | ProxyError::UnexpectedUpgrade
        | ProxyError::PerTryTimeout
            if inline =>
        {
            TryFailure::Reset
        }
        // Only produced when the policy retries it and a try is left.
        ProxyError::RetriableStatus(_) => return true,
        _ => return false,
    };
    retry::retries(policy, outcome)
}

/// A failed exchange: the error, and whether response bytes already reached the client (then
/// the only honest signal left is closing the connection).
struct Failure {
    err: ProxyError,
    response_started: bool,
}

impl Failure {
    fn before(err: ProxyError) -> Self {
        Self { err, response_started: false }
    }

    fn started(err: ProxyError) -> Self {
        Self { err, response_started: true }
    }

    fn is_reset_before_response(&self) -> bool {
        !self.response_started && matches!(self.err, ProxyError::ResetBeforeResponse)
    }
}

/// How often a request waiting for a connection under `maxConnections` looks for one: the
/// connections it waits for may close on any worker, so it polls rather than being woken.
const PENDING_POLL: Duration = Duration::from_millis(2);

/// A connection for `at` when its pool had none: a new one within the cluster's
/// `maxConnections`, or past it when this worker has no connection to the endpoint at all
/// (Envoy's guarantee of one per pool and host). Otherwise the request waits as one of
/// `http1MaxPendingRequests` (for a pooled connection or a free slot, up to the connect
/// timeout), and past that overflows, as Envoy's circuit breakers do.
async fn new_connection(at: &Try<'_>, ctx: &WorkerCtx) -> Result<UpstreamConn, Failure> {
    let (connections, policy) = (&at.cluster.connections, &at.cluster.policy);
    let slot = match connections.try_acquire(policy.max_connections) {
        Some(slot) => slot,
        None if at.counters.cx_active.get() == 0 => connections.acquire_over(),
        None => {
            let Some(_waiting) = at.cluster.pending.try_acquire(policy.http1_max_pending_requests) else {
                return Err(Failure::before(ProxyError::Overflow));
            };
            let deadline = Instant::now() + policy.connect_timeout;
            loop {
                monoio::time::sleep(PENDING_POLL).await;
                if let Some(conn) = ctx.upstream.pools.take(at.key()) {
                    ctx.stats.upstream_cx_reused.inc();
                    return Ok(conn);
                }
                if let Some(slot) = connections.try_acquire(policy.max_connections) {
                    break slot;
                }
                if Instant::now() >= deadline {
                    return Err(Failure::before(ProxyError::ConnectTimeout));
                }
            }
        }
    };
    let mut conn = connect(at, ctx).await?;
    conn.slot = Some(slot);
    Ok(conn)
}

async fn connect(at: &Try<'_>, ctx: &WorkerCtx) -> Result<UpstreamConn, Failure> {
    let policy = &at.cluster.policy;
    let tls = policy.tls.as_ref().map(|t| ctx.tls.client(&t.config));
    match monoio::time::timeout(policy.connect_timeout, UpstreamStream::open(at.addr(), at.cluster, tls)).await {
        Ok(Ok(stream)) => {
            at.stats.cx_total.inc();
            at.cluster.observe(at.endpoint, Observation::Connected);
            Ok(UpstreamConn::new(stream, at.key(), at.counters.clone()))
        }
        Ok(Err(e)) => {
            at.stats.cx_connect_fail.inc();
            at.counters.cx_connect_fail.inc();
            Err(Failure::before(ProxyError::ConnectFailed(e)))
        }
        Err(_) => {
            at.stats.cx_connect_fail.inc();
            at.counters.cx_connect_fail.inc();
            Err(Failure::before(ProxyError::ConnectTimeout))
        }
    }
}

/// A UUID v4 request id formatted on the stack.
struct RequestId([u8; 36]);

impl RequestId {
    fn new(a: u32, b: u32, c: u32, d: u32) -> Self {
        let mut bytes = [0u8; 16];
        for (i, w) in [a, b, c, d].into_iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        let mut out = [0u8; 36];
        uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().encode_lower(&mut out);
        Self(out)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}
