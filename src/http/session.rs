//! The per-connection HTTP/1.1 loop and its accounting: keep-alive, reading heads, lingering
//! close, the counters and access-log line of each request. Routing is [`super::plan`]'s,
//! forwarding the exchange's (`exchange.rs`).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::AsyncWriteRentExt;

use super::body::buffered_body_len;
use super::codec::{self, BodyFraming, DateCache, HeaderSlots, SimpleResponse};
use super::error::ProxyError;
use super::fault;
use super::head::{Http1Request, ReqMeta};
use super::local::Answer;
use super::peer::{Peer, TlsSession};
use super::plan::{plan, Disposition, Inputs, FAULT_ABORT, NO_ROUTE};
use super::tunnel;
use crate::buf::ReadBuf;
use crate::duplex::Duplex;
use crate::limits::ClientLimits;
use crate::percore::access_log::Record;
use crate::percore::{ConnInfo, WorkerCtx};
use crate::snapshot::ClusterId;
use crate::upstream::{Generation, UpstreamConn};

/// Client read window, and what a read asks room for: most heads fit in one read, a larger one
/// grows it; bodies stream through in bigger reads. Small, as an idle keep-alive connection
/// holds one in its pending read.
pub(super) const CLIENT_BUF: usize = 2 * 1024;
/// Room for the heads a request writes, allocated when a request begins and given back
/// between requests.
const OUT_BUF: usize = 4 * 1024;
/// How long a closing connection may take to send its end of stream.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);
/// Lingering close, as nginx's `lingering_close`: after answering a request whose body it did
/// not read, the gateway reads and discards what the client still sends, for this long and
/// this many bytes at most, before it closes.
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_BYTES: usize = 16 * 1024 * 1024;

thread_local! {
    /// One formatted `date` per second per worker.
    static DATE: RefCell<DateCache> = RefCell::new(DateCache::default());
}

/// Calls `f` with the current `date` value, formatted at most once a second on this worker.
pub(super) fn date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    DATE.with(|d| f(d.borrow_mut().now()))
}

/// How the client connection goes on after one of the gateway's own answers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ending {
    /// Closed after the answer, which says so (`connection: close`).
    pub(super) close: bool,
    /// The client spoke HTTP/1.0: a connection kept open is said to be
    /// (`connection: keep-alive`), as HTTP/1.0 closes unless told otherwise.
    pub(super) http10: bool,
}

impl Ending {
    /// Closed, whatever the client spoke: e.g. after a request whose head did not parse.
    pub(super) const CLOSE: Ending = Ending { close: true, http10: false };
}

/// Appends `answer`, encoded as HTTP/1.1, to `out`; returns its status.
fn encode(out: &mut Vec<u8>, answer: &Answer<'_>, end: Ending) -> u16 {
    let resp = SimpleResponse {
        close: end.close,
        http10: end.http10,
        omit_body: answer.omit_body,
        ..SimpleResponse::new(answer.status, &answer.headers, answer.body)
    };
    date(|date| codec::write_simple_response(out, &resp, date));
    answer.status
}

/// Encodes a planned local answer into `out`, keeping its status; a forward passes as it is.
/// `keep`: the connection may take another request after this one (see `Session::closing`)
/// and the request body is all read (an answer given before that ends the connection).
fn encode_local<'s>(
    out: &mut Vec<u8>,
    h1: &Http1Request,
    keep: bool,
    planned: Disposition<'s, Answer<'_>>,
) -> Disposition<'s, u16> {
    match planned {
        Disposition::Local { answer, close, details } => {
            let close = close || !keep || !h1.keep_alive;
            let status = encode(out, &answer, Ending { close, http10: h1.http10 });
            Disposition::Local { answer: status, close, details }
        }
        Disposition::Forward { route, dest, extras } => Disposition::Forward { route, dest, extras },
    }
}

/// What the session knows of a connection besides its bytes.
pub struct Downstream {
    pub conn: ConnInfo,
    /// The client socket's idle flag ([`crate::percore::ClientTcp::idle_flag`]), raised while
    /// waiting for the next request so that draining ends the wait.
    pub idle: Rc<Cell<bool>>,
    /// Set when the gateway terminated TLS on the connection.
    pub tls: Option<TlsSession>,
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
                Box::pin(tunnel::run(session.client, session.rb, *upstream)).await;
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
pub(super) enum Next {
    KeepAlive,
    Close,
    /// Close, the answer having gone out (saying `connection: close`) before the request body
    /// was read: the close lingers ([`Session::linger`]).
    Linger,
    /// The upstream switched protocols (WebSocket): the two connections become a tunnel.
    Upgrade(Box<UpstreamConn>),
}

pub(super) struct Session<S> {
    pub(super) client: S,
    /// See [`Downstream::idle`].
    pub(super) idle: Rc<Cell<bool>>,
    pub(super) peer: Peer,
    pub(super) ctx: Rc<WorkerCtx>,
    pub(super) rb: ReadBuf,
    /// Reused for every head written, either direction.
    pub(super) out: Vec<u8>,
    pub(super) limits: ClientLimits,
    /// When the head being awaited must be complete: set from the connection's start for the
    /// first request, from its first byte for a later one; `None` while idle between requests.
    pub(super) head_deadline: Option<Instant>,
    /// The request being served, as the access log tells it; `None` without `--access-log`.
    /// Boxed: a connection without the log should not carry its room.
    pub(super) log: Option<Box<Record>>,
    /// A response head (final or interim) of the current request reached the client: a
    /// failure can then only close the connection, and nothing is retried.
    pub(super) response_started: bool,
    /// The current request as Istio's metrics count it.
    pub(super) tally: Tally,
}

/// What Istio's standard metrics need of one request, gathered whether or not the access log
/// is on: plain numbers, no strings.
#[derive(Default)]
pub(super) struct Tally {
    /// When the head was parsed; `None` until then (nothing to count).
    pub(super) began: Option<Instant>,
    pub(super) status: u16,
    pub(super) flags: &'static str,
    /// The cluster the request went to (in the snapshot it was served with).
    pub(super) cluster: Option<ClusterId>,
    /// Bytes on the wire, heads included, as Istio's request and response sizes count them.
    pub(super) received: u64,
    pub(super) sent: u64,
    /// The last try failed in a way the retry policy retries, with no retry left.
    pub(super) retries_exhausted: bool,
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

    async fn serve_request(&mut self, snap: &Rc<Generation>) -> Next {
        self.out.reserve(OUT_BUF);
        self.response_started = false;
        self.tally = Tally::default();
        let (meta, disposition, fault) = loop {
            // The header slots must not live across an await: they would sit in every
            // connection's future.
            let parsed = {
                let mut slots = HeaderSlots::new();
                let closing = self.closing();
                let inputs =
                    Inputs { mirror_shadow_suffix: self.ctx.mirror_shadow_suffix, random: || self.ctx.random() };
                let data = self.rb.data();
                codec::parse_request(data, &mut slots, &self.limits.head).map(|head| {
                    head.map(|head| {
                        let body_here = buffered_body_len(&data[head.head_len..], head.framing, usize::MAX).is_some();
                        let log = self.log.as_deref_mut();
                        let (meta, disposition, fault) = plan(snap, &head, &mut self.out, &self.peer, &inputs, log);
                        // Encoded here, as the answer may borrow the head.
                        let keep = !closing && body_here;
                        (meta, encode_local(&mut self.out, &meta.http1, keep, disposition), fault)
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
        self.rb.consume(meta.http1.head_len);
        self.head_deadline = None;
        let began = Instant::now();
        self.tally.began = Some(began);
        self.tally.received = meta.http1.head_len as u64;
        if let (Some(sink), Some(r)) = (&self.ctx.access_log, &mut self.log) {
            r.start = Some(sink.wall(began));
        }
        // Envoy's fault filter: the delay first, then the abort, before any upstream is asked.
        if let Some(delay) = fault.delay {
            monoio::time::sleep(delay).await;
        }
        let disposition = match fault.abort {
            Some(status) => {
                let h1 = meta.http1;
                let unread = buffered_body_len(self.rb.data(), h1.framing, usize::MAX).is_none();
                let end = Ending { close: !h1.keep_alive || self.closing() || unread, http10: h1.http10 };
                self.out.clear();
                encode(&mut self.out, &Answer::simple(status, fault::ABORT_BODY), end);
                Disposition::Local { answer: status, close: end.close, details: FAULT_ABORT }
            }
            None => disposition,
        };
        let next = match disposition {
            Disposition::Local { answer: status, close, details } => {
                let flag = match details {
                    NO_ROUTE => "NR",
                    FAULT_ABORT => "FI",
                    _ => "-",
                };
                self.note_status(status, flag, details);
                // An unread body would desync the connection: skip it if it is all here, else
                // the answer said `connection: close` and the close lingers.
                let body_done = self.skip_buffered_body(meta.http1.framing);
                match self.write_out().await {
                    Err(_) => Next::Close,
                    Ok(()) if !body_done => Next::Linger,
                    Ok(()) if close => Next::Close,
                    Ok(()) => Next::KeepAlive,
                }
            }
            Disposition::Forward { route, dest, extras } => self.forward(snap, meta, route, dest, extras).await,
        };
        match next {
            Next::KeepAlive if self.closing() => Next::Close,
            other => other,
        }
    }

    /// The connection takes no request after this one: the gateway drains, or the TLS
    /// settings it was made under are gone.
    pub(super) fn closing(&self) -> bool {
        self.ctx.draining() || self.peer.stale()
    }

    /// Consumes a request body that already sits whole in the read window; false when it does
    /// not (the connection must then close after a local answer).
    pub(super) fn skip_buffered_body(&mut self, framing: BodyFraming) -> bool {
        let len = buffered_body_len(self.rb.data(), framing, usize::MAX);
        if let Some(len) = len {
            self.rb.consume(len);
        }
        len.is_some()
    }

    /// Answers a failure before any response byte went out; the connection then ends as `end`
    /// says.
    pub(super) async fn answer_error(&mut self, err: &ProxyError, end: Ending) -> Next {
        tracing::debug!(peer = %self.peer.conn.peer, error = %err, "answering an error");
        let (status, body) = err.answer();
        let (flag, details) = err.log_fields();
        self.note_status(status, flag, details);
        self.out.clear();
        // Envoy marks answers its circuit breakers gave, so clients can tell them from the upstream's.
        let headers = match err {
            ProxyError::Overflow => vec![("x-envoy-overloaded", Cow::Borrowed("true"))],
            _ => Vec::new(),
        };
        encode(&mut self.out, &Answer { headers, ..Answer::simple(status, body.as_bytes()) }, end);
        if self.write_out().await.is_err() || end.close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Answers `err`; the client connection survives only when the request body was fully
    /// consumed, and the answer says which.
    pub(super) async fn fail_request(&mut self, meta: ReqMeta, err: &ProxyError) -> Next {
        let h1 = meta.http1;
        let body_done = self.skip_buffered_body(h1.framing);
        let close = !body_done || !h1.keep_alive || self.closing();
        match self.answer_error(err, Ending { close, http10: h1.http10 }).await {
            Next::Close if !body_done => Next::Linger,
            next => next,
        }
    }

    /// Counts the status, and notes it with Envoy's response flag and details for the log.
    pub(super) fn note_status(&mut self, status: u16, flag: &'static str, details: &'static str) {
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
    pub(super) async fn write_out(&mut self) -> std::io::Result<()> {
        self.tally.sent += self.out.len() as u64;
        let out = std::mem::take(&mut self.out);
        let (res, out) = self.client.write_all(out).await;
        self.out = out;
        res.map(drop)
    }
}
