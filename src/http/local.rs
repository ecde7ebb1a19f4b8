//! Answers the gateway gives itself: 404, redirects, direct responses, errors.
//!
//! Each writer appends a complete response to `out` and returns its status.

use std::cell::RefCell;

use super::codec::{self, DateCache, SimpleResponse};
use crate::snapshot::{Redirect, RedirectPort, RequestInfo};

thread_local! {
    /// One formatted `date` per second per worker.
    static DATE: RefCell<DateCache> = RefCell::new(DateCache::default());
}

/// How the client connection goes on after an answer.
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    /// Closed after the answer, which says so (`connection: close`).
    pub close: bool,
    /// The client spoke HTTP/1.0: a connection kept open is said to be
    /// (`connection: keep-alive`), as HTTP/1.0 closes unless told otherwise.
    pub http10: bool,
}

impl Ending {
    /// Closed, whatever the client spoke: e.g. after a request whose head did not parse.
    pub const CLOSE: Ending = Ending { close: true, http10: false };
}

/// A plain answer: `content-type: text/plain` when there is a body.
pub fn simple(out: &mut Vec<u8>, status: u16, body: &[u8], end: Ending) -> u16 {
    answer(out, status, &[], body, false, end)
}

/// An answer with extra header lines (a route's response `headers`, CORS); `is_head` leaves
/// the body out but keeps its length.
pub fn answer(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    is_head: bool,
    end: Ending,
) -> u16 {
    let resp = SimpleResponse {
        status,
        headers,
        body,
        close: end.close,
        http10: end.http10,
        omit_body: is_head,
        ..SimpleResponse::default()
    };
    date(|date| codec::write_simple_response(out, &resp, date));
    status
}

/// Calls `f` with the current `date` value, formatted at most once a second on this worker.
pub fn date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    DATE.with(|d| f(d.borrow_mut().now()))
}

/// No virtual host or route: 404 with an empty body, as Envoy answers (NR).
pub fn not_found(out: &mut Vec<u8>, end: Ending) -> u16 {
    simple(out, 404, b"", end)
}

/// A `tls.httpsRedirect` server: 301 to https, Host kept verbatim (port included).
pub fn https_redirect(out: &mut Vec<u8>, req: &RequestInfo<'_>, end: Ending) -> u16 {
    let location = location("https", req.host, req.path, req.query);
    answer(out, 301, &[("location", &location)], b"", false, end)
}

/// An HTTPRoute `redirect`: scheme, authority, port and path replaced as configured, the
/// query string kept; default ports are left out of Location. `headers` follow Location.
pub fn redirect(
    out: &mut Vec<u8>,
    r: &Redirect,
    req: &RequestInfo<'_>,
    listener_port: u16,
    headers: &[(&str, &str)],
    end: Ending,
) -> u16 {
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
    let mut lines = Vec::with_capacity(1 + headers.len());
    lines.push(("location", location.as_str()));
    lines.extend_from_slice(headers);
    answer(out, r.code, &lines, b"", false, end)
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
