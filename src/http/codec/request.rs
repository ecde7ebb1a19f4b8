//! Request heads: in-place parsing with httparse, then the strictness httparse leaves to us
//! (line endings, request-target forms, Host rules, framing fields).

use super::fields::{authority_str, fold_content_length, map_common_error, Fields, HeaderSlots, Kind, TeState, TCHAR};
use super::{BodyFraming, Limits, ParseError, MAX_HEADERS};
use httparse::Header;

/// The form of the request-target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`
    Origin,
    /// `http://authority/path?query`: the authority replaces Host (RFC 9112 §3.2.2).
    Absolute,
    /// `host:port`, CONNECT only.
    Authority,
    /// `*`, OPTIONS only.
    Asterisk,
}

/// A parsed request head borrowing the read buffer. Drop it before consuming the buffer.
pub struct RequestHead<'b> {
    /// Bytes of the buffer the head takes (the body, or the next request, starts here).
    pub head_len: usize,
    pub method: &'b str,
    /// The request-target exactly as sent.
    pub target: &'b str,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub form: TargetForm,
    pub framing: BodyFraming,
    /// Whether the client connection may carry another request after this one.
    pub keep_alive: bool,
    /// HTTP/1.1 `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The `Upgrade` value when `Connection` lists `upgrade` (HTTP/1.1, never `h2c`).
    pub upgrade: Option<&'b str>,
    pub(crate) host: Option<&'b str>,
    /// Host came from an absolute-form target (the Host line must then be rewritten).
    pub(crate) host_from_target: bool,
    /// At least one Host field line was sent.
    pub(crate) has_host_header: bool,
    pub(crate) path: &'b str,
    pub(crate) query: Option<&'b str>,
    pub(crate) content_length: Option<u64>,
    /// Offsets of the request line in `fields.buf`: start, and end past its CRLF.
    pub(crate) line: (usize, usize),
    pub(crate) fields: Fields<'b>,
}

impl<'b> RequestHead<'b> {
    /// The authority requests are routed by: the absolute-form or authority-form target's
    /// authority, else the Host header. `None` only for an HTTP/1.0 request without Host.
    #[inline]
    pub fn host(&self) -> Option<&'b str> {
        self.host
    }

    /// The path: `/`-prefixed for origin- and absolute-form (`/` when an absolute URI has an
    /// empty path), `*` for asterisk-form, empty for CONNECT's authority-form.
    #[inline]
    pub fn path(&self) -> &'b str {
        self.path
    }

    /// The query without its `?`, if the target has one.
    #[inline]
    pub fn query(&self) -> Option<&'b str> {
        self.query
    }

    /// Every header field line in order, as slices into the read buffer (httparse trims
    /// the OWS around values).
    #[inline]
    pub fn headers(&self) -> &[Header<'b>] {
        self.fields.slice()
    }

    /// First value of a header field, the name compared case-insensitively.
    #[inline]
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.fields.get(name)
    }

    /// Every value of a header field, in order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        self.fields.values(name)
    }

    /// The `Content-Length` value (collapsed if repeated), when the request carries one.
    #[inline]
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    #[inline]
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

impl std::fmt::Debug for RequestHead<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHead")
            .field("head_len", &self.head_len)
            .field("method", &self.method)
            .field("target", &self.target)
            .field("version", &self.version)
            .field("form", &self.form)
            .field("host", &self.host)
            .field("framing", &self.framing)
            .field("keep_alive", &self.keep_alive)
            .field("expect_continue", &self.expect_continue)
            .field("upgrade", &self.upgrade)
            .field("headers", &self.headers())
            .finish()
    }
}

/// Parses a request head at the start of `buf`, keeping its header fields in `slots`
/// (see [`HeaderSlots`]: a fresh one per call).
///
/// `Ok(None)`: incomplete, read more (the limits are already enforced on what is there).
/// `Ok(Some(head))`: complete; `head.head_len` bytes belong to it.
/// `Err(e)`: answer `e.status()` and close the connection.
pub fn parse_request<'b>(
    buf: &'b [u8],
    slots: &'b mut HeaderSlots<'b>,
    limits: &Limits,
) -> Result<Option<RequestHead<'b>>, ParseError> {
    let HeaderSlots { headers: storage, kinds } = slots;
    let max = limits.max_headers.min(MAX_HEADERS);
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut storage[..max]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete(buf, limits),
        Err(e) => return Err(map_error(e, buf)),
    };
    let httparse::Request { method, path, version, headers } = req;
    // A complete parse always sets method, path and version.
    let (method, target, version) = (method.unwrap_or(""), path.unwrap_or(""), version.unwrap_or(0));
    let mut fields = Fields::new(&buf[..head_len], headers);
    if head_len > limits.max_head {
        return Err(ParseError::HeadTooLarge);
    }

    // Request line bounds. httparse skips empty lines before it (RFC 9112 §2.2 allows
    // that); they must still be CRLF pairs.
    let line_start = fields.offset(method.as_bytes());
    if !buf[..line_start].chunks(2).all(|c| c == b"\r\n") {
        return Err(ParseError::InvalidLineEnding);
    }
    let line_end = if fields.len > 0 { fields.line_start(0) } else { head_len - 2 };
    fields.check_line_endings(line_end)?;
    if line_end - 2 - line_start > limits.max_request_line {
        return Err(ParseError::UriTooLong);
    }

    let t = split_target(method, target)?;

    // One pass over the fields: classify each and fold the ones that matter.
    let mut host_hdr: Option<&'b str> = None;
    let mut content_length = None;
    let mut te = TeState::default();
    let mut upgrade_val: Option<&'b [u8]> = None;
    let mut expect_continue = false;
    for (h, slot) in fields.headers.iter().zip(kinds.iter_mut()) {
        let kind = super::fields::classify(h.name);
        *slot = kind;
        match kind {
            Kind::Other => {}
            Kind::Host => {
                if host_hdr.is_some() {
                    return Err(ParseError::DuplicateHost);
                }
                host_hdr = Some(authority_str(h.value)?);
            }
            Kind::ContentLength => fold_content_length(h.value, &mut content_length)?,
            Kind::TransferEncoding => te.fold(h.value)?,
            Kind::Connection => fields.conn.fold(h.value),
            Kind::Upgrade => {
                upgrade_val.get_or_insert(h.value);
            }
            Kind::Expect => {
                expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
    }

    let kinds: &'b [Kind; MAX_HEADERS] = kinds;
    fields.kinds = &kinds[..fields.len];

    if version == 1 && host_hdr.is_none() {
        return Err(ParseError::MissingHost);
    }
    let framing = if te.present {
        if version == 0 {
            return Err(ParseError::TransferEncodingHttp10);
        }
        if content_length.is_some() {
            return Err(ParseError::ContentLengthWithTransferEncoding);
        }
        te.finish()?;
        BodyFraming::Chunked
    } else if let Some(n) = content_length {
        BodyFraming::ContentLength(n)
    } else {
        BodyFraming::None
    };

    let conn = fields.conn;
    let keep_alive = if version == 1 { !conn.close } else { conn.keep_alive && !conn.close };
    // RFC 9110 §7.8 / §10.1.1: Upgrade and Expect are ignored in HTTP/1.0 requests.
    let upgrade = match upgrade_val {
        Some(v) if version == 1 && conn.upgrade && !v.eq_ignore_ascii_case(b"h2c") => std::str::from_utf8(v).ok(),
        _ => None,
    };

    let (host, host_from_target) = match t.authority {
        Some(a) => (Some(a), true),
        None => (host_hdr, false),
    };
    Ok(Some(RequestHead {
        head_len,
        method,
        target,
        version,
        form: t.form,
        framing,
        keep_alive,
        expect_continue: expect_continue && version == 1,
        upgrade,
        host,
        host_from_target: host_from_target && t.authority != host_hdr,
        has_host_header: host_hdr.is_some(),
        path: t.path,
        query: t.query,
        content_length,
        line: (line_start, line_end),
        fields,
    }))
}

/// The head is not complete yet: enforce the limits on what has arrived.
fn incomplete<'b>(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead<'b>>, ParseError> {
    if buf.len() > limits.max_request_line + 1 {
        // The request line (plus CRLF) must fit; leading empty lines are negligible here.
        let window = &buf[..(limits.max_request_line + 2).min(buf.len())];
        if !window.contains(&b'\n') {
            return Err(ParseError::UriTooLong);
        }
    }
    if buf.len() >= limits.max_head {
        return Err(ParseError::HeadTooLarge);
    }
    Ok(None)
}

fn map_error(e: httparse::Error, buf: &[u8]) -> ParseError {
    match e {
        httparse::Error::Token => {
            // httparse says Token for both the method and the target: tell them apart.
            let skip = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
            let line = &buf[skip..];
            let m = line.iter().take_while(|&&b| TCHAR[b as usize]).count();
            if m == 0 || line.get(m) != Some(&b' ') {
                ParseError::InvalidMethod
            } else {
                ParseError::InvalidTarget
            }
        }
        e => map_common_error(e, buf),
    }
}

struct Target<'b> {
    form: TargetForm,
    authority: Option<&'b str>,
    path: &'b str,
    query: Option<&'b str>,
}

/// Classifies and validates the request-target. httparse has already refused CTLs and
/// spaces; here we refuse non-ASCII (RFC 3986 has none), `#` (a fragment is never sent;
/// Envoy refuses it too) and any form the method does not allow.
fn split_target<'b>(method: &str, target: &'b str) -> Result<Target<'b>, ParseError> {
    let tb = target.as_bytes();
    // Non-short-circuiting so that it vectorises: no branch per byte.
    if tb.iter().fold(false, |bad, &b| bad | (b >= 0x80) | (b == b'#')) {
        return Err(ParseError::InvalidTarget);
    }
    let is_connect = method == "CONNECT";
    if tb.first() == Some(&b'/') && !is_connect {
        let (path, query) = split_query(target);
        return Ok(Target { form: TargetForm::Origin, authority: None, path, query });
    }
    if target == "*" {
        if method != "OPTIONS" {
            return Err(ParseError::InvalidTarget);
        }
        return Ok(Target { form: TargetForm::Asterisk, authority: None, path: "*", query: None });
    }
    if is_connect {
        // authority-form = uri-host ":" port
        let authority = authority_str(tb).map_err(|_| ParseError::InvalidTarget)?;
        let port_ok = authority
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !port_ok {
            return Err(ParseError::InvalidTarget);
        }
        return Ok(Target { form: TargetForm::Authority, authority: Some(authority), path: "", query: None });
    }
    // absolute-form: only the schemes a gateway serves.
    let rest = if tb.len() > 7 && tb[..7].eq_ignore_ascii_case(b"http://") {
        &target[7..]
    } else if tb.len() > 8 && tb[..8].eq_ignore_ascii_case(b"https://") {
        &target[8..]
    } else {
        return Err(ParseError::InvalidTarget);
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    // userinfo (`user@host`) is deprecated and a known confusion vector: refuse it.
    if authority.is_empty() || authority.contains('@') {
        return Err(ParseError::InvalidTarget);
    }
    let authority = authority_str(authority.as_bytes()).map_err(|_| ParseError::InvalidTarget)?;
    let (path, query) = split_query(after);
    let path = if path.is_empty() { "/" } else { path };
    Ok(Target { form: TargetForm::Absolute, authority: Some(authority), path, query })
}

#[inline]
fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.find('?') {
        Some(q) => (&s[..q], Some(&s[q + 1..])),
        None => (s, None),
    }
}
