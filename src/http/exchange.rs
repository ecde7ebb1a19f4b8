//! The exchange: one request's tries on the upstream cluster, with retries, per-try
//! timeouts, the circuit breakers' limits, and the response relayed to the client, whatever
//! codec the client speaks ([`Client`]).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::AsyncWriteRentExt;

use super::account::Account;
use super::body::INLINE_BODY;
use super::codec::{self, BodyFraming, TryLines};
use super::compress::Accept;
use super::error::ProxyError;
use super::head::ReqMeta;
use super::headers::{self, Merged};
use super::mirror;
use super::retry::{self, TryFailure};
use crate::percore::WorkerCtx;
use crate::snapshot::{ClusterId, Destination, Route, UpstreamProtocol};
use crate::upstream::{self, ConnectError, ConnectionSlot, Generation, Observation, UpstreamConn, UpstreamStream};
use attempt::retried;
pub(super) use attempt::{Failure, Try};
pub(super) use client::{Client, RequestBody, ResponseSource};
pub(super) use h2::{mux_stream, send_h2};
use relay::{Relayed, Source};
pub(super) use within::sleep;
use within::within;

mod attempt;
mod client;
mod h2;
mod relay;
mod within;

/// What `out` holds for the upstream: the head, ending at `head_end` with the try lines
/// `lines` (a retry rewrites them), and after it the whole body when `inline`, which makes
/// the request replayable.
struct Outgoing {
    head_end: usize,
    lines: TryLines,
    inline: bool,
    /// The request's timeout, which a retry's lines count down.
    timeout: Option<Duration>,
    /// The head as HTTP/2, for the first try: a retry's lines are rewritten in the text.
    h2: Option<Box<H2Request>>,
}

/// The copy of a streamed request body kept for a retry, as Envoy's router keeps one while it
/// streams the body up, up to its buffer limit: here [`INLINE_BODY`], the one bound Strait
/// holds a request body to. Past it the copy is dropped and the request is no longer retried
/// (Envoy's `retry_or_shadow_abandoned`); the body streams on.
pub(in crate::http) struct Replay<'k> {
    /// The body so far, in the upstream's HTTP/1.1 framing.
    bytes: Vec<u8>,
    /// No copy is kept: none was wanted, or the body outgrew the bound.
    off: bool,
    /// The body outgrew the bound: a flag apart from the copy, which the try's upload holds
    /// while its response relay reads this (a retriable status is only retried while the copy
    /// can resend the body, as Envoy's router does while the body is still buffered).
    abandoned: &'k Cell<bool>,
}

impl<'k> Replay<'k> {
    fn new(wanted: bool, abandoned: &'k Cell<bool>) -> Self {
        Replay { bytes: Vec::new(), off: !wanted, abandoned }
    }

    /// Keeps `data`, the next bytes of the body, while the copy stays within its bound;
    /// whether it did.
    pub(in crate::http) fn keep(&mut self, data: &[u8]) -> bool {
        if self.off {
            return false;
        }
        if self.bytes.len() + data.len() > INLINE_BODY {
            self.off = true;
            self.abandoned.set(true);
            self.bytes = Vec::new();
            return false;
        }
        self.bytes.extend_from_slice(data);
        true
    }

    /// Writes the copy's last `n` bytes (just kept) to `upstream`.
    pub(in crate::http) async fn send_last<W: AsyncWriteRentExt>(
        &self,
        upstream: &mut W,
        n: usize,
    ) -> std::io::Result<()> {
        upstream.write_all(self.bytes[self.bytes.len() - n..].to_vec()).await.0.map(drop)
    }

    /// Whether a new try can send again all of the body that went up.
    fn kept(&self) -> bool {
        !self.off
    }

    /// Sends the copy to a new try's `upstream`, before the rest of the body follows.
    async fn resend<W: AsyncWriteRentExt>(&self, upstream: &mut W) -> std::io::Result<()> {
        if self.bytes.is_empty() {
            return Ok(());
        }
        upstream.write_all(self.bytes.clone()).await.0.map(drop)
    }
}

/// What a forwarded request carries beside its head, decided while the head is borrowed.
#[derive(Default)]
pub(super) struct Extras {
    /// Response lines CORS adds (the allowed Origin echoed back).
    pub(super) cors: Vec<(&'static str, String)>,
    /// Copies for the route's mirrors, heads only so far.
    pub(super) mirrors: Vec<mirror::Copy>,
    /// The session-affinity cookie generated for this request.
    pub(super) set_cookie: Option<String>,
    /// The try lines the head ends with (the first try's).
    pub(super) try_lines: TryLines,
    /// The request's timeout: the route's, or a gRPC request's `grpc-timeout` capped by it.
    pub(super) timeout: Option<Duration>,
    /// The request's `accept-encoding`, as the route's compressors read it.
    pub(super) accept: Accept,
    /// Lines the external authorization server's allowing answer adds to the response.
    pub(super) on_allow: Vec<(String, String)>,
    /// The head as an HTTP/2 upstream's first try sends it, made beside its text from an
    /// HTTP/2 client's own fields; dropped by whatever edits the text after the plan. Boxed:
    /// a request's fields would size every plan's answer.
    pub(super) h2: Option<Box<H2Request>>,
}

/// An upstream request head as HTTP/2 (`RequestView::upstream_h2`): its fields, the length
/// of its HTTP/1.1 text at the start of `out`, and how the body after that text is framed.
pub(super) struct H2Request {
    pub(super) request: http::Request<()>,
    pub(super) head_len: usize,
    pub(super) framing: BodyFraming,
}

/// One forwarded request: the client's half, and what the exchange uses of its worker and
/// its request.
pub(super) struct Exchange<'a, C> {
    pub(super) client: C,
    pub(super) ctx: &'a Rc<WorkerCtx>,
    /// The upstream request head as the plan wrote it; the client's response heads after.
    pub(super) out: &'a mut Vec<u8>,
    pub(super) account: &'a mut Account,
    /// The client's address, for the debug log.
    pub(super) peer: SocketAddr,
    /// The listener's `max_request_duration`, counted from the request's start.
    pub(super) max_request_duration: Option<Duration>,
}

/// How a forwarded request ended, for the client's codec to carry out.
pub(super) enum Forwarded {
    /// The response went out whole; `request_whole`: so did the request (not when the
    /// upstream answered before the body was all sent: its rest was left unread).
    Done { request_whole: bool },
    /// The upstream switched protocols: its connection is the client's to tunnel to.
    Upgraded(Box<UpstreamConn>),
    /// No response byte reached the client: it gets the gateway's answer for `err`.
    Failed(ProxyError),
    /// The client's stream can only be cut: its response began, or it went away.
    Cut,
}

impl<C: Client> Exchange<'_, C> {
    pub(super) async fn forward(
        &mut self,
        snap: &Rc<Generation>,
        meta: ReqMeta,
        route: &Route,
        dest: &Destination,
        extras: Extras,
    ) -> Forwarded {
        let Some(cluster) = dest.cluster else {
            return Forwarded::Failed(ProxyError::NoCluster);
        };
        self.account.tally.cluster = Some(cluster);
        if let Some(r) = &mut self.account.log {
            r.cluster(&snap.cluster(cluster).name);
        }
        let retries = &route.policy.retries;
        // A small body is worth holding whole when a retry or a mirror may need it again; none
        // is waited for (the replay copy kept as the body streams serves both), so that a
        // client that waits for an answer before it sends on gets one.
        let mirrored = !extras.mirrors.is_empty();
        if (mirrored || retry_wanted(retries, meta)) && self.client.hold_body().await.is_err() {
            return Forwarded::Cut;
        }
        // Small bodies already read go out with the head, and stay replayable.
        let head_end = self.out.len();
        let inline = self.client.inline_body(self.out);
        if let Some(n) = inline {
            self.account.tally.received += n;
            if let Some(r) = &mut self.account.log {
                r.bytes_received = n;
            }
        }
        let inline = inline.is_some();
        let mut mirrors = extras.mirrors;
        if inline {
            for mut copy in mirrors.drain(..) {
                copy.bytes.extend_from_slice(&self.out[head_end..]);
                mirror::send(self.ctx, snap, copy, extras.timeout);
            }
        }
        // A streamed body is kept as it goes up, within the copy's bound, for a retry or a
        // mirror.
        let abandoned = Cell::new(false);
        let mut replay = Replay::new(!inline && (mirrored || retry_wanted(retries, meta)), &abandoned);
        let mut response =
            headers::response(&dest.headers.response, &route.policy.response, &extras.cors, extras.accept);
        response.add.extend(extras.set_cookie.as_deref().map(|c| ("set-cookie", c)));
        response.add.extend(extras.on_allow.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        // The route's timeout, or what is left of the request's maximum duration if sooner.
        let began = self.account.tally.began;
        let left = self.max_request_duration.map(|d| d.saturating_sub(began.map_or(Duration::ZERO, |b| b.elapsed())));
        let (timeout, expired) = match (extras.timeout, left) {
            (Some(t), Some(l)) if l < t => (Some(l), ProxyError::DurationTimeout),
            (None, Some(l)) => (Some(l), ProxyError::DurationTimeout),
            (t, _) => (t, ProxyError::UpstreamTimeout),
        };
        let outgoing = Outgoing { head_end, lines: extras.try_lines, inline, timeout: extras.timeout, h2: extras.h2 };
        // The exchange is made inside `within`, never bound first: a future bound to a local and
        // then moved keeps its slot in this future's state too (the local's storage lives to the
        // end of its scope), and a stream's whole state is copied as its task is spawned.
        let result = within(timeout, self.exchange(snap, cluster, route, meta, outgoing, &mut replay, &response)).await;
        let result = result.unwrap_or_else(|| Err(self.failure(expired)));
        if !mirrors.is_empty() {
            // The mirrors of a streamed body go once it went up whole within the copy: Envoy
            // (since 1.33, `streaming_shadow`) streams a shadow alongside at any size; Strait
            // holds one body's copy at most, so a larger one is not mirrored.
            if matches!(result, Ok(Forwarded::Done { request_whole: true })) && replay.kept() {
                for mut copy in mirrors {
                    copy.bytes.extend_from_slice(&replay.bytes);
                    mirror::send(self.ctx, snap, copy, extras.timeout);
                }
            } else {
                tracing::debug!(peer = %self.peer, "request body not held whole for a mirror: not mirrored");
            }
        }
        match result {
            Ok(forwarded) => forwarded,
            Err(Failure { err, response_started }) => {
                tracing::debug!(peer = %self.peer, error = %err, "request failed");
                // The gateway's answer for a failed try is the cluster's too (Envoy's router
                // charges an abort to `upstream_rq_<code>`); a failure path, so the lookup is
                // no concern.
                if !response_started && err.observation().is_some() {
                    self.ctx.http_cluster(&snap.cluster(cluster).name).record_status(err.answer().0);
                }
                if matches!(err, ProxyError::DownstreamIo(_)) {
                    // The client went away: Envoy's DC, whatever status was under way.
                    self.account.tally.flags = "DC";
                }
                if response_started {
                    Forwarded::Cut
                } else {
                    Forwarded::Failed(err)
                }
            }
        }
    }

    /// A failure now: after the response began, only closing the connection can tell.
    fn failure(&self, err: ProxyError) -> Failure {
        Failure { err, response_started: self.account.response_started }
    }

    /// Connect, send, and relay the response, trying again as the route's retry policy says;
    /// `out` holds the request as `outgoing` tells, `replay` the copy of a body that streams.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &mut self,
        snap: &Generation,
        cluster: ClusterId,
        route: &Route,
        meta: ReqMeta,
        mut outgoing: Outgoing,
        replay: &mut Replay<'_>,
        response: &Merged<'_>,
    ) -> Result<Forwarded, Failure> {
        let (retries, inline) = (&route.policy.retries, outgoing.inline);
        // What a retry's lines count down from, when a timeout bounds the request: a clock read
        // spared on every other request.
        let began = outgoing.timeout.is_some().then(Instant::now);
        let (cl, live) = snap.cluster_live(cluster);
        let policy = &cl.policy;
        // The slot of the retry in flight, if any, under the cluster's `maxRetries`.
        let mut retry_slot = None;
        // A streamed body's statuses are retried while its copy can resend it.
        let abandoned = replay.abandoned;
        let statuses_retried = (inline || replay.kept()) && retry::retries_statuses(retries, meta.grpc);
        let mut tried: [usize; 8] = [usize::MAX; 8];
        let mut attempt = 0usize;
        let ctx = self.ctx;
        let cluster_stats = ctx.http_cluster(&cl.name);
        let upstream = &ctx.upstream;
        let result = loop {
            let Some(mut pick) =
                upstream.balancer.pick(snap, cluster, &tried[..attempt.min(8)], ctx.random(), meta.affinity)
            else {
                break Err(Failure::before(ProxyError::NoHealthyUpstream));
            };
            let addr = cl.endpoints[pick.endpoint].addr;
            if let Some(r) = &mut self.account.log {
                r.upstream(addr);
            }
            let attempts_left = attempt < retries.attempts as usize;
            // `maxRetries` bounds the retries in flight on the whole cluster (Envoy's retry
            // circuit breaker): with none free, this try is the last. A retry's own slot passes
            // to the next retry.
            let retry_left = attempts_left && (retry_slot.is_some() || live.retries.has_room(policy.max_retries));
            let try_once = Try {
                endpoint: pick.endpoint,
                retry_statuses: (statuses_retried && retry_left).then_some(retries),
                abandoned: Some(abandoned),
                counters: &pick.counters,
                cluster: cl,
                live,
                stats: &cluster_stats,
            };
            // Made inside `within`, as in `forward`.
            let h2 = outgoing.h2.take();
            let result =
                within(retries.per_try_timeout, self.try_endpoint(try_once, meta, inline, replay, response, h2))
                    .await
                    .unwrap_or_else(|| Err(self.failure(ProxyError::PerTryTimeout)));
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
                        && retried(retries, &f.err, inline || replay.kept())
                        && self.out.len() >= outgoing.head_end =>
                {
                    // The retry that led here is over: its slot goes back before the next is taken.
                    drop(retry_slot.take());
                    let Some(slot) = live.retries.try_acquire(policy.max_retries) else {
                        break Err(f);
                    };
                    retry_slot = Some(slot);
                    tracing::debug!(%addr, error = %f.err, "retrying on another endpoint");
                    tried[attempt.min(7)] = endpoint;
                    attempt += 1;
                    cluster_stats.rq_retry.inc();
                    within::sleep(retry::backoff(attempt as u32, ctx.random())).await;
                    // Envoy's router stamps each retry with its number and the time left.
                    let lines = TryLines {
                        attempt: Some(attempt as u32 + 1),
                        expected_timeout_ms: retry::expected_timeout_ms(
                            outgoing.timeout,
                            retries.per_try_timeout,
                            began.map_or(Duration::ZERO, |b| b.elapsed()),
                        ),
                        ..outgoing.lines
                    };
                    outgoing.head_end = codec::rewrite_try_lines(self.out, outgoing.head_end, &outgoing.lines, &lines);
                    outgoing.lines = lines;
                }
                other => {
                    // The last try ended as a retry would have been asked for: Envoy's URX.
                    let tally = &mut self.account.tally;
                    tally.retries_exhausted = retries.attempts > 0
                        && !attempts_left
                        && match &other {
                            Ok(_) => {
                                statuses_retried
                                    && (retry::status_retried(retries, tally.status)
                                        || tally.grpc_status.is_some_and(|c| retry::grpc_status_retried(retries, c)))
                            }
                            Err(f) => !f.response_started && retried(retries, &f.err, inline || replay.kept()),
                        };
                    break other;
                }
            }
        };
        if abandoned.get() {
            cluster_stats.retry_or_shadow_abandoned.inc();
        }
        result
    }

    /// One try on `at`'s endpoint. A body not `inline` streams up from the client, `replay`
    /// (what a try before this one sent of it) first.
    async fn try_endpoint(
        &mut self,
        at: Try<'_>,
        meta: ReqMeta,
        inline: bool,
        replay: &mut Replay<'_>,
        response: &Merged<'_>,
        h2: Option<Box<H2Request>>,
    ) -> Result<Forwarded, Failure> {
        let ctx = self.ctx;
        // Envoy's `max_requests` breaker (`http2MaxRequests`) holds for every protocol; counted
        // (an atomic shared by the workers) only when set.
        let _request = match at.cluster.policy.http2_max_requests {
            u32::MAX => None,
            max => Some(at.live.requests.try_acquire(max).ok_or(Failure::before(ProxyError::Overflow))?),
        };
        let http2 = match at.cluster.policy.upstream_protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Http2 => true,
            UpstreamProtocol::Client => C::HTTP2,
        };
        if http2 {
            return self.try_multiplexed(&at, meta, inline, replay, response, h2).await;
        }
        let mut conn = http1_connection(&at, ctx).await?;
        if let Some(r) = &mut self.account.log {
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
            let out = std::mem::take(self.out);
            let (res, out) = conn.stream.write_all(out).await;
            *self.out = out;
            if let Err(e) = res {
                if replayable {
                    drop(conn);
                    conn = new_connection(&at, ctx).await?;
                    continue;
                }
                return Err(Failure::before(ProxyError::UpstreamIo(e)));
            }
            // Whether the whole request went out: not when the upstream answered first.
            let mut sent_whole = true;
            let relayed = if inline {
                let from = Source { buf: &mut conn.buf, src: &mut conn.stream };
                self.relay_response(from, meta, sent_at, &at, response, &Cell::new(true)).await
            } else {
                self.client.send_continue().await.map_err(|e| Failure::before(ProxyError::DownstreamIo(e)))?;
                replay.resend(&mut conn.stream).await.map_err(|e| Failure::before(ProxyError::UpstreamIo(e)))?;
                // A lent body goes up while the response is read from a second handle on the
                // socket; over TLS both handles drive the one session.
                let lend = |e| Failure::before(ProxyError::UpstreamIo(e));
                let watcher = match self.client.body() {
                    Some(_) => conn.watcher().map_err(lend)?,
                    None => None,
                };
                match (self.client.body(), &mut conn.stream, watcher) {
                    (Some(body), UpstreamStream::Plain(tcp), Some(mut reader)) => {
                        let from = Source { buf: &mut conn.buf, src: &mut reader };
                        let (relayed, whole) =
                            self.both_ways(body, tcp, from, replay, meta, sent_at, &at, response).await?;
                        sent_whole = whole;
                        relayed
                    }
                    (Some(body), UpstreamStream::Tls(tls), _) => {
                        let (mut reader, mut writer) = tls.lend().map_err(lend)?;
                        let from = Source { buf: &mut conn.buf, src: &mut reader };
                        let (relayed, whole) =
                            self.both_ways(body, &mut writer, from, replay, meta, sent_at, &at, response).await?;
                        sent_whole = whole;
                        relayed
                    }
                    _ => {
                        sent_whole = self.stream_request_body(&mut conn, replay).await?;
                        let from = Source { buf: &mut conn.buf, src: &mut conn.stream };
                        self.relay_response(from, meta, sent_at, &at, response, &Cell::new(sent_whole)).await
                    }
                }
            };
            return match relayed {
                Err(f) if replayable && f.is_reset_before_response() => {
                    drop(conn);
                    conn = new_connection(&at, ctx).await?;
                    continue;
                }
                Err(f) => Err(f),
                Ok(Relayed::Done { reusable }) => {
                    release(&at, ctx, conn, reusable && sent_whole);
                    Ok(Forwarded::Done { request_whole: sent_whole })
                }
                Ok(Relayed::Upgraded) => Ok(Forwarded::Upgraded(Box::new(conn))),
            };
        }
    }
}

/// Whether `retries` may send the request again, so that its body is worth holding.
fn retry_wanted(retries: &crate::snapshot::RetryPolicy, meta: ReqMeta) -> bool {
    retries.attempts > 0 && (retry::retries_statuses(retries, meta.grpc) || retry::retries(retries, TryFailure::Reset))
}

/// How often a request waiting for a connection under `maxConnections` looks for one: the
/// connections it waits for may close on any worker, so it polls rather than being woken.
const PENDING_POLL: Duration = Duration::from_millis(2);

/// A connection for an HTTP/1.1 try on `at`: an idle one from this worker's pool, else a new
/// one (see [`new_connection`]). A pooled one may have been closed by the upstream meanwhile:
/// its user retries once on a new one when it fails before any response byte.
pub(super) async fn http1_connection(at: &Try<'_>, ctx: &WorkerCtx) -> Result<UpstreamConn, Failure> {
    match ctx.upstream.pools.take(at.key()) {
        Some(c) => {
            ctx.stats.upstream_cx_reused.inc();
            Ok(c)
        }
        None => new_connection(at, ctx).await,
    }
}

/// Counts the exchange `conn` carried, and pools it when it ended cleanly (`reusable`) and
/// its `maxRequestsPerConnection` are not spent; else it closes.
pub(super) fn release(at: &Try<'_>, ctx: &WorkerCtx, mut conn: UpstreamConn, reusable: bool) {
    conn.requests += 1;
    let policy = &at.cluster.policy;
    let quota = policy.max_requests_per_connection;
    if reusable && (quota == 0 || conn.requests < quota) {
        ctx.upstream.pools.put(conn, policy.http_idle_timeout);
    }
}

/// A new connection for `at` when its pool had none, or a pooled one that came back while
/// this request waited (see [`connection_slot`]).
pub(super) async fn new_connection(at: &Try<'_>, ctx: &WorkerCtx) -> Result<UpstreamConn, Failure> {
    match connection_slot(at, || ctx.upstream.pools.take(at.key())).await? {
        Pooled::Found(conn) => {
            ctx.stats.upstream_cx_reused.inc();
            Ok(conn)
        }
        Pooled::Open(slot) => {
            let mut conn = connect(at, ctx, false).await?;
            conn.slot = Some(slot);
            Ok(conn)
        }
    }
}

/// What [`connection_slot`] came to.
enum Pooled<T> {
    /// What the pool had, or had meanwhile.
    Found(T),
    /// The place of a new connection.
    Open(ConnectionSlot),
}

/// The place of a new connection for `at` within the cluster's
/// `maxConnections`, or past it when this worker has no connection to the endpoint at all
/// (Envoy's guarantee of one per pool and host). Otherwise the request waits as one of
/// `http1MaxPendingRequests` (for what `pooled` finds: a connection of its pool coming back
/// or getting room, or for a free slot, up to the connect
/// timeout), and past that overflows, as Envoy's circuit breakers do.
async fn connection_slot<T>(at: &Try<'_>, pooled: impl Fn() -> Option<T>) -> Result<Pooled<T>, Failure> {
    let (connections, policy) = (&at.live.connections, &at.cluster.policy);
    Ok(Pooled::Open(match connections.try_acquire(policy.max_connections) {
        Some(slot) => slot,
        None if at.counters.cx_active.get() == 0 => connections.acquire_over(),
        None => {
            let Some(_waiting) = at.live.pending.try_acquire(policy.http1_max_pending_requests) else {
                return Err(Failure::before(ProxyError::Overflow));
            };
            let deadline = Instant::now() + policy.connect_timeout;
            loop {
                within::sleep(PENDING_POLL).await;
                if let Some(found) = pooled() {
                    return Ok(Pooled::Found(found));
                }
                if let Some(slot) = connections.try_acquire(policy.max_connections) {
                    break slot;
                }
                if Instant::now() >= deadline {
                    return Err(Failure::before(ProxyError::ConnectTimeout));
                }
            }
        }
    }))
}

/// A new connection for `at`; `http2`: it will speak HTTP/2, so TLS offers ALPN `h2`.
async fn connect(at: &Try<'_>, ctx: &WorkerCtx, http2: bool) -> Result<UpstreamConn, Failure> {
    let tls = |c: &_| match (http2, &at.cluster.policy.tls) {
        (true, Some(t)) => ctx.tls.client(&t.h2_config),
        _ => ctx.tls.client(c),
    };
    // Boxed: connecting (TLS included) takes a future of kilobytes, which would otherwise sit
    // in the state of every request's future, copied whole as an HTTP/2 stream's task is
    // spawned, for the few requests that open a connection.
    match Box::pin(upstream::connect(at.addr(), at.cluster, tls)).await {
        Ok(stream) => {
            at.stats.cx_total.inc();
            at.live.observe(at.cluster, at.endpoint, Observation::Connected);
            Ok(UpstreamConn::new(stream, at.key(), at.counters.clone()))
        }
        Err(e) => {
            at.stats.cx_connect_fail.inc();
            at.counters.cx_connect_fail.inc();
            Err(Failure::before(match e {
                ConnectError::Failed(e) => ProxyError::ConnectFailed(e),
                ConnectError::TimedOut => ProxyError::ConnectTimeout,
            }))
        }
    }
}
