//! Answers the gateway gives itself: 404, redirects, direct responses, errors.
//!
//! Each is a codec-neutral [`Answer`]: the session encodes it in its client's protocol.

use std::borrow::Cow;

use super::error::ProxyError;
use super::fault;
use super::grpc;
use crate::snapshot::{AbortStatus, Redirect, RedirectPort, RequestInfo};

/// A header line of an answer: most values are borrowed, a Location is formatted for it.
pub(super) type Line<'a> = (&'a str, Cow<'a, str>);

/// One of the gateway's own answers, whatever protocol carries it.
pub(super) struct Answer<'a> {
    pub(super) status: u16,
    /// Lines besides the standard ones (length, type, date, server), in order.
    pub(super) headers: Vec<Line<'a>>,
    pub(super) body: &'a [u8],
    /// The request was HEAD: the body's length is given, not its bytes.
    pub(super) omit_body: bool,
}

impl<'a> Answer<'a> {
    /// A plain answer: `content-type: text/plain` when there is a body.
    pub(super) fn simple(status: u16, body: &'a [u8]) -> Self {
        Answer { status, headers: Vec::new(), body, omit_body: false }
    }

    /// This answer as Envoy's local reply gives it to a gRPC request: HTTP 200,
    /// `content-type: application/grpc`, `grpc-status` (`status`, else mapped from the HTTP
    /// status; one the route's response edits set is kept), the text as `grpc-message`, no
    /// body (a trailers-only response). The other lines stay.
    pub(super) fn grpc(self, status: Option<u8>) -> Self {
        let Answer { status: http, mut headers, body, omit_body } = self;
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        headers.push(("content-type", Cow::Borrowed(grpc::CONTENT_TYPE)));
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("grpc-status")) {
            let code = status.unwrap_or_else(|| grpc::from_http(http));
            headers.push(("grpc-status", Cow::Borrowed(grpc::value(code))));
        }
        if !body.is_empty() && !omit_body {
            headers.push(("grpc-message", grpc::message(body)));
        }
        Answer { status: 200, headers, body: b"", omit_body }
    }
}

/// The answer to a request that failed with `err` before any response byte went out, a gRPC
/// answer to a `grpc` request.
pub(super) fn failure(err: &ProxyError, grpc: bool) -> Answer<'static> {
    let (status, body) = err.answer();
    // Envoy marks answers its circuit breakers gave, so clients can tell them from the upstream's.
    let headers = match err {
        ProxyError::Overflow => vec![("x-envoy-overloaded", Cow::Borrowed("true"))],
        _ => Vec::new(),
    };
    let answer = Answer { headers, ..Answer::simple(status, body.as_bytes()) };
    if grpc {
        answer.grpc(err.grpc_status())
    } else {
        answer
    }
}

/// Envoy's fault filter abort: `httpStatus`, or a `grpcStatus` as HTTP 200 (its gRPC status
/// said to a `grpc` request only), with the filter's body.
pub(super) fn fault_abort(abort: AbortStatus, grpc: bool) -> Answer<'static> {
    let (status, grpc_status) = match abort {
        AbortStatus::Http(status) => (status, None),
        AbortStatus::Grpc(code) => (200, Some(code)),
    };
    let answer = Answer::simple(status, fault::ABORT_BODY);
    if grpc {
        answer.grpc(grpc_status)
    } else {
        answer
    }
}

/// A request Envoy's connection manager refuses before routing (a path `pathNormalization`
/// cannot read): 400 with an empty body.
pub(super) fn bad_request() -> Answer<'static> {
    Answer::simple(400, b"")
}

/// No virtual host or route: 404 with an empty body, as Envoy answers (NR).
pub(super) fn not_found() -> Answer<'static> {
    Answer::simple(404, b"")
}

/// A request on a connection whose TLS server does not serve its host, when another server of
/// the port does: 421 with an empty body, so that the client retries on a new connection.
pub(super) fn misdirected() -> Answer<'static> {
    Answer::simple(421, b"")
}

/// A `tls.httpsRedirect` server: 301 to https, Host kept verbatim (port included).
pub(super) fn https_redirect(req: &RequestInfo<'_>) -> Answer<'static> {
    let location = location("https", req.host, req.path, req.query);
    Answer { headers: vec![("location", Cow::Owned(location))], ..Answer::simple(301, b"") }
}

/// An HTTPRoute `redirect`: scheme, authority, port and path replaced as configured, the
/// query string kept; default ports are left out of Location. `headers` follow Location.
pub(super) fn redirect<'a>(
    r: &Redirect,
    req: &RequestInfo<'_>,
    listener_port: u16,
    mut headers: Vec<Line<'a>>,
) -> Answer<'a> {
    let scheme = r.scheme.as_deref().unwrap_or(req.scheme);
    let (req_host, req_port) = split_host_port(req.host);
    let host = r.authority.as_deref().unwrap_or(req_host);
    let port = match r.port {
        RedirectPort::Fixed(p) => Some(p),
        RedirectPort::FromRequestPort => Some(listener_port),
        RedirectPort::FromProtocolDefault => None,
        // A new authority brings its own (default) port; otherwise the request's is kept.
        RedirectPort::Unchanged if r.authority.is_some() => None,
        RedirectPort::Unchanged => req_port,
    };
    let default = if scheme == "https" { 443 } else { 80 };
    let authority = match port {
        Some(p) if p != default => format!("{host}:{p}"),
        _ => host.to_string(),
    };
    let path = r.uri.as_deref().unwrap_or(req.path);
    let location = location(scheme, &authority, path, req.query);
    headers.insert(0, ("location", Cow::Owned(location)));
    Answer { headers, ..Answer::simple(r.code, b"") }
}

fn location(scheme: &str, authority: &str, path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{scheme}://{authority}{path}?{q}"),
        None => format!("{scheme}://{authority}{path}"),
    }
}

/// `host:port` → (host, port); IPv6 literals keep their brackets.
fn split_host_port(host: &str) -> (&str, Option<u16>) {
    let bare = crate::snapshot::strip_port(host);
    let port = host[bare.len()..].strip_prefix(':').and_then(|p| p.parse().ok());
    (bare, port)
}
