//! Head rewriting: the upstream request head, the downstream response head, and the
//! gateway's own answers.
//!
//! Rewriting never rebuilds a header map: untouched field lines are copied verbatim from
//! the read buffer, consecutive ones as a single run, and only what changes is written
//! anew (the start line, Host when replaced, framing, hop-by-hop and gateway headers).
//! Values the caller passes in (paths, authorities, extra headers) are written as given:
//! the caller guarantees they contain no CR, LF or NUL.

use super::fields::{Fields, Kind};
use super::request::{RequestHead, TargetForm};
use super::response::ResponseHead;
use super::BodyFraming;
use crate::http::grpc;
use bytes::BufMut;

/// What changes between the client's request head and the one sent upstream.
#[derive(Debug, Clone, Copy)]
pub struct RequestEdits<'a> {
    /// Path and query to send instead of the original (after a route rewrite).
    pub path: Option<&'a str>,
    /// Host to send instead of the original (`rewrite.authority`).
    pub authority: Option<&'a str>,
    /// `x-forwarded-proto` value; any client value is dropped, unless
    /// `keep_client_proto`. Empty: write none.
    pub x_forwarded_proto: &'a str,
    /// Keep the client's `x-forwarded-proto` (ours is then written only when it sent none),
    /// as Envoy does behind trusted proxies (`xff_num_trusted_hops` > 0): the prior hop said
    /// what the client spoke.
    pub keep_client_proto: bool,
    /// Peer address appended to the client's `x-forwarded-for` (`existing, ip`), or set
    /// when there is none. Empty: leave the client's lines untouched.
    pub x_forwarded_for_append: &'a str,
    /// Replaces `x-request-id` when `Some`; `None` keeps the client's.
    pub request_id: Option<&'a [u8]>,
    /// Written as `x-envoy-external-address` when `Some` (client `x-envoy-*` are always
    /// stripped).
    pub x_envoy_external_address: Option<&'a str>,
    /// Written as `x-forwarded-client-cert` when `Some`; with `keep_client_cert` (Envoy's
    /// APPEND_FORWARD) joined to the client's value with a comma in one line.
    pub x_forwarded_client_cert: Option<&'a str>,
    /// Keep the client's `x-forwarded-client-cert` lines (`forwardClientCertDetails`'s
    /// forwarding modes); dropped otherwise.
    pub keep_client_cert: bool,
    /// Header lines appended as given (`set` = name in `remove` plus here).
    pub add: &'a [(&'a str, &'a str)],
    /// Client header names to drop (case-insensitive). Host and framing are not affected.
    pub remove: &'a [&'a str],
    /// `false` writes `connection: close` (the upstream connection is not reused).
    pub keep_alive: bool,
    /// Forward an upgrade request (`RequestHead::upgrade`) as such: keep `upgrade` and
    /// write `connection: upgrade`. When `false` the upgrade headers are dropped.
    pub allow_upgrade: bool,
    /// The lines of this try, the head's last.
    pub try_lines: TryLines,
}

/// The lines Envoy's router writes on each try of a request: `x-envoy-attempt-count` (istiod
/// turns `include_request_attempt_count` on for every gateway virtual host) and
/// `x-envoy-expected-rq-timeout-ms`. They end the head, so that a retry rewrites them in
/// place ([`rewrite_try_lines`]) rather than writing the whole head again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TryLines {
    /// 1 on the first try, 2 on the first retry…; `None` writes no line.
    pub attempt: Option<u32>,
    /// The time the upstream may take, when the try has a timeout.
    pub expected_timeout_ms: Option<u64>,
    /// A gRPC request: the expected timeout also goes as `grpc-timeout`, replacing the
    /// client's (see [`TryLines::writes_grpc_timeout`]).
    pub grpc_timeout: bool,
}

impl TryLines {
    const ATTEMPT: Own = Own::XEnvoyAttemptCount;
    const EXPECTED: Own = Own::XEnvoyExpectedRqTimeoutMs;
    const GRPC_TIMEOUT: Own = Own::GrpcTimeout;
    /// Room for the lines at their longest: names, `: `, values (a `u32`, a `u64`, eight
    /// digits and a unit), CRLFs.
    const MAX_LEN: usize = Self::ATTEMPT.name().len()
        + Self::EXPECTED.name().len()
        + Self::GRPC_TIMEOUT.name().len()
        + 3 * 2
        + 10
        + 20
        + 8
        + 1
        + 3 * 2;

    /// Whether a `grpc-timeout` line is written: for a gRPC request whose try has a timeout,
    /// as Envoy's router rewrites it when the route sets `max_grpc_timeout` (istiod sets it on
    /// every gateway route), so that the server knows the time it really has. Without a
    /// timeout the client's line goes up untouched.
    pub fn writes_grpc_timeout(&self) -> bool {
        self.grpc_timeout && self.expected_timeout_ms.is_some()
    }

    fn put<O: HeadOut>(&self, out: &mut O) {
        if let Some(n) = self.attempt {
            out.put_u64(Self::ATTEMPT, u64::from(n));
        }
        if let Some(ms) = self.expected_timeout_ms {
            out.put_u64(Self::EXPECTED, ms);
            if self.grpc_timeout {
                let (value, unit) = grpc::timeout_value(ms);
                // A `u64`'s digits and the unit.
                const ROOM: usize = 21;
                let mut text = [0u8; ROOM];
                let mut room = &mut text[..];
                put_u64(&mut room, value);
                room.put_u8(unit);
                let len = ROOM - room.len();
                out.put(Self::GRPC_TIMEOUT, &text[..len]);
            }
        }
    }

    /// The bytes [`TryLines::put`] writes as text.
    fn len(&self) -> usize {
        let digits = |v: u64| v.checked_ilog10().map_or(1, |d| d as usize + 1);
        let line = |name: Own, value_len| name.name().len() + 2 + value_len + 2;
        let grpc = |ms| match self.grpc_timeout {
            true => line(Self::GRPC_TIMEOUT, digits(grpc::timeout_value(ms).0) + 1),
            false => 0,
        };
        self.attempt.map_or(0, |n| line(Self::ATTEMPT, digits(u64::from(n))))
            + self.expected_timeout_ms.map_or(0, |ms| line(Self::EXPECTED, digits(ms)) + grpc(ms))
    }
}

/// Replaces the try lines `old` that end the request head in `out[..head_end]` with `new`'s;
/// what follows the head (a body held for replay) moves with it. Returns the head's new end.
pub fn rewrite_try_lines(out: &mut Vec<u8>, head_end: usize, old: &TryLines, new: &TryLines) -> usize {
    let (start, end) = (head_end - 2 - old.len(), head_end - 2);
    debug_assert_eq!(&out[end..head_end], b"\r\n");
    let mut lines = [0u8; TryLines::MAX_LEN];
    let mut room = &mut lines[..];
    new.put(&mut Text::new(&mut room));
    let len = TryLines::MAX_LEN - room.len();
    out.splice(start..end, lines[..len].iter().copied());
    start + len + 2
}

impl Default for RequestEdits<'_> {
    fn default() -> Self {
        RequestEdits {
            path: None,
            authority: None,
            x_forwarded_proto: "http",
            keep_client_proto: false,
            x_forwarded_for_append: "",
            request_id: None,
            x_envoy_external_address: None,
            x_forwarded_client_cert: None,
            keep_client_cert: false,
            add: &[],
            remove: &[],
            keep_alive: true,
            allow_upgrade: true,
            try_lines: TryLines::default(),
        }
    }
}

#[inline]
fn put_header<B: BufMut>(out: &mut B, name: &[u8], value: &[u8]) {
    debug_assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

#[inline]
fn put_u64<B: BufMut>(out: &mut B, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.put_slice(&tmp[i..]);
}

#[inline]
fn in_list(list: &[&str], name: &str) -> bool {
    list.iter().any(|r| r.len() == name.len() && r.eq_ignore_ascii_case(name))
}

/// A field line the sender nominated as hop-by-hop (listed in `Connection`) or the caller
/// asked to remove. Both checks are skipped entirely in the common case (no nomination
/// beyond close/keep-alive/upgrade, empty remove list).
#[inline]
fn dropped_by_name(f: &Fields<'_>, name: &str, nominates: bool, remove: &[&str]) -> bool {
    (nominates && f.nominated(name)) || (!remove.is_empty() && in_list(remove, name))
}

/// The values of the client's `kind` lines that go upstream (none nominated or removed by
/// name), in order.
fn kept_values<'b>(f: &'b Fields<'_>, kind: Kind, remove: &'b [&str]) -> impl Iterator<Item = &'b [u8]> {
    (0..f.len)
        .filter(move |&i| f.kinds[i] == kind && !dropped_by_name(f, f.headers[i].name, f.conn.nominates, remove))
        .map(move |i| f.headers[i].value)
}

/// A field the gateway writes itself: named here, so that a map need not look its name up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Own {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    Date,
    Server,
    XForwardedFor,
    XForwardedProto,
    XForwardedClientCert,
    XRequestId,
    XEnvoyExternalAddress,
    XEnvoyAttemptCount,
    XEnvoyExpectedRqTimeoutMs,
    XEnvoyUpstreamServiceTime,
    GrpcTimeout,
}

impl Own {
    pub(crate) const ALL: [Own; 16] = [
        Own::Host,
        Own::ContentLength,
        Own::TransferEncoding,
        Own::Connection,
        Own::Upgrade,
        Own::Date,
        Own::Server,
        Own::XForwardedFor,
        Own::XForwardedProto,
        Own::XForwardedClientCert,
        Own::XRequestId,
        Own::XEnvoyExternalAddress,
        Own::XEnvoyAttemptCount,
        Own::XEnvoyExpectedRqTimeoutMs,
        Own::XEnvoyUpstreamServiceTime,
        Own::GrpcTimeout,
    ];

    /// Its name, in lower case.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Own::Host => "host",
            Own::ContentLength => "content-length",
            Own::TransferEncoding => "transfer-encoding",
            Own::Connection => "connection",
            Own::Upgrade => "upgrade",
            Own::Date => "date",
            Own::Server => "server",
            Own::XForwardedFor => "x-forwarded-for",
            Own::XForwardedProto => "x-forwarded-proto",
            Own::XForwardedClientCert => "x-forwarded-client-cert",
            Own::XRequestId => "x-request-id",
            Own::XEnvoyExternalAddress => "x-envoy-external-address",
            Own::XEnvoyAttemptCount => "x-envoy-attempt-count",
            Own::XEnvoyExpectedRqTimeoutMs => "x-envoy-expected-rq-timeout-ms",
            Own::XEnvoyUpstreamServiceTime => "x-envoy-upstream-service-time",
            Own::GrpcTimeout => "grpc-timeout",
        }
    }
}

/// Where a head is written with its edits: HTTP/1.1 text ([`Text`]), or the field map of an
/// HTTP/2 answer (`h2/head.rs`: an HTTP/2 upstream's own map, edited for an HTTP/2 client).
/// One set of rules ([`write_response_head`]) writes both, so the two cannot drift apart.
pub(crate) trait HeadOut {
    /// The field lines begin at byte `first` of the head's buffer.
    fn start_fields(&mut self, first: usize);
    /// Field `i` of `f` does not go on; those not dropped go on as they came.
    fn drop_field(&mut self, f: &Fields<'_>, i: usize);
    /// Every field of `f` was judged.
    fn end_fields(&mut self, f: &Fields<'_>);
    /// A field line of the gateway's.
    fn put(&mut self, name: Own, value: &[u8]);
    fn put_u64(&mut self, name: Own, value: u64);
    /// A field line of the gateway's whose value joins `values` and `last`, each after
    /// `sep` but the first (`x-forwarded-for`'s list, with the peer last).
    fn put_joined<'v>(&mut self, name: Own, values: impl Iterator<Item = &'v [u8]>, sep: &[u8], last: &[u8]);
    /// A field line of the edits' (a route's `set` and `add`), as given.
    fn put_given(&mut self, name: &[u8], value: &[u8]);
    /// The head is whole.
    fn finish(&mut self);
}

/// Where a response head is written.
pub(crate) trait ResponseOut: HeadOut {
    /// The status line; a map takes the status alone.
    fn status(&mut self, status: u16, reason: &str);
}

/// Where a request head is written.
pub(crate) trait RequestOut: HeadOut {
    /// The request line: `verbatim`, the client's own line when nothing in it changes, else
    /// `method`, and the target, which is `target`'s pieces one after the other.
    fn request_line(&mut self, verbatim: Option<&[u8]>, method: &str, target: [&str; 3]);
}

/// A head as HTTP/1.1 text: kept field lines are copied verbatim from the parsed head's
/// buffer, consecutive ones as a single run.
pub(crate) struct Text<'o, B> {
    out: &'o mut B,
    /// Where the run of kept lines not yet copied starts.
    run: usize,
}

impl<'o, B: BufMut> Text<'o, B> {
    pub(crate) fn new(out: &'o mut B) -> Self {
        Text { out, run: 0 }
    }
}

impl<B: BufMut> ResponseOut for Text<'_, B> {
    fn status(&mut self, status: u16, reason: &str) {
        put_status_line(self.out, status, reason);
    }
}

impl<B: BufMut> RequestOut for Text<'_, B> {
    fn request_line(&mut self, verbatim: Option<&[u8]>, method: &str, target: [&str; 3]) {
        if let Some(line) = verbatim {
            return self.out.put_slice(line);
        }
        self.out.put_slice(method.as_bytes());
        self.out.put_slice(b" ");
        for piece in target {
            self.out.put_slice(piece.as_bytes());
        }
        self.out.put_slice(b" HTTP/1.1\r\n");
    }
}

impl<B: BufMut> HeadOut for Text<'_, B> {
    fn start_fields(&mut self, first: usize) {
        self.run = first;
    }

    fn drop_field(&mut self, f: &Fields<'_>, i: usize) {
        let start = f.line_start(i);
        if start > self.run {
            self.out.put_slice(&f.buf[self.run..start]);
        }
        self.run = f.line_end(i);
    }

    /// Copies the last run: everything up to (not including) the head's final CRLF.
    fn end_fields(&mut self, f: &Fields<'_>) {
        let end = f.buf.len() - 2;
        if end > self.run {
            self.out.put_slice(&f.buf[self.run..end]);
        }
    }

    fn put(&mut self, name: Own, value: &[u8]) {
        put_header(self.out, name.name().as_bytes(), value);
    }

    fn put_u64(&mut self, name: Own, value: u64) {
        self.out.put_slice(name.name().as_bytes());
        self.out.put_slice(b": ");
        put_u64(self.out, value);
        self.out.put_slice(b"\r\n");
    }

    fn put_joined<'v>(&mut self, name: Own, values: impl Iterator<Item = &'v [u8]>, sep: &[u8], last: &[u8]) {
        self.out.put_slice(name.name().as_bytes());
        self.out.put_slice(b": ");
        for value in values {
            self.out.put_slice(value);
            self.out.put_slice(sep);
        }
        self.out.put_slice(last);
        self.out.put_slice(b"\r\n");
    }

    fn put_given(&mut self, name: &[u8], value: &[u8]) {
        put_header(self.out, name, value);
    }

    fn finish(&mut self) {
        self.out.put_slice(b"\r\n");
    }
}

/// Passes on the field lines that `keep` takes and no nomination or removal drops; `first`:
/// where they start in `f`'s buffer.
#[inline]
fn copy_kept<O: HeadOut>(
    out: &mut O,
    f: &Fields<'_>,
    first: usize,
    remove: &[&str],
    mut keep: impl FnMut(usize, Kind) -> bool,
) {
    let nominates = f.conn.nominates;
    out.start_fields(first);
    for i in 0..f.len {
        let kind = f.kinds[i];
        let mut kept = keep(i, kind);
        // Host and framing are the codec's business: a client cannot nominate them away.
        if kept && !matches!(kind, Kind::Host | Kind::ContentLength | Kind::TransferEncoding) {
            kept = !dropped_by_name(f, f.headers[i].name, nominates, remove);
        }
        if !kept {
            out.drop_field(f, i);
        }
    }
    out.end_fields(f);
}

/// Writes the head to send upstream: `HTTP/1.1`, the (rewritten) target and Host, the
/// client's fields minus hop-by-hop ones (Connection, Keep-Alive, Proxy-Connection, TE
/// other than `trailers`, Upgrade unless forwarded, HTTP2-Settings, and every name the
/// Connection header lists), minus client `x-envoy-*`, `x-forwarded-proto` and
/// `x-forwarded-client-cert`, with the
/// framing header exactly once and the gateway's headers added.
pub fn write_request_head<B: BufMut>(out: &mut B, head: &RequestHead<'_>, edits: &RequestEdits<'_>) {
    edit_request_head(&mut Text::new(out), head, edits);
}

/// [`write_request_head`]'s rules, into any [`RequestOut`]. Every field it drops, it drops by
/// name but for `expect`, whose `100-continue` alone is dropped.
pub(crate) fn edit_request_head<O: RequestOut>(out: &mut O, head: &RequestHead<'_>, edits: &RequestEdits<'_>) {
    let f = &head.fields;

    // Request line: verbatim when nothing in it changes.
    let verbatim = (edits.path.is_none() && head.version == 1 && head.form == TargetForm::Origin)
        .then(|| &f.buf[head.line.0..head.line.1]);
    let target = match (edits.path, head.form) {
        (Some(p), _) => [p, "", ""],
        // absolute-form goes upstream as origin-form (we are the gateway, not a proxy).
        (None, TargetForm::Absolute) => match head.query {
            Some(q) => [head.path, "?", q],
            None => [head.path, "", ""],
        },
        (None, _) => [head.target, "", ""],
    };
    out.request_line(verbatim, head.method, target);

    // Host: replaced right after the request line, else kept in place. HTTP/1.1 upstream
    // requires one: an HTTP/1.0 request without Host gets an empty one (RFC 9112 §3.2).
    let new_host = edits.authority.or(if head.host_from_target { head.host } else { None });
    match new_host {
        Some(h) => out.put(Own::Host, h.as_bytes()),
        None if !head.has_host_header => out.put(Own::Host, b""),
        None => {}
    }

    let xff_append = edits.x_forwarded_for_append;
    let keep_upgrade = edits.allow_upgrade && head.upgrade.is_some();
    copy_kept(out, f, head.line.1, edits.remove, |i, kind| match kind {
        Kind::Host => new_host.is_none(),
        Kind::ContentLength
        | Kind::TransferEncoding
        | Kind::Connection
        | Kind::KeepAlive
        | Kind::ProxyConnection
        | Kind::Upgrade
        | Kind::Http2Settings
        | Kind::XEnvoy => false,
        Kind::XForwardedProto => edits.keep_client_proto,
        // Appending joins the client's value to ours below.
        Kind::XForwardedClientCert => edits.keep_client_cert && edits.x_forwarded_client_cert.is_none(),
        // `te: trailers` is the one TE value that is end-to-end meaningful (Envoy keeps it).
        Kind::Te => f.headers[i].value.eq_ignore_ascii_case(b"trailers"),
        // The proxy answers 100-continue itself.
        Kind::Expect => !(head.expect_continue && f.headers[i].value.eq_ignore_ascii_case(b"100-continue")),
        Kind::XForwardedFor => xff_append.is_empty(),
        Kind::XRequestId => edits.request_id.is_none(),
        Kind::Other | Kind::Server | Kind::Date => true,
    });

    if !xff_append.is_empty() {
        let theirs = kept_values(f, Kind::XForwardedFor, edits.remove).filter(|v| !v.is_empty());
        out.put_joined(Own::XForwardedFor, theirs, b", ", xff_append.as_bytes());
    }
    let theirs_kept = edits.keep_client_proto && kept_values(f, Kind::XForwardedProto, edits.remove).next().is_some();
    if !(edits.x_forwarded_proto.is_empty() || theirs_kept) {
        out.put(Own::XForwardedProto, edits.x_forwarded_proto.as_bytes());
    }
    if let Some(id) = edits.request_id {
        out.put(Own::XRequestId, id);
    }
    if let Some(c) = edits.x_forwarded_client_cert {
        // Envoy's APPEND_FORWARD appends its element to the header's value after a comma, its
        // header map having joined the client's lines the same way.
        let theirs = kept_values(f, Kind::XForwardedClientCert, edits.remove)
            .filter(|v| edits.keep_client_cert && !v.is_empty());
        out.put_joined(Own::XForwardedClientCert, theirs, b",", c.as_bytes());
    }
    if let Some(a) = edits.x_envoy_external_address {
        out.put(Own::XEnvoyExternalAddress, a.as_bytes());
    }
    match head.framing {
        BodyFraming::ContentLength(n) => out.put_u64(Own::ContentLength, n),
        BodyFraming::Chunked => out.put(Own::TransferEncoding, b"chunked"),
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
    if keep_upgrade {
        out.put(Own::Connection, b"upgrade");
        out.put(Own::Upgrade, head.upgrade.unwrap_or_default().as_bytes());
    } else if !edits.keep_alive {
        out.put(Own::Connection, b"close");
    }
    for (n, v) in edits.add {
        out.put_given(n.as_bytes(), v.as_bytes());
    }
    edits.try_lines.put(out);
    out.finish();
}

/// What changes between the upstream's response head and the one sent to the client.
#[derive(Debug, Clone, Copy)]
pub struct ResponseEdits<'a> {
    /// Overwrites `server` (Envoy's `server_header_transformation: OVERWRITE`); `None`
    /// keeps the upstream's.
    pub server: Option<&'a str>,
    /// Adds `x-envoy-upstream-service-time` (replacing an upstream one).
    pub upstream_service_time_ms: Option<u64>,
    /// Written as `date` when the answer has none (the upstream sent none, or `remove` drops
    /// it, and `add` sets none): Envoy keeps an upstream's date and adds its own only then.
    /// E.g. from [`super::DateCache`].
    pub date: Option<&'a [u8]>,
    /// The client connection closes after this response: write `connection: close`.
    pub close: bool,
    /// The client spoke HTTP/1.0: `connection: keep-alive` when kept open, and a chunked
    /// answer is de-chunked (see [`ResponseWritten::dechunk`]). The status line still says
    /// `HTTP/1.1`, the version the gateway speaks (RFC 9110 §2.5).
    pub http10_client: bool,
    /// Header lines appended as given.
    pub add: &'a [(&'a str, &'a str)],
    /// Upstream header names to drop (case-insensitive). Framing is not affected.
    pub remove: &'a [&'a str],
}

impl Default for ResponseEdits<'_> {
    fn default() -> Self {
        ResponseEdits {
            server: Some("istio-envoy"),
            upstream_service_time_ms: None,
            date: None,
            close: false,
            http10_client: false,
            add: &[],
            remove: &[],
        }
    }
}

/// Decisions [`write_response_head`] made that the caller must carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseWritten {
    /// The body is chunked but the head says nothing about framing: forward only the
    /// decoded data (`ChunkedDecoder::decoding()`), then close.
    pub dechunk: bool,
    /// Close the client connection after the body (asked for, read-until-close body, or
    /// de-chunking). Never set for 101, where the connection becomes a tunnel.
    pub close: bool,
}

/// Writes the head to send to the client: the canonical status line, the upstream's
/// fields minus hop-by-hop ones, framing exactly once, and the gateway's headers.
pub fn write_response_head<B: BufMut>(
    out: &mut B,
    head: &ResponseHead<'_>,
    edits: &ResponseEdits<'_>,
) -> ResponseWritten {
    edit_response_head(&mut Text::new(out), head, edits)
}

/// [`write_response_head`]'s rules, into any [`HeadOut`]. Every field it drops, it drops by
/// name (all of a name's lines go, or none), which a map relies on.
pub(crate) fn edit_response_head<O: ResponseOut>(
    out: &mut O,
    head: &ResponseHead<'_>,
    edits: &ResponseEdits<'_>,
) -> ResponseWritten {
    let f = &head.fields;
    let status = head.status;
    let interim = (100..200).contains(&status) && status != 101;
    let switching = status == 101;
    let dechunk = edits.http10_client && head.framing == BodyFraming::Chunked;
    let close = !switching && !interim && (edits.close || dechunk || head.framing == BodyFraming::UntilClose);

    out.status(status, reason_phrase(status));

    let service_time = edits.upstream_service_time_ms;
    let final_answer = !interim;
    copy_kept(out, f, status_line_end(f), edits.remove, |i, kind| match kind {
        Kind::ContentLength
        | Kind::TransferEncoding
        | Kind::Connection
        | Kind::KeepAlive
        | Kind::ProxyConnection
        | Kind::Te
        | Kind::Upgrade
        | Kind::Http2Settings => false,
        Kind::Server => !(final_answer && edits.server.is_some()),
        Kind::XEnvoy => {
            !(final_answer
                && service_time.is_some()
                && f.headers[i].name.eq_ignore_ascii_case("x-envoy-upstream-service-time"))
        }
        _ => true,
    });

    // Framing: 1xx and 204 never carry it (RFC 9110 §8.6, RFC 9112 §6.1); HEAD and 304
    // answers keep it as a description of the representation.
    if !(100..200).contains(&status) && status != 204 {
        if let Some(n) = head.content_length {
            out.put_u64(Own::ContentLength, n);
        } else if head.chunked && !edits.http10_client {
            out.put(Own::TransferEncoding, b"chunked");
        }
    }
    if final_answer {
        let dated = (!in_list(edits.remove, "date") && f.kinds[..f.len].contains(&Kind::Date))
            || edits.add.iter().any(|(n, _)| n.eq_ignore_ascii_case("date"));
        if let Some(d) = edits.date.filter(|_| !dated) {
            out.put(Own::Date, d);
        }
        if let Some(s) = edits.server {
            out.put(Own::Server, s.as_bytes());
        }
        if let Some(ms) = service_time {
            out.put_u64(Own::XEnvoyUpstreamServiceTime, ms);
        }
    }
    if switching {
        out.put(Own::Connection, b"upgrade");
        if let Some(u) = head.upgrade {
            out.put(Own::Upgrade, u.as_bytes());
        }
    } else if close {
        out.put(Own::Connection, b"close");
    } else if edits.http10_client && !interim {
        out.put(Own::Connection, b"keep-alive");
    }
    if final_answer {
        for (n, v) in edits.add {
            out.put_given(n.as_bytes(), v.as_bytes());
        }
    }
    out.finish();
    ResponseWritten { dechunk, close }
}

/// Offset just past the status line's CRLF.
fn status_line_end(f: &Fields<'_>) -> usize {
    if f.len > 0 {
        f.line_start(0)
    } else {
        f.buf.len() - 2
    }
}

/// `HTTP/1.1` to every client: a server answers with the highest version it speaks whose major
/// version the client's shares (RFC 9110 §2.5), HTTP/1.0 clients included.
#[inline]
pub fn put_status_line<B: BufMut>(out: &mut B, status: u16, reason: &str) {
    out.put_slice(b"HTTP/1.1 ");
    let s = status.min(999);
    out.put_slice(&[b'0' + (s / 100) as u8, b'0' + (s / 10 % 10) as u8, b'0' + (s % 10) as u8, b' ']);
    out.put_slice(reason.as_bytes());
    out.put_slice(b"\r\n");
}

/// One of the gateway's own answers (404, 503 `no healthy upstream`, 400, 431, 414, 502,
/// 504 `upstream request timeout`, direct responses, redirects…). `V`: a header value, borrowed
/// or owned (a redirect's Location), so an answer's lines need not be copied to be written.
#[derive(Debug, Clone, Copy)]
pub struct SimpleResponse<'a, V = &'a str> {
    pub status: u16,
    /// `None`: Envoy's reason phrase for the status.
    pub reason: Option<&'a str>,
    /// Extra header lines (e.g. `location`), written after the standard ones.
    pub headers: &'a [(&'a str, V)],
    pub body: &'a [u8],
    /// Written only when the body is not empty.
    pub content_type: &'a str,
    pub server: &'a str,
    /// Write `connection: close` (e.g. after a protocol error).
    pub close: bool,
    /// The client spoke HTTP/1.0: a kept connection is said to be (`connection: keep-alive`).
    pub http10: bool,
    /// The request was HEAD: headers as for the body, but no body bytes.
    pub omit_body: bool,
}

impl<'a, V> SimpleResponse<'a, V> {
    /// An answer with Envoy's defaults besides these.
    pub fn new(status: u16, headers: &'a [(&'a str, V)], body: &'a [u8]) -> Self {
        SimpleResponse {
            status,
            reason: None,
            headers,
            body,
            content_type: "text/plain",
            server: "istio-envoy",
            close: false,
            http10: false,
            omit_body: false,
        }
    }
}

impl Default for SimpleResponse<'_> {
    fn default() -> Self {
        SimpleResponse::new(200, &[], &[])
    }
}

/// Writes a complete response (head and body) the way Envoy writes a local reply:
/// `content-length`, `content-type` (with a body, unless an extra sets one), `date`, `server`,
/// then extras.
/// `date` is the IMF-fixdate from [`super::DateCache`].
pub fn write_simple_response<B: BufMut, V: AsRef<str>>(out: &mut B, resp: &SimpleResponse<'_, V>, date: &[u8]) {
    let status = resp.status;
    put_status_line(out, status, resp.reason.unwrap_or_else(|| reason_phrase(status)));
    // 1xx, 204 and 304 carry no body and no content-length: a 304's would have to give the
    // length of the representation it stands for (RFC 9110 §8.6), which an answer of the
    // gateway's own has none of.
    let bodyless_status = (100..200).contains(&status) || status == 204 || status == 304;
    if !bodyless_status {
        out.put_slice(b"content-length: ");
        put_u64(out, resp.body.len() as u64);
        out.put_slice(b"\r\n");
    }
    // A content-type among the extras (a route's response `set`) replaces the default: Envoy's
    // local reply adds its own only when the route's edits left none.
    let typed = resp.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    if !resp.body.is_empty() && !bodyless_status && !typed {
        put_header(out, b"content-type", resp.content_type.as_bytes());
    }
    put_header(out, b"date", date);
    put_header(out, b"server", resp.server.as_bytes());
    for (n, v) in resp.headers {
        put_header(out, n.as_bytes(), v.as_ref().as_bytes());
    }
    if resp.close {
        out.put_slice(b"connection: close\r\n");
    } else if resp.http10 {
        out.put_slice(b"connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
    if !resp.omit_body && !bodyless_status {
        out.put_slice(resp.body);
    }
}

/// The reason phrase Envoy writes for a status (its `CodeUtility::toString`, plus 101,
/// which Envoy only ever sends for upgrades); `Unknown` for codes Envoy does not name.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "Unknown",
    }
}
