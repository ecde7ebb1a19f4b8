//! Header-field machinery shared by requests and responses: the parsed field block that
//! borrows the read buffer, the per-field classification used by the rewriters, and the
//! strict parsers of the framing fields (`Content-Length`, `Transfer-Encoding`,
//! `Connection`).

use super::{ParseError, MAX_HEADERS};
use httparse::Header;
use std::mem::MaybeUninit;

/// What a header field name means to the codec. Computed once at parse time so that the
/// rewriters decide keep/drop per line with a byte compare instead of string compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XRequestId,
    /// Set only by the gateway, from a client certificate it verified (Envoy's SANITIZE_SET).
    XForwardedClientCert,
    /// Any `x-envoy-*` name.
    XEnvoy,
    Http2Settings,
    Server,
    Date,
}

#[inline]
fn is(name: &[u8], lower: &[u8]) -> bool {
    name.eq_ignore_ascii_case(lower)
}

/// Classifies a field name, case-insensitively, dispatching on length and first letter
/// so that the common case (an uninteresting name) costs at most one compare.
#[inline]
pub(crate) fn classify(name: &str) -> Kind {
    let n = name.as_bytes();
    // httparse never yields an empty name; `| 0x20` lowercases the letters we dispatch on.
    let first = n.first().map_or(0, |b| b | 0x20);
    match (n.len(), first) {
        (2, b't') if is(n, b"te") => Kind::Te,
        (4, b'h') if is(n, b"host") => Kind::Host,
        (4, b'd') if is(n, b"date") => Kind::Date,
        (6, b's') if is(n, b"server") => Kind::Server,
        (6, b'e') if is(n, b"expect") => Kind::Expect,
        (7, b'u') if is(n, b"upgrade") => Kind::Upgrade,
        (10, b'c') if is(n, b"connection") => Kind::Connection,
        (10, b'k') if is(n, b"keep-alive") => Kind::KeepAlive,
        (14, b'c') if is(n, b"content-length") => Kind::ContentLength,
        (14, b'h') if is(n, b"http2-settings") => Kind::Http2Settings,
        (16, b'p') if is(n, b"proxy-connection") => Kind::ProxyConnection,
        (17, b't') if is(n, b"transfer-encoding") => Kind::TransferEncoding,
        (12.., b'x') => classify_x(n),
        (9.., b'x') if is(&n[..8], b"x-envoy-") => Kind::XEnvoy,
        _ => Kind::Other,
    }
}

#[cold]
fn classify_x(n: &[u8]) -> Kind {
    match n.len() {
        12 if is(n, b"x-request-id") => Kind::XRequestId,
        15 if is(n, b"x-forwarded-for") => Kind::XForwardedFor,
        17 if is(n, b"x-forwarded-proto") => Kind::XForwardedProto,
        23 if is(n, b"x-forwarded-client-cert") => Kind::XForwardedClientCert,
        _ if is(&n[..8], b"x-envoy-") => Kind::XEnvoy,
        _ => Kind::Other,
    }
}

/// `tchar` of RFC 9110 §5.6.2.
pub(crate) static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        i += 1;
    }
    t
};

/// Bytes allowed in an authority (`host[:port]`, reg-name, IPv4 or IP-literal), the set
/// nghttp2/Envoy accept for `:authority`.
static AUTHORITY: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b':'
                    | b'['
                    | b']'
            );
        i += 1;
    }
    t
};

/// Validates an authority (Host value) and returns it as `&str`. Empty is allowed here
/// (RFC 9112 §3.2: an empty Host when the target has no authority); callers that need a
/// non-empty one check the length.
#[inline]
pub(crate) fn authority_str(v: &[u8]) -> Result<&str, ParseError> {
    // A non-short-circuiting fold: no branch per byte.
    if !v.iter().fold(true, |ok, &b| ok & AUTHORITY[b as usize]) {
        return Err(ParseError::InvalidHost);
    }
    // Only ASCII passed the table, so this cannot fail; no unsafe needed for the proof.
    std::str::from_utf8(v).map_err(|_| ParseError::InvalidHost)
}

/// Trims optional whitespace (SP / HTAB) on both ends.
#[inline]
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Elements of a comma-separated list field, OWS-trimmed; empty elements are yielded too
/// (callers decide whether they are an error).
#[inline]
pub(crate) fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim_ows)
}

/// Folds one `Content-Length` field value into `acc`. The value may be a comma list (RFC
/// 9110 §8.6 lets a recipient collapse a list of one repeated value); every element must
/// be 1*DIGIT (no sign, no inner space), fit in a u64, and equal every other one seen.
pub(crate) fn fold_content_length(v: &[u8], acc: &mut Option<u64>) -> Result<(), ParseError> {
    // Fast path: the ordinary single number.
    let mut n: u64 = 0;
    let mut simple = !v.is_empty();
    for &b in v {
        if !b.is_ascii_digit() {
            simple = false;
            break;
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(ParseError::InvalidContentLength)?;
    }
    if simple {
        return merge_cl(n, acc);
    }
    if v.is_empty() {
        return Err(ParseError::InvalidContentLength);
    }
    for item in list_items(v) {
        if item.is_empty() {
            return Err(ParseError::InvalidContentLength);
        }
        let mut n: u64 = 0;
        for &b in item {
            if !b.is_ascii_digit() {
                return Err(ParseError::InvalidContentLength);
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or(ParseError::InvalidContentLength)?;
        }
        merge_cl(n, acc)?;
    }
    Ok(())
}

#[inline]
fn merge_cl(n: u64, acc: &mut Option<u64>) -> Result<(), ParseError> {
    match *acc {
        Some(prev) if prev != n => Err(ParseError::ConflictingContentLength),
        _ => {
            *acc = Some(n);
            Ok(())
        }
    }
}

/// Accumulates `Transfer-Encoding` field lines (they combine as one list, in order).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TeState {
    pub(crate) present: bool,
    seen_chunked: bool,
    last_is_chunked: bool,
    other_coding: bool,
}

impl TeState {
    /// Folds one field line. Structural junk (empty element, non-token, parameters,
    /// `chunked` twice) fails at once; the "final coding" rule is checked in `finish`.
    pub(crate) fn fold(&mut self, v: &[u8]) -> Result<(), ParseError> {
        self.present = true;
        // Fast path: exactly `chunked` (httparse already trimmed surrounding OWS).
        if v.len() == 7 && is(v, b"chunked") {
            return self.coding(true);
        }
        for item in list_items(v) {
            // Empty elements ("chunked,", ", chunked") are refused on purpose: RFC 9110
            // tolerates them, but other parsers in the path may not agree on what they mean.
            if item.is_empty() || !item.iter().all(|&b| TCHAR[b as usize]) {
                return Err(ParseError::InvalidTransferEncoding);
            }
            self.coding(item.len() == 7 && is(item, b"chunked"))?;
        }
        Ok(())
    }

    #[inline]
    fn coding(&mut self, chunked: bool) -> Result<(), ParseError> {
        if chunked {
            if self.seen_chunked {
                // RFC 9112 §6.1: chunked MUST NOT be applied more than once.
                return Err(ParseError::InvalidTransferEncoding);
            }
            self.seen_chunked = true;
        } else {
            self.other_coding = true;
        }
        self.last_is_chunked = chunked;
        Ok(())
    }

    /// The verdict once every line is folded: `Ok(())` means "chunked framing".
    pub(crate) fn finish(&self) -> Result<(), ParseError> {
        if !self.last_is_chunked {
            Err(ParseError::InvalidTransferEncoding)
        } else if self.other_coding {
            // Well-formed but we (like Envoy) only implement chunked: 501.
            Err(ParseError::UnsupportedTransferEncoding)
        } else {
            Ok(())
        }
    }
}

/// Tokens of the `Connection` field(s) that matter to the codec.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ConnTokens {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    pub(crate) upgrade: bool,
    /// Some other token: a header name the sender nominated as hop-by-hop.
    pub(crate) nominates: bool,
}

impl ConnTokens {
    pub(crate) fn fold(&mut self, v: &[u8]) {
        for t in list_items(v) {
            match t.len() {
                0 => {}
                5 if is(t, b"close") => self.close = true,
                7 if is(t, b"upgrade") => self.upgrade = true,
                10 if is(t, b"keep-alive") => self.keep_alive = true,
                _ => self.nominates = true,
            }
        }
    }
}

/// Storage for the header fields of one head, provided by the caller so that a parsed
/// head stays small: keeping a 100-entry array inside the head cost ~200 ns per request in
/// initialisation and moves, about as much as parsing itself. Creating one is free (the
/// field array is left uninitialised; httparse fills what it parses). Create a fresh one
/// for each head parsed (on the stack, or in the connection task's state): a slots value
/// stays borrowed as long as the head parsed into it lives.
///
/// ```
/// use strait::http::codec::{parse_request, HeaderSlots, Limits};
///
/// let buf = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
/// let mut slots = HeaderSlots::new();
/// let head = parse_request(buf, &mut slots, &Limits::default()).unwrap().unwrap();
/// assert_eq!(head.host(), Some("h"));
/// ```
pub struct HeaderSlots<'b> {
    pub(crate) headers: [MaybeUninit<Header<'b>>; MAX_HEADERS],
    pub(crate) kinds: [Kind; MAX_HEADERS],
}

impl HeaderSlots<'_> {
    #[inline]
    pub const fn new() -> Self {
        HeaderSlots { headers: [const { MaybeUninit::uninit() }; MAX_HEADERS], kinds: [Kind::Other; MAX_HEADERS] }
    }
}

impl Default for HeaderSlots<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// The header fields of one parsed head: slices into the read buffer (held in the
/// caller's [`HeaderSlots`]) plus their classification.
#[derive(Clone)]
pub(crate) struct Fields<'b> {
    /// The head bytes (from the start of the buffer to the end of the final CRLF).
    pub(crate) buf: &'b [u8],
    pub(crate) headers: &'b [Header<'b>],
    /// Same length as `headers` once parsing is done.
    pub(crate) kinds: &'b [Kind],
    pub(crate) len: usize,
    pub(crate) conn: ConnTokens,
}

impl<'b> Fields<'b> {
    pub(crate) fn new(buf: &'b [u8], headers: &'b [Header<'b>]) -> Self {
        Fields { buf, headers, kinds: &[], len: headers.len(), conn: ConnTokens::default() }
    }

    #[inline]
    pub(crate) fn slice(&self) -> &'b [Header<'b>] {
        self.headers
    }

    /// Offset of a slice of `buf` from its start.
    #[inline]
    pub(crate) fn offset(&self, p: &[u8]) -> usize {
        p.as_ptr() as usize - self.buf.as_ptr() as usize
    }

    /// Start offset of field line `i` (its name).
    #[inline]
    pub(crate) fn line_start(&self, i: usize) -> usize {
        self.offset(self.headers[i].name.as_bytes())
    }

    /// End offset (exclusive, after the CRLF) of field line `i`.
    #[inline]
    pub(crate) fn line_end(&self, i: usize) -> usize {
        if i + 1 < self.len {
            self.line_start(i + 1)
        } else {
            self.buf.len() - 2
        }
    }

    /// Refuses bare LF line endings: httparse accepts `\n` alone as a line end (and
    /// already refuses a CR not followed by LF), so checking that every line of the head
    /// ends in CRLF is O(lines), not O(bytes). `first_line_end` is the offset just past
    /// the start line's terminator.
    pub(crate) fn check_line_endings(&self, first_line_end: usize) -> Result<(), ParseError> {
        let b = self.buf;
        let crlf_before = |end: usize| end >= 2 && b[end - 2] == b'\r' && b[end - 1] == b'\n';
        if !crlf_before(b.len()) || !crlf_before(first_line_end) {
            return Err(ParseError::InvalidLineEnding);
        }
        for i in 0..self.len {
            if !crlf_before(self.line_end(i)) {
                return Err(ParseError::InvalidLineEnding);
            }
        }
        Ok(())
    }

    /// First value of a field, name compared case-insensitively in place.
    #[inline]
    pub(crate) fn get(&self, name: &str) -> Option<&'b [u8]> {
        self.values(name).next()
    }

    /// Every value of the field `name` (compared case-insensitively), in order.
    pub(crate) fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        self.slice().iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    /// Is `name` listed as a token of a `Connection` field (hop-by-hop by nomination)?
    pub(crate) fn nominated(&self, name: &str) -> bool {
        let n = name.as_bytes();
        self.slice()
            .iter()
            .zip(self.kinds.iter())
            .filter(|(_, k)| **k == Kind::Connection)
            .any(|(h, _)| list_items(h.value).any(|t| t.eq_ignore_ascii_case(n)))
    }
}

/// Refines httparse's `HeaderName` error (which covers obs-fold, whitespace before the
/// colon and bad bytes alike) into a precise variant. Error path only.
pub(crate) fn header_name_error(buf: &[u8]) -> ParseError {
    // Walk the lines after the start line up to the end of the head (or of the buffer).
    let mut lines = buf.split(|&b| b == b'\n').skip(1);
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            return ParseError::ObsFold;
        }
        let name_len = line.iter().take_while(|&&b| TCHAR[b as usize]).count();
        let rest = &line[name_len..];
        // `Name :` (or `Name ` at the end of what has arrived).
        if name_len > 0
            && matches!(rest.first(), Some(b' ' | b'\t'))
            && matches!(trim_ows(rest).first(), Some(b':') | None)
        {
            return ParseError::SpaceBeforeColon;
        }
        if rest.first() != Some(&b':') {
            break;
        }
    }
    ParseError::InvalidHeaderName
}

/// Maps an httparse error that is not specific to requests or responses.
pub(crate) fn map_common_error(e: httparse::Error, buf: &[u8]) -> ParseError {
    match e {
        httparse::Error::HeaderName => header_name_error(buf),
        httparse::Error::HeaderValue => ParseError::InvalidHeaderValue,
        httparse::Error::NewLine => ParseError::InvalidLineEnding,
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        httparse::Error::Version => ParseError::InvalidVersion,
        httparse::Error::Status => ParseError::InvalidStatus,
        _ => ParseError::InvalidTarget,
    }
}
