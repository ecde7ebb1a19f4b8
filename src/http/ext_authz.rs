//! CUSTOM AuthorizationPolicy: Envoy's `ext_authz` filter with an HTTP or gRPC authorization
//! service. The plan builds the check request while the head is borrowed ([`Check::new`]);
//! the session sends it ([`Check::run`]) before any upstream is asked, and acts on the
//! verdict: 200 (gRPC: OK) allows (the listed answer lines join the upstream head), any other
//! status denies with the server's status, lines and body, and a failure (no endpoint,
//! refused, timed out, unreadable) answers `statusOnError`, or allows with `failOpen`.

mod grpc;
pub(super) mod proto;

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use prost::Message;

use super::codec::{self, BodyFraming, ChunkedDecoder, HeaderSlots, Limits};
use super::exchange::{http1_connection, new_connection, release, Try};
use super::head::ReqMeta;
use super::local::Answer;
use super::peer::Peer;
use crate::percore::WorkerCtx;
use crate::snapshot::authz::ext_authz::{listed, ExtAuthz, HttpService, Kind, WithBody};
use crate::snapshot::RequestInfo;
use crate::upstream::{Generation, UpstreamStream};
use proto::CheckRequest;

/// Response code details and flag of a request the authorization server denied, and of one
/// whose check failed, as Envoy logs them.
pub(super) const DENIED: &str = "ext_authz_denied";
pub(super) const ERROR: &str = "ext_authz_error";
pub(super) const FLAG: &str = "UAEX";

/// The most of the authorization server's answer read: a denial's body is a short page.
pub(super) const MAX_ANSWER: usize = 64 * 1024;

/// Lines of the client's request Envoy's HTTP check never copies: they describe the client's
/// connection or its body, which the check does not carry; Host goes first on its own.
const NOT_COPIED: [&str; 8] =
    ["host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "upgrade", "expect"];

/// Lines of the server's denial the gateway's answer writes itself.
pub(super) const NOT_RELAYED: [&str; 7] =
    ["content-length", "transfer-encoding", "connection", "keep-alive", "date", "server", "host"];

/// Response code details of a request whose body outgrew `maxRequestBytes`, as Envoy's
/// buffer limit answers it (413).
pub(super) const TOO_LARGE: &str = "request_payload_too_large";

/// The line Envoy adds to a check that carries the body: whether it is only its first bytes.
const PARTIAL_BODY: &str = "x-envoy-auth-partial-body";

/// One check to make: the provider and its request, finished once the body is known.
pub(super) struct Check {
    provider: Arc<ExtAuthz>,
    request: Request,
}

enum Request {
    /// An HTTP/1.1 head up to its last lines (the body's length and the end).
    Http(Vec<u8>),
    Grpc(Box<CheckRequest>),
}

/// What the client's codec read of the request body for a provider that wants it (see
/// [`Check::body`]): at most the provider's `maxRequestBytes` and the bytes that show the body
/// goes on past them, if it does.
pub(super) struct BodyRead {
    pub(super) data: Vec<u8>,
    /// `data` is the whole body.
    pub(super) whole: bool,
}

/// What the session does with the request after the check.
pub(super) enum Verdict {
    /// Forwarded, `upstream`'s lines set on the upstream head and `downstream`'s added to the
    /// response the client gets.
    Allow { upstream: Vec<(String, String)>, downstream: Vec<(String, String)> },
    /// Answered by the gateway with this status, lines and body; `details` for the log.
    Deny { status: u16, headers: Vec<(String, String)>, body: Vec<u8>, details: &'static str },
}

impl Check {
    /// The check request for `info` (`target`: the path and query as sent): for a gRPC provider
    /// a `CheckRequest` (see [`grpc::request`]); for an HTTP one as Envoy's raw HTTP client
    /// writes it: the client's method, `pathPrefix` + the path, the client's Host, the
    /// `authorization` line and those `includeRequestHeadersInCheck`
    /// lists, then `includeAdditionalHeadersInCheck`; kept alive, as Envoy's pooled
    /// connection. Built only for a request a CUSTOM policy matched: the allocation and the
    /// provider's reference count are that request's.
    pub(super) fn new(
        provider: &Arc<ExtAuthz>,
        info: &RequestInfo<'_>,
        target: &str,
        peer: &Peer,
        protocol: &str,
    ) -> Check {
        let service = match &provider.kind {
            Kind::Http(service) => service,
            Kind::Grpc { .. } => {
                let request = Request::Grpc(Box::new(grpc::request(info, target, peer, protocol)));
                return Check { provider: provider.clone(), request };
            }
        };
        let mut r = Vec::with_capacity(512);
        for part in [info.method, " ", &service.path_prefix, target, " HTTP/1.1\r\nhost: ", info.host, "\r\n"] {
            r.extend_from_slice(part.as_bytes());
        }
        for h in info.headers {
            let name = h.name;
            let copied = name.eq_ignore_ascii_case("authorization") || listed(&service.allowed_headers, name);
            if copied && !NOT_COPIED.iter().any(|n| n.eq_ignore_ascii_case(name)) && !added(service, name) {
                put(&mut r, name.as_bytes(), h.value);
            }
        }
        for (name, value) in service.headers_to_add.iter() {
            put(&mut r, name.as_bytes(), value.as_bytes());
        }
        Check { provider: provider.clone(), request: Request::Http(r) }
    }

    /// `includeRequestBodyInCheck`: how much of the body the codec reads before [`Check::run`].
    pub(super) fn body(&self) -> Option<WithBody> {
        self.provider.body
    }

    /// Sends the check, with `body` as read for [`Check::body`] (none for a request without
    /// one), to an endpoint of the provider's cluster, bounded by its timeout; a failed check is
    /// answered as `failOpen` and `statusOnError` say. A body longer than `maxRequestBytes`
    /// without `allowPartialMessage` gets 413 unchecked, as Envoy's buffer limit answers (before
    /// `failOpen` is considered).
    pub(super) async fn run(self, ctx: &Rc<WorkerCtx>, snap: &Rc<Generation>, body: Option<BodyRead>) -> Verdict {
        let Check { provider, request } = self;
        let p = &*provider;
        let mut body = body.zip(p.body);
        if let Some((read, with)) = &mut body {
            // Only the first `maxRequestBytes` go: a longer body is a partial message.
            read.whole &= read.data.len() <= with.max;
            if !read.whole && !with.partial {
                let body = b"Payload Too Large".to_vec();
                return Verdict::Deny { status: 413, headers: Vec::new(), body, details: TOO_LARGE };
            }
            read.data.truncate(with.max);
        }
        let request = match request {
            Request::Http(head) => http_request(head, body.as_ref().map(|(read, _)| read)),
            Request::Grpc(check) => grpc::encode(*check, body),
        };
        let answer = match p.cluster {
            Some(id) => ask(ctx, snap, id, p, request).await,
            None => None,
        };
        match answer {
            Some(v) => v,
            None if p.fail_open => {
                tracing::debug!(provider = &*p.name, "ext_authz check failed; failOpen allows the request");
                Verdict::Allow { upstream: Vec::new(), downstream: Vec::new() }
            }
            None => {
                tracing::debug!(provider = &*p.name, "ext_authz check failed");
                Verdict::Deny { status: p.status_on_error, headers: Vec::new(), body: Vec::new(), details: ERROR }
            }
        }
    }
}

/// The HTTP check: `head`, then the body's length and, when the check carries it, the body and
/// Envoy's partial-body line.
fn http_request(mut head: Vec<u8>, body: Option<&BodyRead>) -> Vec<u8> {
    let Some(read) = body else {
        head.extend_from_slice(b"content-length: 0\r\n\r\n");
        return head;
    };
    put(&mut head, PARTIAL_BODY.as_bytes(), if read.whole { b"false" } else { b"true" });
    put(&mut head, b"content-length", read.data.len().to_string().as_bytes());
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(&read.data);
    head
}

/// A line `includeAdditionalHeadersInCheck` sets: the client's own is not copied.
fn added(service: &HttpService, name: &str) -> bool {
    service.headers_to_add.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

fn put(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The verdict of an endpoint of cluster `id` within the provider's timeout, or `None` when
/// none gave one.
async fn ask(
    ctx: &WorkerCtx,
    snap: &Rc<Generation>,
    id: crate::snapshot::ClusterId,
    p: &ExtAuthz,
    request: Vec<u8>,
) -> Option<Verdict> {
    on_endpoint(ctx, snap, id, p.timeout, async |at| match &p.kind {
        Kind::Http(service) => ask_http(ctx, at, request).await.and_then(|a| verdict(service, &a)),
        Kind::Grpc { authority } => {
            let answer = grpc::call(ctx, at, authority, proto::CHECK_PATH, p.timeout, request).await?;
            proto::CheckResponse::decode(&answer[..]).ok().map(grpc::verdict)
        }
    })
    .await
}

/// Envoy's network ext_authz filter as istiod configures it for a CUSTOM policy with an
/// `envoyExtAuthzGrpc` provider on a TCP server: the connection (`source`, `destination` and
/// the client certificate's URI SAN `principal`; no request) is checked once, before it goes
/// upstream. Whether it may go on: status OK allows, another status closes it, and a failed
/// check closes it unless `failOpen` (the filter's `failure_mode_allow`).
pub async fn connection_allowed(
    ctx: &WorkerCtx,
    snap: &Generation,
    p: &ExtAuthz,
    source: std::net::SocketAddr,
    destination: std::net::SocketAddr,
    principal: Option<&str>,
) -> bool {
    // The compiler keeps no HTTP provider at layer 4: istiod builds no filter for one there.
    let Kind::Grpc { authority } = &p.kind else { return true };
    let message = grpc::frame(&grpc::connection(source, destination, principal).encode_to_vec());
    let answer = match p.cluster {
        Some(id) => unary(ctx, snap, id, authority, proto::CHECK_PATH, p.timeout, message).await,
        None => None,
    };
    match answer.and_then(|a| proto::CheckResponse::decode(&a[..]).ok()) {
        Some(r) => r.status.map_or(0, |s| s.code) == 0,
        None => {
            tracing::debug!(provider = &*p.name, fail_open = p.fail_open, "ext_authz connection check failed");
            p.fail_open
        }
    }
}

/// `call` on an endpoint of cluster `id`, bounded by `timeout`; `None` when no endpoint is
/// there or none answered in time. The call goes through this worker's pools and the
/// cluster's breakers as a proxied request does (Envoy's ext_authz and rate limit filters call
/// through their cluster's connection pool).
async fn on_endpoint<T>(
    ctx: &WorkerCtx,
    snap: &Generation,
    id: crate::snapshot::ClusterId,
    timeout: std::time::Duration,
    call: impl AsyncFnOnce(&Try<'_>) -> Option<T>,
) -> Option<T> {
    let mut pick = ctx.upstream.balancer.pick(snap, id, &[], ctx.random(), None)?;
    let (cluster, live) = snap.cluster_live(id);
    // A failure path's and a check's lookup: one hash of the cluster's name.
    let stats = ctx.http_cluster(&cluster.name);
    let at = Try::call(pick.endpoint, &pick.counters, cluster, live, &stats);
    let answer = monoio::time::timeout(timeout, call(&at)).await.ok().flatten();
    // A call's outcome is not the endpoint's health: outlier detection does not count it.
    pick.settle(None);
    answer
}

/// One unary gRPC call (`message` already framed, see [`grpc_frame`]) to `path` on an endpoint
/// of cluster `id` within `timeout`: the answer's message, or `None`. The rate limit filter
/// asks its service through it as the gRPC check does.
pub(super) async fn unary(
    ctx: &WorkerCtx,
    snap: &Generation,
    id: crate::snapshot::ClusterId,
    authority: &str,
    path: &str,
    timeout: std::time::Duration,
    message: Vec<u8>,
) -> Option<Vec<u8>> {
    on_endpoint(ctx, snap, id, timeout, async |at| grpc::call(ctx, at, authority, path, timeout, message).await).await
}

pub(super) use grpc::frame as grpc_frame;

/// How reading a check's answer on one connection ended.
enum Answered {
    /// The whole answer; `reusable`: the connection may carry the next check.
    Whole {
        answer: Vec<u8>,
        reusable: bool,
    },
    /// The connection failed or closed before any byte of an answer: a pooled one the server
    /// closed meanwhile, worth one more try on a new connection.
    Nothing,
    Failed,
}

/// The HTTP server's whole answer, on a kept-alive connection of the cluster's pool. A pooled
/// connection that fails before any answer byte is replaced once by a new one, as the exchange
/// replays a request on a reused connection.
async fn ask_http(ctx: &WorkerCtx, at: &Try<'_>, mut request: Vec<u8>) -> Option<Vec<u8>> {
    let mut conn = http1_connection(at, ctx).await.ok()?;
    loop {
        at.stats.rq_total.inc();
        let (written, back) = conn.stream.write_all(request).await;
        request = back;
        let answered = match written {
            Ok(_) => read_answer(&mut conn.stream).await,
            Err(_) => Answered::Nothing,
        };
        match answered {
            Answered::Whole { answer, reusable } => {
                release(at, ctx, conn, reusable);
                return Some(answer);
            }
            Answered::Nothing if conn.reused => {
                tracing::debug!("ext_authz: a pooled connection closed before answering; checking on a new one");
                drop(conn);
                conn = new_connection(at, ctx).await.ok()?;
            }
            Answered::Nothing | Answered::Failed => return None,
        }
    }
}

async fn read_answer(stream: &mut UpstreamStream) -> Answered {
    let mut answer = Vec::with_capacity(4096);
    let mut buf = vec![0u8; 4096];
    loop {
        match whole(&answer, false) {
            Some(Some(reusable)) => return Answered::Whole { answer, reusable },
            Some(None) => {}
            None => return Answered::Failed,
        }
        let (n, b) = stream.read(buf).await;
        buf = b;
        match n {
            Ok(0) | Err(_) if answer.is_empty() => return Answered::Nothing,
            Ok(0) => {
                return match whole(&answer, true) {
                    Some(Some(_)) => Answered::Whole { answer, reusable: false },
                    _ => Answered::Failed,
                }
            }
            Err(_) => return Answered::Failed,
            Ok(n) if answer.len() + n > MAX_ANSWER => return Answered::Failed,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether the answer is here (`closed`: its connection ended): `Some(Some(reusable))` when
/// its head and body are (`reusable`: its connection may carry another check), `Some(None)`
/// when more is to come, `None` when it cannot be read.
fn whole(answer: &[u8], closed: bool) -> Option<Option<bool>> {
    let mut slots = HeaderSlots::new();
    let head = match codec::parse_response(answer, &mut slots, false, &Limits::default()) {
        Ok(Some(head)) => head,
        Ok(None) => return Some(None),
        Err(_) => return None,
    };
    let rest = &answer[head.head_len..];
    let done = match head.framing {
        BodyFraming::None => true,
        BodyFraming::ContentLength(n) => rest.len() >= n as usize,
        BodyFraming::Chunked => dechunked(rest)?.is_some(),
        BodyFraming::UntilClose => closed,
    };
    Some(done.then_some(head.keep_alive))
}

/// A chunked body's data once its last chunk is here (`Some(None)` before), `None` when its
/// framing is broken.
fn dechunked(mut rest: &[u8]) -> Option<Option<Vec<u8>>> {
    let mut decoder = ChunkedDecoder::decoding();
    let mut data = Vec::new();
    loop {
        let progress = decoder.feed(rest).ok()?;
        if let Some(span) = progress.data {
            data.extend_from_slice(&rest[span]);
        }
        rest = &rest[progress.consumed..];
        if progress.done {
            return Some(Some(data));
        }
        if rest.is_empty() {
            return Some(None);
        }
    }
}

/// Envoy's HTTP check client: 200 allows, with the lines `headersToUpstreamOnAllow` lists
/// for the upstream and those `headersToDownstreamOnAllow` lists for the client (Envoy's
/// `allowed_client_headers_on_success`);
/// any other status denies with the server's status, body and lines (those
/// `headersToDownstreamOnDeny` lists, or all of them when it lists none). `None`: no answer.
fn verdict(service: &HttpService, answer: &[u8]) -> Option<Verdict> {
    let mut slots = HeaderSlots::new();
    let head = codec::parse_response(answer, &mut slots, false, &Limits::default()).ok()??;
    let lines = |keep: &dyn Fn(&str) -> bool| -> Vec<(String, String)> {
        head.headers()
            .iter()
            .filter(|h| keep(h.name))
            .filter_map(|h| Some((h.name.to_ascii_lowercase(), std::str::from_utf8(h.value).ok()?.to_owned())))
            .collect()
    };
    if head.status == 200 {
        return Some(Verdict::Allow {
            upstream: lines(&|n| listed(&service.upstream_on_allow, n)),
            downstream: lines(&|n| listed(&service.downstream_on_allow, n)),
        });
    }
    let rest = &answer[head.head_len..];
    let body = match head.framing {
        BodyFraming::None => Vec::new(),
        BodyFraming::ContentLength(n) => rest.get(..n as usize)?.to_vec(),
        BodyFraming::UntilClose => rest.to_vec(),
        BodyFraming::Chunked => dechunked(rest)??,
    };
    let headers = lines(&|n| {
        !NOT_RELAYED.iter().any(|x| x.eq_ignore_ascii_case(n))
            && (service.downstream_on_deny.is_empty() || listed(&service.downstream_on_deny, n))
    });
    Some(Verdict::Deny { status: head.status, headers, body, details: DENIED })
}

impl Verdict {
    /// A denial as the gateway's answer to the request `meta` describes (its gRPC form for a
    /// gRPC request).
    pub(super) fn answer<'a>(
        headers: &'a [(String, String)],
        status: u16,
        body: &'a [u8],
        meta: &ReqMeta,
    ) -> Answer<'a> {
        let headers = headers.iter().map(|(n, v)| (n.as_str(), Cow::Borrowed(v.as_str()))).collect();
        let answer = Answer { status, headers, body, omit_body: meta.is_head };
        if meta.grpc {
            answer.grpc(None)
        } else {
            answer
        }
    }
}

/// Sets `lines` on the upstream head in `out` (a whole HTTP/1.1 head, nothing after it),
/// replacing the head's lines of the same names, as Envoy's `setCopy` of the allowed upstream
/// headers does. They go right after the request line: the head's last lines are the try's,
/// which a retry rewrites in place (`codec::rewrite_try_lines`).
pub(super) fn set_upstream(out: &mut Vec<u8>, lines: &[(String, String)]) {
    if lines.is_empty() || !out.ends_with(b"\r\n\r\n") {
        return;
    }
    let head = std::mem::take(out);
    let mut head_lines = head[..head.len() - 2].split_inclusive(|&b| b == b'\n');
    out.extend_from_slice(head_lines.next().unwrap_or_default());
    for (n, v) in lines {
        put(out, n.as_bytes(), v.as_bytes());
    }
    for line in head_lines {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        if !lines.iter().any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name)) {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::authz::Pattern;

    #[test]
    fn allowed_lines_replace_the_upstream_heads_own_after_its_request_line() {
        let mut out = b"GET / HTTP/1.1\r\nhost: a\r\nX-User: mallory\r\nx-keep: 1\r\n\r\n".to_vec();
        set_upstream(&mut out, &[("x-user".into(), "alice".into())]);
        assert_eq!(out, b"GET / HTTP/1.1\r\nx-user: alice\r\nhost: a\r\nx-keep: 1\r\n\r\n");
    }

    #[test]
    fn a_retry_rewrites_its_lines_in_a_head_with_allowed_lines() {
        use crate::http::codec::{self, RequestEdits, TryLines};
        let first = TryLines { attempt: Some(1), ..TryLines::default() };
        let mut slots = codec::HeaderSlots::new();
        let raw = b"GET /a HTTP/1.1\r\nhost: app\r\n\r\n";
        let head = codec::parse_request(raw, &mut slots, &codec::Limits::default()).unwrap().unwrap();
        let mut out = Vec::new();
        codec::write_request_head(&mut out, &head, &RequestEdits { try_lines: first, ..RequestEdits::default() });
        set_upstream(&mut out, &[("x-user".into(), "alice".into())]);
        let second = TryLines { attempt: Some(2), ..first };
        let len = out.len();
        let end = codec::rewrite_try_lines(&mut out, len, &first, &second);
        assert_eq!(end, out.len());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /a HTTP/1.1\r\nx-user: alice\r\nhost: app\r\nx-forwarded-proto: http\r\nx-envoy-attempt-count: 2\r\n\r\n"
        );
    }

    #[test]
    fn a_denial_keeps_the_listed_lines_and_the_body_its_length_gives() {
        let service = HttpService {
            downstream_on_deny: [Pattern::ExactIgnoreCase("x-reason".into())].into(),
            ..HttpService::default()
        };
        let answer = b"HTTP/1.1 403 Forbidden\r\nX-Reason: no\r\nx-other: 1\r\ncontent-length: 2\r\n\r\nnoEXTRA";
        let Some(Verdict::Deny { status, headers, body, details }) = verdict(&service, answer) else {
            panic!("a 403 denies");
        };
        assert_eq!(
            (status, headers, body, details),
            (403, vec![("x-reason".into(), "no".into())], b"no".to_vec(), DENIED)
        );
        assert!(
            matches!(verdict(&service, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), Some(Verdict::Allow { upstream, .. }) if upstream.is_empty())
        );
        assert!(verdict(&service, b"garbage\r\n\r\n").is_none(), "an unreadable answer is a failed check");
    }
}
