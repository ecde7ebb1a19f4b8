//! The per-connection HTTP/1.1 loop: keep-alive, reading heads, lingering close, the
//! gateway's own answers encoded. Routing is [`super::plan`]'s, forwarding the exchange's
//! (`exchange.rs`), to which the session lends its client's half (`session/client.rs`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::AsyncWriteRentExt;

use super::account::Account;
use super::body::{self, buffered_body_len};
use super::callouts;
use super::codec::{self, BodyFraming, HeaderSlots, SimpleResponse};
use super::error::ProxyError;
use super::exchange::{self, Exchange, Forwarded};
use super::ext_authz::{self, BodyRead, Verdict};
use super::fault::Injected;
use super::head::Http1Request;
use super::local::{self, Answer};
use super::peer::{Peer, TlsSession};
use super::plan::{plan, Disposition, Inputs, FAULT_ABORT, LOCAL_RATE_LIMITED, MISDIRECTED, NO_ROUTE};
use super::ratelimit;
use super::tunnel;
use crate::buf::ReadBuf;
use crate::duplex::Duplex;
use crate::limits::ClientLimits;
use crate::percore::{ConnInfo, WorkerCtx};
use crate::upstream::{Generation, UpstreamConn};
use client::{H1Body, Http1Client};

mod client;

/// Client read window, and what a read asks room for: most heads fit in one read, a larger one
/// grows it; bodies stream through in bigger reads. Small, as an idle keep-alive connection
/// holds one in its pending read.
const CLIENT_BUF: usize = 2 * 1024;
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
/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

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

/// Appends `answer`, encoded as HTTP/1.1, to `out`; returns its status. The HTTP/2 codec
/// encodes its answers through it too, and reads the head back (`h2/head.rs`).
pub(super) fn encode(out: &mut Vec<u8>, answer: &Answer<'_>, end: Ending) -> u16 {
    let resp = SimpleResponse {
        close: end.close,
        http10: end.http10,
        omit_body: answer.omit_body,
        ..SimpleResponse::new(answer.status, &answer.headers, answer.body)
    };
    codec::with_date(|date| codec::write_simple_response(out, &resp, date));
    answer.status
}

/// Envoy's response flag for one of the gateway's own answers, by its details.
pub(super) fn local_flag(details: &str) -> &'static str {
    match details {
        NO_ROUTE | MISDIRECTED => "NR",
        FAULT_ABORT => "FI",
        LOCAL_RATE_LIMITED | ratelimit::RATE_LIMITED => "RL",
        ratelimit::ERROR => ratelimit::ERROR_FLAG,
        super::authz::RBAC_DENIED => "RBAC",
        ext_authz::DENIED | ext_authz::ERROR => ext_authz::FLAG,
        _ => "-",
    }
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

/// A connection that opened with HTTP/2's client preface (h2c with prior knowledge): the
/// stream, the bytes already read from it (the preface first), and what the session knew of it.
pub(super) struct H2c<S> {
    pub(super) client: S,
    pub(super) first: Vec<u8>,
    pub(super) downstream: Downstream,
    pub(super) ctx: Rc<WorkerCtx>,
}

/// Serves one client connection until it closes, errs, or the worker drains; or hands it back
/// untouched but for its first bytes when it speaks HTTP/2 ([`super::serve_connection`] says
/// whose it is then).
pub(super) async fn serve<S: Duplex>(client: S, downstream: Downstream, ctx: Rc<WorkerCtx>) -> Option<H2c<S>> {
    let ctx_limits = ctx.limits;
    let Downstream { conn, idle, tls } = downstream;
    let logging = ctx.access_log.is_some();
    let mut session = Session {
        client,
        idle,
        peer: Peer { conn, ip: conn.client.ip().to_string(), tls, buckets: Default::default() },
        ctx,
        rb: ReadBuf::with_capacity(CLIENT_BUF),
        out: Vec::new(),
        limits: ctx_limits,
        head_deadline: Some(Instant::now() + ctx_limits.request_headers_timeout),
        account: Account::new(logging),
    };
    let mut linger = false;
    // Only a plain connection's first bytes may be HTTP/2's (h2c with prior knowledge).
    let mut sniff = session.peer.tls.is_none();
    loop {
        // Between requests the connection waits here, outside the request's state (boxed, and
        // only while a request is under way), so that an idle connection holds little more
        // than its session and read buffer.
        if session.rb.is_empty() && !session.await_request().await {
            break;
        }
        if std::mem::take(&mut sniff) && session.h2c_preface().await {
            let Session { client, idle, peer, ctx, rb, .. } = session;
            let downstream = Downstream { conn: peer.conn, idle, tls: None };
            return Some(H2c { client, first: rb.data().to_vec(), downstream, ctx });
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
                return None;
            }
        }
    }
    // Over TLS this is the close_notify that tells a close-delimited answer's end from a cut
    // connection (RFC 8446 §6.1); bounded, as a client that reads nothing would never take it.
    let _ = monoio::time::timeout(CLOSE_NOTIFY_WAIT, session.client.shutdown()).await;
    if linger {
        session.linger().await;
    }
    None
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
    /// The request under way, as the metrics and the access log count it.
    account: Account,
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
        self.account.finish(&self.ctx, &snap, self.rb.take_written());
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

    /// The connection opened with HTTP/2's client preface (RFC 9113 §3.4): h2c with prior
    /// knowledge beside HTTP/1.1 on the same port, as Envoy's codec AUTO serves it (istiod
    /// configures gateways so; like Envoy there, no h2c `Upgrade:`). Reads on, up to the head
    /// deadline, while what came so far is the start of the preface; an HTTP/1.1 request is
    /// told from it by its first byte.
    async fn h2c_preface(&mut self) -> bool {
        loop {
            let data = self.rb.data();
            let n = data.len().min(H2_PREFACE.len());
            if data[..n] != H2_PREFACE[..n] {
                return false;
            }
            if n == H2_PREFACE.len() {
                return true;
            }
            let deadline =
                *self.head_deadline.get_or_insert_with(|| Instant::now() + self.limits.request_headers_timeout);
            match monoio::time::timeout_at(deadline.into(), self.rb.fill(&mut self.client, CLIENT_BUF)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return false,
            }
        }
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
        self.account.begin();
        let (meta, mut http1, mut disposition, mut fault, check, call) = loop {
            // The header slots must not live across an await: they would sit in every
            // connection's future.
            let parsed = {
                let mut slots = HeaderSlots::new();
                let closing = self.closing();
                let inputs = Inputs {
                    mirror_shadow_suffix: self.ctx.mirror_shadow_suffix,
                    random: || self.ctx.random(),
                    clock: crate::snapshot::now,
                    jwt: &self.ctx.jwt,
                    worker: self.ctx.id,
                };
                let data = self.rb.data();
                codec::parse_request(data, &mut slots, &self.limits.head).map(|head| {
                    head.map(|head| {
                        let body_here = buffered_body_len(&data[head.head_len..], head.framing, usize::MAX).is_some();
                        let log = self.account.log.as_deref_mut();
                        let (meta, disposition, fault, check, call) =
                            plan(snap, &head, &mut self.out, &self.peer, &inputs, log);
                        let http1 = Http1Request::of(&head);
                        // Encoded here, as the answer may borrow the head.
                        let keep = !closing && body_here;
                        (meta, http1, encode_local(&mut self.out, &http1, keep, disposition), fault, check, call)
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
                            return self.answer_error(&ProxyError::RequestHeadersTimeout, false, Ending::CLOSE).await;
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
                    return self.answer_error(&ProxyError::BadRequest(e), false, Ending::CLOSE).await;
                }
            }
        };
        self.ctx.stats.downstream_rq_total.inc();
        self.rb.consume(http1.head_len);
        self.head_deadline = None;
        let began = Instant::now();
        self.account.tally.began = Some(began);
        self.account.tally.received = http1.head_len as u64;
        self.account.tally.grpc = meta.grpc;
        self.ctx.stats.record_rbac(meta.rbac);
        if let (Some(sink), Some(r)) = (&self.ctx.access_log, &mut self.account.log) {
            r.start = Some(sink.wall(began));
        }
        // The filters that ask another service (ext_authz, then the rate limit services): a
        // denial replaces whatever the later filters planned, and they never see the request.
        let body = match check.as_ref().and_then(|c| c.body()) {
            Some(with) if http1.framing != BodyFraming::None => {
                // The body is read before the upstream is asked: the client waiting for
                // `100 Continue` gets it now (once).
                if std::mem::take(&mut http1.expect_continue) {
                    let (res, _) = self.client.write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await;
                    if res.is_err() {
                        return Next::Close;
                    }
                }
                match body::read_for_check(&mut self.client, &mut self.rb, http1.framing, with.max).await {
                    Ok((data, whole)) => Some(BodyRead { data, whole }),
                    Err(e) => {
                        tracing::debug!(peer = %self.peer.conn.peer, error = ?e, "request body unread for ext_authz");
                        return Next::Close;
                    }
                }
            }
            _ => None,
        };
        let aborted = fault.abort.is_some();
        if let Some(verdict) = callouts::run(check, body, call, meta.global_limit, aborted, &self.ctx, snap).await {
            match verdict {
                Verdict::Allow { upstream, downstream } => {
                    callouts::allow(&mut self.out, &mut disposition, &upstream, downstream)
                }
                Verdict::Deny { status, headers, body, details } => {
                    let unread = buffered_body_len(self.rb.data(), http1.framing, usize::MAX).is_none();
                    let end = Ending { close: !http1.keep_alive || self.closing() || unread, http10: http1.http10 };
                    self.out.clear();
                    let answer = Verdict::answer(&headers, status, &body, &meta);
                    let status = encode(&mut self.out, &answer, end);
                    disposition = Disposition::Local { answer: status, close: end.close, details };
                    fault = Injected::default();
                }
            }
        }
        // Envoy's fault filter: the delay first, then the abort, before any upstream is asked.
        if let Some(delay) = fault.delay {
            exchange::sleep(delay).await;
        }
        // Replaced in place: the plan is large, and most requests have no abort to move it for.
        if let Some(abort) = fault.abort {
            let unread = buffered_body_len(self.rb.data(), http1.framing, usize::MAX).is_none();
            let end = Ending { close: !http1.keep_alive || self.closing() || unread, http10: http1.http10 };
            self.out.clear();
            let status = encode(&mut self.out, &local::fault_abort(abort, meta.grpc), end);
            disposition = Disposition::Local { answer: status, close: end.close, details: FAULT_ABORT };
        }
        let next = match disposition {
            Disposition::Local { answer: status, close, details } => {
                self.note_status(status, local_flag(details), details);
                // An unread body would desync the connection: skip it if it is all here, else
                // the answer said `connection: close` and the close lingers.
                let body_done = self.skip_buffered_body(http1.framing);
                match self.write_out().await {
                    Err(_) => Next::Close,
                    Ok(()) if !body_done => Next::Linger,
                    Ok(()) if close => Next::Close,
                    Ok(()) => Next::KeepAlive,
                }
            }
            Disposition::Forward { route, dest, extras } => {
                let body = RefCell::new(H1Body::new(&mut self.rb, http1.framing, self.client.socket(), meta.grpc));
                let mut exchange = Exchange {
                    client: Http1Client::new(&mut self.client, &body, http1, &self.ctx, &self.peer, meta.grpc),
                    ctx: &self.ctx,
                    out: &mut self.out,
                    account: &mut self.account,
                    peer: self.peer.conn.peer,
                    max_request_duration: self.limits.max_request_duration,
                };
                let forwarded = exchange.forward(snap, meta, route, dest, extras).await;
                let close = exchange.client.closes();
                exchange.account.tally.saw(exchange.client.grpc_seen());
                match forwarded {
                    // The client's unread body would be taken for its next request.
                    Forwarded::Done { request_whole: false } => Next::Linger,
                    Forwarded::Done { .. } if close => Next::Close,
                    Forwarded::Done { .. } => Next::KeepAlive,
                    Forwarded::Upgraded(upstream) => Next::Upgrade(upstream),
                    Forwarded::Cut => Next::Close,
                    Forwarded::Failed(err) => self.fail_request(http1, meta.grpc, &err).await,
                }
            }
        };
        match next {
            Next::KeepAlive if self.closing() => Next::Close,
            other => other,
        }
    }

    fn closing(&self) -> bool {
        closing(&self.ctx, &self.peer)
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

    /// Answers a failure before any response byte went out, as a gRPC answer to a `grpc`
    /// request; the connection then ends as `end` says.
    async fn answer_error(&mut self, err: &ProxyError, grpc: bool, end: Ending) -> Next {
        tracing::debug!(peer = %self.peer.conn.peer, error = %err, "answering an error");
        self.out.clear();
        let status = encode(&mut self.out, &local::failure(err, grpc), end);
        let (flag, details) = err.log_fields();
        self.note_status(status, flag, details);
        if self.write_out().await.is_err() || end.close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Answers `err`; the client connection survives only when the request body was fully
    /// consumed, and the answer says which.
    async fn fail_request(&mut self, h1: Http1Request, grpc: bool, err: &ProxyError) -> Next {
        let body_done = self.skip_buffered_body(h1.framing);
        let close = !body_done || !h1.keep_alive || self.closing();
        match self.answer_error(err, grpc, Ending { close, http10: h1.http10 }).await {
            Next::Close if !body_done => Next::Linger,
            next => next,
        }
    }

    /// Notes the gateway's own answer that `out` holds.
    fn note_status(&mut self, status: u16, flag: &'static str, details: &'static str) {
        self.account.note_local(&self.ctx.stats, status, &self.out, flag, details);
    }

    /// Writes `out` whole to the client.
    async fn write_out(&mut self) -> std::io::Result<()> {
        self.account.tally.sent += self.out.len() as u64;
        let out = std::mem::take(&mut self.out);
        let (res, out) = self.client.write_all(out).await;
        self.out = out;
        res.map(drop)
    }
}

/// The connection takes no request after this one: the gateway drains, or the TLS settings it
/// was made under are gone.
fn closing(ctx: &WorkerCtx, peer: &Peer) -> bool {
    ctx.draining() || peer.stale()
}
