//! An HTTP/2 request as the plan reads it, and HTTP/1.1 heads as an HTTP/2 client gets them.
//!
//! The request is written once as the HTTP/1.1 head it stands for (`:authority` as `host`,
//! `:path` as the target, cookies joined, the body framed by `content-length` or chunked) and
//! parsed by the HTTP/1.1 codec: routing, the route's edits and the upstream head are then
//! the codec's own, byte for byte, and the codec's strictness (header names and values, the
//! target, framing) applies to HTTP/2 requests too. Responses go the other way: the codec
//! writes the client's head (its edits, hop-by-hop fields dropped) and [`response_of`] reads
//! it into an HTTP/2 response without the fields that only HTTP/1.1 framing needs.
//!
//! Where both ends speak HTTP/2 the fields need not be written out and read again: the same
//! edits, from the codec's one set of rules, are applied to the HTTP/2 map itself ([`MapOut`]),
//! the upstream's for its response ([`response_from`]) and the client's for the request's
//! first try ([`request_from`]); unit tests hold both ways to the same result.

use std::cell::Cell;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, COOKIE, HOST};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::StatusCode;

use crate::http::codec::{
    self, BodyFraming, Fields, HeadOut, Own, RequestEdits, RequestHead, RequestOut, ResponseEdits, ResponseHead,
    ResponseOut, Written,
};
use crate::http::h2_io::{connection_specific, field_name, own_field, shared_slice, FIELDS_ROOM, X_REQUEST_ID};
use crate::http::head::{ReqMeta, RequestView};
use crate::snapshot::RequestInfo;

/// Why an HTTP/2 request cannot stand as an HTTP/1.1 one: malformed (RFC 9113 §8.1.1), its
/// stream is reset with `PROTOCOL_ERROR`.
#[derive(Debug)]
pub(super) struct Malformed;

/// Whether `req` is an extended CONNECT for a WebSocket (RFC 8441 §4: `:protocol websocket`);
/// `Err` for another protocol, which has no HTTP/1.1 upgrade we could ask for.
fn websocket(req: &Parts) -> Result<bool, Malformed> {
    match req.extensions.get::<h2::ext::Protocol>() {
        None => Ok(false),
        Some(p) if req.method == http::Method::CONNECT && p.as_str().eq_ignore_ascii_case("websocket") => Ok(true),
        Some(_) => Err(Malformed),
    }
}

/// Writes into `out` the HTTP/1.1 head `req` stands for; `ends`: the request ended with its
/// headers (no body, so no framing). An extended CONNECT for a WebSocket is written as the
/// HTTP/1.1 upgrade it stands for (RFC 8441 §5): a `GET` of its path asking `Upgrade:
/// websocket`, with `key` as `Sec-WebSocket-Key` (HTTP/2 has none) unless the client sent one.
pub(super) fn write_h1_request(
    req: &Parts,
    ends: bool,
    key: impl FnOnce() -> [u8; 16],
    out: &mut Vec<u8>,
) -> Result<(), Malformed> {
    let websocket = websocket(req)?;
    // CONNECT names an authority, not a path (RFC 9113 §8.5): the codec judges it as it judges
    // an HTTP/1.1 CONNECT.
    let target = match (&req.method, req.uri.authority()) {
        (&http::Method::CONNECT, Some(a)) if !websocket => a.as_str(),
        // A CONNECT names its target in `:authority` alone (RFC 9113 §8.5).
        (&http::Method::CONNECT, None) => return Err(Malformed),
        _ => req.uri.path_and_query().map_or("/", |p| p.as_str()),
    };
    let method = if websocket { "GET" } else { req.method.as_str() };
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = req.uri.authority();
    if let Some(a) = authority {
        line(out, b"host", a.as_str().as_bytes())?;
    }
    let mut cookies = 0;
    let mut framed = false;
    for (name, value) in &req.headers {
        let name_bytes = name.as_str().as_bytes();
        if connection_specific(name_bytes) || (name == "te" && value.as_bytes() != b"trailers") {
            return Err(Malformed);
        }
        // A `host` beside `:authority` must name the same authority: RFC 9113 §8.3.1 says a
        // server SHOULD refuse one that differs. Envoy lets it pass (oghttp2's
        // `allow_different_host_and_authority`) and drops it; refused here, an HTTP/1.1
        // upstream can never be told a second host. An equal one is dropped as a repeat.
        if let (true, Some(a)) = (name == HOST, authority) {
            match value.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) {
                true => continue,
                false => return Err(Malformed),
            }
        }
        // Cookie crumbs are joined into one line for HTTP/1.1 (RFC 9113 §8.2.3).
        if name == COOKIE {
            cookies += 1;
            continue;
        }
        framed |= name == "content-length";
        line(out, name_bytes, value.as_bytes())?;
    }
    if cookies > 0 {
        out.extend_from_slice(b"cookie: ");
        for (i, value) in req.headers.get_all(COOKIE).iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            checked(value.as_bytes())?;
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    if websocket {
        // The stream's DATA after the answer are the WebSocket's bytes, not a request body.
        out.extend_from_slice(b"connection: upgrade\r\nupgrade: websocket\r\n");
        if !req.headers.contains_key("sec-websocket-key") {
            use base64::Engine as _;
            out.extend_from_slice(b"sec-websocket-key: ");
            out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(key()).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    } else if !framed && !ends {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// A value that would end its line early cannot go into an HTTP/1.1 head: CR, LF or NUL in a
/// field value make an HTTP/2 request malformed (RFC 9113 §8.2.1), and so does whitespace
/// leading or trailing it, which HTTP/1.1 would strip (a value that differs by hop).
fn checked(value: &[u8]) -> Result<(), Malformed> {
    let blank = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    match value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) || blank(value.first()) || blank(value.last()) {
        true => Err(Malformed),
        false => Ok(()),
    }
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> Result<(), Malformed> {
    checked(value)?;
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// The HTTP/1.1 head an HTTP/2 request was written as, seen as what it is: no `100-continue`
/// (HTTP/2 has none in that form), an upgrade only from a WebSocket's extended CONNECT (the
/// client's own `connection` and `upgrade` fields are refused), and `HTTP/2` in the access log.
pub(super) struct H2Head<'b> {
    head: codec::RequestHead<'b>,
    /// The client's request line and fields, for the one HTTP/2 upstream head made of them.
    client: Cell<Option<Parts>>,
}

impl<'b> H2Head<'b> {
    /// `head`: `client`'s HTTP/1.1 head ([`write_h1_request`]), parsed.
    pub(super) fn new(head: codec::RequestHead<'b>, client: Parts) -> Self {
        H2Head { head, client: Cell::new(Some(client)) }
    }
}

impl RequestView for H2Head<'_> {
    fn info<'h>(&'h self, scheme: &'h str) -> RequestInfo<'h> {
        self.head.info(scheme)
    }

    fn meta(&self) -> ReqMeta {
        self.head.meta()
    }

    fn upgrade(&self) -> bool {
        self.head.upgrade()
    }

    fn expects_continue(&self) -> bool {
        false
    }

    fn write_upstream(&self, out: &mut Vec<u8>, edits: &RequestEdits<'_>) {
        codec::write_request_head(out, &self.head, edits);
    }

    fn upstream_h2(&self, edits: &RequestEdits<'_>, tls: bool) -> Option<(http::Request<()>, BodyFraming)> {
        let request = request_from(self.client.take()?, &self.head, edits, tls)?;
        Some((request, self.head.framing))
    }

    fn target(&self) -> &str {
        self.head.target
    }

    fn protocol(&self) -> &'static str {
        "HTTP/2"
    }

    fn coalesces(&self) -> bool {
        true
    }
}

/// The HTTP/2 response for an HTTP/1.1 response head the codec wrote at the start of `h1`, and
/// the head's length; `None` if it does not read (never for the codec's own heads). Read back
/// line by line ([`Written`]): the codec checked every byte of it already.
pub(super) fn response_of(h1: &[u8]) -> Option<(http::Response<()>, usize)> {
    let head = Written::of(h1)?;
    let mut response = http::Response::new(());
    *response.status_mut() = http::StatusCode::from_u16(head.status()?).ok()?;
    // One copy of the head that every value is a slice of, rather than a copy of each value.
    let shared = Bytes::copy_from_slice(&h1[..head.len]);
    let headers = response.headers_mut();
    *headers = HeaderMap::with_capacity(FIELDS_ROOM);
    for (name, value) in head.fields() {
        if connection_specific(name) {
            continue;
        }
        let name = field_name(name).ok()?;
        headers.append(name, HeaderValue::from_maybe_shared(shared_slice(&shared, h1, value)).ok()?);
    }
    Some((response, head.len))
}

/// The HTTP/2 response for an HTTP/2 upstream's `head`, whose fields `upstream` holds as they
/// came: the codec's edits ([`codec::edit_response_head`], the rules the HTTP/1.1 text gets)
/// applied to that map, so that nothing is written as text and read back, and the upstream's
/// names and values go on without a second check; `None` if an edit's value does not fit
/// HTTP/2. What [`response_of`] reads from the text the same rules write.
pub(super) fn response_from(
    upstream: HeaderMap,
    head: &ResponseHead<'_>,
    edits: &ResponseEdits<'_>,
) -> Option<http::Response<()>> {
    // `content-length`, `date`, `server`, the service time.
    let mut map = MapOut::new(StatusCode::OK, upstream, 4);
    codec::edit_response_head(&mut map, head, edits);
    let mut response = http::Response::new(());
    (*response.status_mut(), *response.headers_mut()) = (map.pseudo, map.fields);
    map.fits.then_some(response)
}

/// The HTTP/2 request for an HTTP/2 upstream that `client`'s request (parsed from its
/// HTTP/1.1 text as `head`) goes up as: the codec's edits ([`codec::edit_request_head`], the
/// rules the text gets) applied to the client's own fields, where `request_of` would read them
/// back from that text. `tls`: the upstream is reached over TLS. `None` for what only the text
/// carries (an upgrade, a CONNECT) or an edit HTTP/2 cannot carry: the text's way then.
pub(super) fn request_from(
    client: Parts,
    head: &RequestHead<'_>,
    edits: &RequestEdits<'_>,
    tls: bool,
) -> Option<http::Request<()>> {
    if head.upgrade.is_some() || client.method == http::Method::CONNECT {
        return None;
    }
    let Parts { method, uri, mut headers, .. } = client;
    // A `host` beside `:authority` names the same one (`write_h1_request` refuses another): the
    // authority alone goes up, as from the text.
    headers.remove(HOST);
    // The client's cookie crumbs go up joined, as its text has them (and Envoy's codec joins
    // them).
    if headers.get_all(COOKIE).iter().nth(1).is_some() {
        let joined = headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes).collect::<Vec<_>>().join(&b"; "[..]);
        headers.insert(COOKIE, HeaderValue::from_bytes(&joined).ok()?);
    }
    let uri = uri.into_parts();
    let line = RequestLine { method, path: uri.path_and_query?, authority: uri.authority };
    // The forwarding fields, the request id, the try's count, a length.
    let mut map = MapOut::new(line, headers, 6);
    codec::edit_request_head(&mut map, head, edits);
    let MapOut { pseudo: RequestLine { method, path, authority }, mut fields, fits } = map;
    if !fits {
        return None;
    }
    // See `request_of`: a value new on every request, never indexed.
    if let Some(id) = fields.get_mut(X_REQUEST_ID) {
        id.set_sensitive(true);
    }
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = http::Uri::builder()
        .scheme(if tls { Scheme::HTTPS } else { Scheme::HTTP })
        .authority(authority?)
        .path_and_query(path)
        .build()
        .ok()?;
    *request.headers_mut() = fields;
    Some(request)
}

/// An HTTP/2 head as a head's edits leave it: its pseudo-fields `P` (a status, or a request's
/// [`RequestLine`]) and its fields.
struct MapOut<P> {
    pseudo: P,
    fields: HeaderMap,
    /// Every edit fitted HTTP/2 (a status in range, names and values that HTTP/2 can carry).
    fits: bool,
}

impl<P> MapOut<P> {
    /// Room for the `more` fields the gateway usually adds, at once where the map as h2
    /// decoded it has too little (a small map has room already: asking more would grow it).
    fn new(pseudo: P, mut fields: HeaderMap, more: usize) -> Self {
        let _ = fields.try_reserve(more);
        MapOut { pseudo, fields, fits: true }
    }
}

/// A request's pseudo-fields, the client's until an edit changes them.
struct RequestLine {
    method: http::Method,
    path: PathAndQuery,
    authority: Option<Authority>,
}

/// What a head's pseudo-fields take of its edits' fields.
trait Pseudo {
    /// `host`'s value as the authority; whether it fits.
    fn authority(&mut self, value: &[u8]) -> bool;
}

/// A response's edits write no `host`.
impl Pseudo for StatusCode {
    fn authority(&mut self, _value: &[u8]) -> bool {
        false
    }
}

impl Pseudo for RequestLine {
    fn authority(&mut self, value: &[u8]) -> bool {
        if self.authority.as_ref().is_some_and(|a| a.as_str().as_bytes() == value) {
            return true;
        }
        match Authority::try_from(value) {
            Ok(a) => (self.authority = Some(a), true).1,
            Err(_) => false,
        }
    }
}

impl ResponseOut for MapOut<StatusCode> {
    fn status(&mut self, status: u16, _reason: &str) {
        match StatusCode::from_u16(status) {
            Ok(status) => self.pseudo = status,
            Err(_) => self.fits = false,
        }
    }
}

impl RequestOut for MapOut<RequestLine> {
    fn request_line(&mut self, _verbatim: Option<&[u8]>, method: &str, target: [&str; 3]) {
        let line = &mut self.pseudo;
        if line.method != method {
            match http::Method::from_bytes(method.as_bytes()) {
                Ok(m) => line.method = m,
                Err(_) => self.fits = false,
            }
        }
        if target[1..] != ["", ""] || line.path.as_str() != target[0] {
            match PathAndQuery::try_from(target.concat()) {
                Ok(path) => line.path = path,
                Err(_) => self.fits = false,
            }
        }
    }
}

impl<P: Pseudo> HeadOut for MapOut<P> {
    fn start_fields(&mut self, _first: usize) {}

    /// The edits drop by name (see `edit_request_head` on `expect`): every line of a dropped
    /// field's name goes. `host` is no field here but the request's authority.
    fn drop_field(&mut self, f: &Fields<'_>, i: usize) {
        if let Ok(name) = field_name(f.headers[i].name.as_bytes()) {
            self.fields.remove(name);
        }
    }

    fn end_fields(&mut self, _f: &Fields<'_>) {}

    /// Connection management and framing lines are HTTP/1.1's alone, as `response_of` and
    /// `request_of` drop them; `host` is a request's authority.
    fn put(&mut self, name: Own, value: &[u8]) {
        let name = match name {
            Own::Host => return self.fits &= self.pseudo.authority(value),
            Own::Connection | Own::TransferEncoding | Own::Upgrade => return,
            own => own_field(own),
        };
        match HeaderValue::from_bytes(value) {
            Ok(value) => {
                self.fields.append(name, value);
            }
            Err(_) => self.fits = false,
        }
    }

    /// A single digit (a first try's count, most service times) is a constant, not a value
    /// allocated.
    fn put_u64(&mut self, name: Own, value: u64) {
        const DIGITS: [HeaderValue; 10] = [
            HeaderValue::from_static("0"),
            HeaderValue::from_static("1"),
            HeaderValue::from_static("2"),
            HeaderValue::from_static("3"),
            HeaderValue::from_static("4"),
            HeaderValue::from_static("5"),
            HeaderValue::from_static("6"),
            HeaderValue::from_static("7"),
            HeaderValue::from_static("8"),
            HeaderValue::from_static("9"),
        ];
        let value = match DIGITS.get(value as usize) {
            Some(digit) => digit.clone(),
            None => HeaderValue::from(value),
        };
        self.fields.append(own_field(name), value);
    }

    fn put_joined<'v>(&mut self, name: Own, values: impl Iterator<Item = &'v [u8]>, sep: &[u8], last: &[u8]) {
        let mut value = Vec::new();
        for v in values {
            value.extend_from_slice(v);
            value.extend_from_slice(sep);
        }
        value.extend_from_slice(last);
        match name {
            // The joined bytes become the value itself, where `put` would copy them again.
            Own::XForwardedFor | Own::XForwardedClientCert => {
                match HeaderValue::from_maybe_shared(Bytes::from(value)) {
                    Ok(value) => {
                        self.fields.append(own_field(name), value);
                    }
                    Err(_) => self.fits = false,
                }
            }
            _ => self.put(name, &value),
        }
    }

    /// As the text would be read back: a connection-specific name dropped.
    fn put_given(&mut self, name: &[u8], value: &[u8]) {
        if connection_specific(name) {
            return;
        }
        match (field_name(name), HeaderValue::from_bytes(value)) {
            (Ok(name), Ok(value)) => {
                self.fields.append(name, value);
            }
            _ => self.fits = false,
        }
    }

    fn finish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::codec::TryLines;

    fn parts(req: http::Request<()>) -> Parts {
        req.into_parts().0
    }

    #[test]
    fn authority_becomes_host_and_cookies_join() {
        let req = http::Request::post("http://example.com/a?b=1")
            .header("host", "Example.com")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("x-y", "z")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        write_h1_request(&parts(req), false, || [0; 16], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a?b=1 HTTP/1.1\r\nhost: example.com\r\nx-y: z\r\ncookie: a=1; b=2\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn a_host_that_differs_from_the_authority_is_malformed() {
        let req = http::Request::get("http://example.com/").header("host", "other").body(()).unwrap();
        assert!(write_h1_request(&parts(req), true, || [0; 16], &mut Vec::new()).is_err());
    }

    #[test]
    fn a_length_frames_the_body_and_an_ended_request_has_no_framing() {
        let req = http::Request::post("http://h/").header("content-length", "3").body(()).unwrap();
        let mut out = Vec::new();
        write_h1_request(&parts(req), false, || [0; 16], &mut out).unwrap();
        assert_eq!(out, b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\n\r\n");
        let mut out = Vec::new();
        write_h1_request(&parts(http::Request::get("http://h/").body(()).unwrap()), true, || [0; 16], &mut out)
            .unwrap();
        assert_eq!(out, b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    }

    #[test]
    fn blank_edges_and_a_connect_without_authority_are_malformed() {
        for value in [" a", "a\t", "a "] {
            let req = http::Request::get("http://h/").header("x-y", value).body(()).unwrap();
            assert!(write_h1_request(&parts(req), true, || [0; 16], &mut Vec::new()).is_err(), "{value:?}");
        }
        let req = http::Request::connect("/").body(()).unwrap();
        assert!(write_h1_request(&parts(req), true, || [0; 16], &mut Vec::new()).is_err());
        let req = http::Request::get("http://h/").header("x-y", "a b").body(()).unwrap();
        assert!(write_h1_request(&parts(req), true, || [0; 16], &mut Vec::new()).is_ok());
    }

    #[test]
    fn connection_specific_fields_are_malformed() {
        for (name, value) in [("connection", "close"), ("transfer-encoding", "chunked"), ("te", "gzip")] {
            let req = http::Request::get("http://h/").header(name, value).body(()).unwrap();
            assert!(write_h1_request(&parts(req), true, || [0; 16], &mut Vec::new()).is_err(), "{name}");
        }
        let req = http::Request::get("http://h/").header("te", "trailers").body(()).unwrap();
        assert!(write_h1_request(&parts(req), true, || [0; 16], &mut Vec::new()).is_ok());
    }

    #[test]
    fn a_websocket_extended_connect_is_an_http1_upgrade() {
        let mut req =
            http::Request::connect("http://h/chat?x=1").header("sec-websocket-version", "13").body(()).unwrap();
        req.extensions_mut().insert(h2::ext::Protocol::from("websocket"));
        let mut out = Vec::new();
        write_h1_request(&parts(req), false, || *b"0123456789abcdef", &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /chat?x=1 HTTP/1.1\r\nhost: h\r\nsec-websocket-version: 13\r\nconnection: upgrade\r\n\
             upgrade: websocket\r\nsec-websocket-key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n\r\n"
        );
        let mut req = http::Request::connect("http://h/").body(()).unwrap();
        req.extensions_mut().insert(h2::ext::Protocol::from("connect-udp"));
        assert!(write_h1_request(&parts(req), false, || [0; 16], &mut Vec::new()).is_err());
    }

    /// An answer's status and its fields, sorted.
    type Seen = Option<(u16, Vec<(String, Vec<u8>)>)>;

    /// The answer both ways: the edits written as text and read back, and applied to the
    /// upstream's map (its fields without the framing lines the HTTP/1.1 text adds).
    fn both_ways(h1: &[u8], edits: &ResponseEdits<'_>) -> [Seen; 2] {
        let mut slots = codec::HeaderSlots::new();
        let head = codec::parse_response(h1, &mut slots, false, &codec::Limits::default()).unwrap().unwrap();
        let mut text = Vec::new();
        codec::write_response_head(&mut text, &head, edits);
        let mut upstream = HeaderMap::new();
        for h in head.headers().iter().filter(|h| !connection_specific(h.name.as_bytes())) {
            upstream.append(field_name(h.name.as_bytes()).unwrap(), HeaderValue::from_bytes(h.value).unwrap());
        }
        let seen = |r: Option<http::Response<()>>| {
            r.map(|r| {
                let mut fields: Vec<_> =
                    r.headers().iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
                fields.sort();
                (r.status().as_u16(), fields)
            })
        };
        [seen(response_of(&text).map(|r| r.0)), seen(response_from(upstream, &head, edits))]
    }

    #[test]
    fn an_http2_upstreams_fields_are_edited_as_its_text_would_be() {
        let add = [("x-add", "1"), ("Set-Cookie", "c=3")];
        let edits = ResponseEdits {
            upstream_service_time_ms: Some(7),
            date: Some(b"Mon, 07 Dec 2026 16:00:00 GMT"),
            add: &add,
            remove: &["x-drop", "DATE"],
            ..ResponseEdits::default()
        };
        let keep_server = ResponseEdits { server: None, date: None, ..edits };
        let heads: [&[u8]; 5] = [
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nserver: up\r\nx-envoy-upstream-service-time: 1\r\n\
              date: Sun, 06 Dec 2026 10:00:00 GMT\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-drop: y\r\n\
              x-envoy-other: z\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nx-a: b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 14\r\n\
              grpc-message: no\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 503 Service Unavailable\r\nx-a: b\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\netag: \"e\"\r\ncontent-length: 9\r\n\r\n",
        ];
        for h1 in heads {
            for edits in [&edits, &keep_server, &ResponseEdits::default()] {
                let [text, map] = both_ways(h1, edits);
                assert!(text.is_some(), "{}", String::from_utf8_lossy(h1));
                assert_eq!(text, map, "{}", String::from_utf8_lossy(h1));
            }
        }
        // An edit HTTP/2 cannot carry fails both ways.
        let bad = ResponseEdits { add: &[("x-bad", "a\u{1}b")], ..edits };
        assert_eq!(both_ways(heads[1], &bad), [None, None]);
    }

    /// A request's method, URI and fields (sorted, each with whether it is never indexed).
    type SeenRequest = Option<(String, String, Vec<(String, Vec<u8>, bool)>)>;

    /// The request both ways: the client's written as text, edited as text and read back, and
    /// its own fields edited as a map.
    fn request_both_ways(req: http::Request<()>, edits: &RequestEdits<'_>, tls: bool) -> [SeenRequest; 2] {
        let (client, ()) = req.into_parts();
        let mut h1 = Vec::new();
        write_h1_request(&client, false, || [0; 16], &mut h1).unwrap();
        let mut slots = codec::HeaderSlots::new();
        let head = codec::parse_request(&h1, &mut slots, &codec::Limits::default()).unwrap().unwrap();
        let mut text = Vec::new();
        codec::write_request_head(&mut text, &head, edits);
        let seen = |r: Option<http::Request<()>>| {
            r.map(|r| {
                let mut fields: Vec<_> =
                    r.headers().iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec(), v.is_sensitive())).collect();
                fields.sort();
                (r.method().to_string(), r.uri().to_string(), fields)
            })
        };
        let read_back = crate::http::h2_io::request_of(&text, tls).ok().map(|r| r.0);
        [seen(read_back), seen(request_from(client, &head, edits, tls))]
    }

    #[test]
    fn a_clients_fields_are_edited_for_an_http2_upstream_as_its_text_would_be() {
        let add = [("x-route", "on"), ("Cookie", "c=3")];
        let try_lines = TryLines { attempt: Some(1), expected_timeout_ms: Some(1500), grpc_timeout: true };
        let plain = RequestEdits {
            x_forwarded_for_append: "10.0.0.1",
            request_id: Some(b"0f6e7a2c-1b1d-4b8e-9a0a-6f7c1d2e3f40"),
            x_envoy_external_address: Some("10.0.0.1"),
            x_forwarded_proto: "https",
            try_lines,
            ..RequestEdits::default()
        };
        let rewritten = RequestEdits {
            path: Some("/v2/a?x=1"),
            authority: Some("other.local"),
            add: &add,
            remove: &["x-drop", "grpc-timeout"],
            x_forwarded_client_cert: Some("By=spiffe://gw"),
            keep_client_cert: true,
            keep_client_proto: true,
            ..plain
        };
        let requests = || {
            [
                http::Request::get("http://app.test/a?b=1").body(()).unwrap(),
                http::Request::get("http://app.test/").header("host", "APP.test").body(()).unwrap(),
                http::Request::post("http://app.test/pkg.Svc/Call")
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .header("grpc-timeout", "5S")
                    .header("content-length", "7")
                    .header("x-forwarded-for", "1.2.3.4")
                    .header("x-forwarded-for", "5.6.7.8")
                    .header("x-forwarded-proto", "http")
                    .header("x-forwarded-client-cert", "By=spiffe://client")
                    .header("x-envoy-debug", "1")
                    .header("x-request-id", "theirs")
                    .header("x-drop", "y")
                    .header("cookie", "a=1")
                    .header("cookie", "b=2")
                    .header("expect", "100-continue")
                    .body(())
                    .unwrap(),
            ]
        };
        for edits in [&plain, &rewritten, &RequestEdits::default()] {
            for tls in [false, true] {
                for req in requests() {
                    let label = format!("{req:?} {edits:?}");
                    let [text, map] = request_both_ways(req, edits, tls);
                    assert!(text.is_some(), "{label}");
                    assert_eq!(text, map, "{label}");
                }
            }
        }
        // What only the text carries goes the text's way.
        let mut upgrade = http::Request::connect("http://app.test/chat").body(()).unwrap();
        upgrade.extensions_mut().insert(h2::ext::Protocol::from("websocket"));
        assert!(request_both_ways(upgrade, &plain, false)[1].is_none());
    }

    #[test]
    fn a_response_loses_its_http1_framing_lines() {
        let h1 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\ntransfer-encoding: chunked\r\n\
                   connection: close\r\n\r\nhi";
        let (response, len) = response_of(h1).unwrap();
        assert_eq!(len, h1.len() - 2);
        assert_eq!(response.status(), 200);
        let names: Vec<_> = response.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-length", "x-a"]);
    }
}
