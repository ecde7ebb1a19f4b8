//! CUSTOM AuthorizationPolicy: Envoy's `ext_authz` filter with an HTTP or gRPC authorization
//! service. The plan builds the check request while the head is borrowed ([`Check::new`]);
//! the session sends it ([`Check::run`]) before any upstream is asked, and acts on the
//! verdict: 200 (gRPC: OK) allows (the listed answer lines join the upstream head), any other
//! status denies with the server's status, lines and body, and a failure (no endpoint,
//! refused, timed out, unreadable) answers `statusOnError`, or allows with `failOpen`.

mod grpc;
mod proto;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use prost::Message;

use super::codec::{self, BodyFraming, HeaderSlots, Limits};
use super::local::Answer;
use super::peer::Peer;
use crate::percore::WorkerCtx;
use crate::snapshot::authz::ext_authz::{listed, ExtAuthz, HttpService, Kind};
use crate::snapshot::{Cluster, RequestInfo};
use crate::upstream::{connect, Generation};

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

/// One check to make: the provider and its request, an HTTP/1.1 head with no body or a
/// length-prefixed gRPC message.
pub(super) struct Check {
    provider: Arc<ExtAuthz>,
    request: Vec<u8>,
}

/// What the session does with the request after the check.
pub(super) enum Verdict {
    /// Forwarded, these lines set on the upstream head.
    Allow(Vec<(String, String)>),
    /// Answered by the gateway with this status, lines and body; `details` for the log.
    Deny { status: u16, headers: Vec<(String, String)>, body: Vec<u8>, details: &'static str },
}

impl Check {
    /// The check request for `info` (`target`: the path and query as sent): for a gRPC provider
    /// a `CheckRequest` (see [`grpc::request`]); for an HTTP one as Envoy's raw HTTP client
    /// writes it: the client's method, `pathPrefix` + the path, the client's Host,
    /// `content-length: 0`, the `authorization` line and those `includeRequestHeadersInCheck`
    /// lists, then `includeAdditionalHeadersInCheck`. Built only for a request a CUSTOM policy
    /// matched: the allocation and the provider's reference count are that request's.
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
                return Check { provider: provider.clone(), request: grpc::request(info, target, peer, protocol) };
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
        r.extend_from_slice(b"content-length: 0\r\nconnection: close\r\n\r\n");
        Check { provider: provider.clone(), request: r }
    }

    /// Sends the check to an endpoint of the provider's cluster, bounded by its timeout; a
    /// failed check is answered as `failOpen` and `statusOnError` say.
    pub(super) async fn run(self, ctx: &Rc<WorkerCtx>, snap: &Rc<Generation>) -> Verdict {
        let Check { provider, request } = self;
        let p = &*provider;
        let answer = match p.cluster {
            Some(id) => ask(ctx, snap, id, p, request).await,
            None => None,
        };
        match answer {
            Some(v) => v,
            None if p.fail_open => {
                tracing::debug!(provider = &*p.name, "ext_authz check failed; failOpen allows the request");
                Verdict::Allow(Vec::new())
            }
            None => {
                tracing::debug!(provider = &*p.name, "ext_authz check failed");
                Verdict::Deny { status: p.status_on_error, headers: Vec::new(), body: Vec::new(), details: ERROR }
            }
        }
    }
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
    on_endpoint(ctx, snap, id, p.timeout, |addr, cluster| async move {
        match &p.kind {
            Kind::Http(service) => ask_http(ctx, addr, cluster, request).await.and_then(|a| verdict(service, &a)),
            Kind::Grpc { authority } => {
                let answer = grpc::call(ctx, addr, cluster, authority, proto::CHECK_PATH, p.timeout, request).await?;
                proto::CheckResponse::decode(&answer[..]).ok().map(grpc::verdict)
            }
        }
    })
    .await
}

/// `call` on an endpoint of cluster `id`, bounded by `timeout`; `None` when no endpoint is
/// there or none answered in time.
async fn on_endpoint<'a, T, F: std::future::Future<Output = Option<T>>>(
    ctx: &'a WorkerCtx,
    snap: &'a Rc<Generation>,
    id: crate::snapshot::ClusterId,
    timeout: std::time::Duration,
    call: impl FnOnce(SocketAddr, &'a Cluster) -> F,
) -> Option<T> {
    let mut pick = ctx.upstream.balancer.pick(snap, id, &[], ctx.random(), None)?;
    let cluster = snap.cluster(id);
    let addr = cluster.endpoints[pick.endpoint].addr;
    let answer = monoio::time::timeout(timeout, call(addr, cluster)).await.ok().flatten();
    // A check's outcome is not the endpoint's health: outlier detection does not count it.
    pick.settle(None);
    answer
}

/// One unary gRPC call (`message` already framed, see [`grpc_frame`]) to `path` on an endpoint
/// of cluster `id` within `timeout`: the answer's message, or `None`. The rate limit filter
/// asks its service through it as the gRPC check does.
pub(super) async fn unary(
    ctx: &WorkerCtx,
    snap: &Rc<Generation>,
    id: crate::snapshot::ClusterId,
    authority: &str,
    path: &str,
    timeout: std::time::Duration,
    message: Vec<u8>,
) -> Option<Vec<u8>> {
    on_endpoint(ctx, snap, id, timeout, |addr, cluster| {
        grpc::call(ctx, addr, cluster, authority, path, timeout, message)
    })
    .await
}

pub(super) use grpc::frame as grpc_frame;

/// The HTTP server's whole answer (its connection closes after it).
async fn ask_http(ctx: &WorkerCtx, addr: SocketAddr, cluster: &Cluster, request: Vec<u8>) -> Option<Vec<u8>> {
    let mut stream = connect(addr, cluster, |c| ctx.tls.client(c)).await.ok()?;
    stream.write_all(request).await.0.ok()?;
    let mut answer = Vec::with_capacity(4096);
    let mut buf = vec![0u8; 4096];
    while !whole(&answer) {
        let (n, b) = stream.read(buf).await;
        buf = b;
        match n.ok()? {
            0 => break,
            n if answer.len() + n > MAX_ANSWER => return None,
            n => answer.extend_from_slice(&buf[..n]),
        }
    }
    Some(answer)
}

/// The answer's head is here and, when it says its length, its body too.
fn whole(answer: &[u8]) -> bool {
    let mut slots = HeaderSlots::new();
    match codec::parse_response(answer, &mut slots, false, &Limits::default()) {
        Ok(Some(head)) => match head.framing {
            BodyFraming::None => true,
            BodyFraming::ContentLength(n) => answer.len() - head.head_len >= n as usize,
            BodyFraming::Chunked | BodyFraming::UntilClose => false,
        },
        _ => false,
    }
}

/// Envoy's HTTP check client: 200 allows, with the lines `headersToUpstreamOnAllow` lists;
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
        return Some(Verdict::Allow(lines(&|n| listed(&service.upstream_on_allow, n))));
    }
    let rest = &answer[head.head_len..];
    let body = match head.framing {
        BodyFraming::None => &[][..],
        BodyFraming::ContentLength(n) => rest.get(..n as usize)?,
        BodyFraming::UntilClose => rest,
        // A chunked denial is relayed without its body rather than with its framing.
        BodyFraming::Chunked => &[][..],
    };
    let headers = lines(&|n| {
        !NOT_RELAYED.iter().any(|x| x.eq_ignore_ascii_case(n))
            && (service.downstream_on_deny.is_empty() || listed(&service.downstream_on_deny, n))
    });
    Some(Verdict::Deny { status: head.status, headers, body: body.to_vec(), details: DENIED })
}

impl Verdict {
    /// A denial as the gateway's answer (its gRPC form is the caller's).
    pub(super) fn answer<'a>(headers: &'a [(String, String)], status: u16, body: &'a [u8], head: bool) -> Answer<'a> {
        let headers = headers.iter().map(|(n, v)| (n.as_str(), Cow::Borrowed(v.as_str()))).collect();
        Answer { status, headers, body, omit_body: head }
    }
}

/// Sets `lines` on the upstream head in `out` (a whole HTTP/1.1 head, nothing after it),
/// replacing the head's lines of the same names, as Envoy's `setCopy` of the allowed upstream
/// headers does.
pub(super) fn set_upstream(out: &mut Vec<u8>, lines: &[(String, String)]) {
    if lines.is_empty() || !out.ends_with(b"\r\n\r\n") {
        return;
    }
    let head = std::mem::take(out);
    let body = &head[..head.len() - 2];
    let mut first = true;
    for line in body.split_inclusive(|&b| b == b'\n') {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        if first || !lines.iter().any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name)) {
            out.extend_from_slice(line);
        }
        first = false;
    }
    for (n, v) in lines {
        put(out, n.as_bytes(), v.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::authz::Pattern;

    #[test]
    fn allowed_lines_replace_the_upstream_heads_own_and_join_before_its_end() {
        let mut out = b"GET / HTTP/1.1\r\nhost: a\r\nX-User: mallory\r\nx-keep: 1\r\n\r\n".to_vec();
        set_upstream(&mut out, &[("x-user".into(), "alice".into())]);
        assert_eq!(out, b"GET / HTTP/1.1\r\nhost: a\r\nx-keep: 1\r\nx-user: alice\r\n\r\n");
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
            matches!(verdict(&service, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), Some(Verdict::Allow(l)) if l.is_empty())
        );
        assert!(verdict(&service, b"garbage\r\n\r\n").is_none(), "an unreadable answer is a failed check");
    }
}
