//! `--access-log`: Istio's default access log, one line per request (and per proxied TCP
//! connection, its HTTP fields `-`) on stdout, as text or (`--access-log-encoding json`) as
//! Istio's default JSON.
//!
//! A worker formats its lines into a buffer of its own and hands the buffer to one writer
//! thread when it fills and every 50 ms; a stdout that does not keep up costs dropped lines
//! (with a warning), never a stalled request. Each buffer holds whole lines and is written in
//! one call, so lines never interleave mid-line. A worker's `Record` keeps its strings'
//! capacity from request to request: logging allocates nothing per request once warm.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// A worker hands its buffer over once it holds this much, and from its config-following loop
/// (every 50 ms) otherwise.
const FLUSH_AT: usize = 32 * 1024;
/// Buffers waiting for the writer thread; beyond them lines are dropped.
const QUEUED_BUFFERS: usize = 64;

/// Envoy's details of a request the RBAC filter denied when no ALLOW rule matched; a DENY
/// rule's name replaces `none` ([`Record::rbac_denied`]).
pub const RBAC_DENIED: &str = "rbac_access_denied_matched_policy[none]";
const RBAC_DENIED_PREFIX: &str = "rbac_access_denied_matched_policy[";

/// What one request did, gathered as it is served (Envoy's names in the comments).
#[derive(Debug, Default)]
pub struct Record {
    /// START_TIME.
    pub start: Option<SystemTime>,
    /// DURATION, in milliseconds, set when the request ends.
    pub duration_ms: u64,
    pub method: String,
    /// X-ENVOY-ORIGINAL-PATH?:PATH: the path as the client sent it, query included.
    pub path: String,
    pub protocol: &'static str,
    pub status: u16,
    /// RESPONSE_FLAGS: NR, UH, UF, UT, UC, DC, NC… or `-`.
    pub flags: &'static str,
    /// RESPONSE_CODE_DETAILS; see [`Record::details`].
    pub details: &'static str,
    /// The details of a request a named DENY rule denied (`details` is then [`RBAC_DENIED`]):
    /// written into a string kept from request to request, so naming the rule allocates
    /// nothing once warm, and an allowed request never touches it.
    pub rbac_details: String,
    /// `%DYNAMIC_METADATA(envoy.common:access_log_hint)%`: whether an AUDIT rule matched,
    /// when an AUDIT policy applies; the JSON log's `access_log_hint` key.
    pub access_log_hint: Option<bool>,
    /// BYTES_RECEIVED / BYTES_SENT: body bytes.
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub upstream_service_time: Option<u64>,
    pub x_forwarded_for: String,
    pub user_agent: String,
    pub request_id: String,
    pub authority: String,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: String,
    pub upstream_local: Option<SocketAddr>,
    pub downstream_local: Option<SocketAddr>,
    pub downstream_remote: Option<SocketAddr>,
    /// The SNI of a TLS connection.
    pub requested_server_name: String,
    /// GRPC_STATUS, for a gRPC request only: the response's status, by name.
    pub grpc_status: Option<&'static str>,
    pub route_name: String,
}

impl Record {
    /// Empties the record for the next request, keeping the strings' capacity.
    pub fn reset(&mut self) {
        let keep = |s: &mut String| {
            let mut s = std::mem::take(s);
            s.clear();
            s
        };
        *self = Record {
            method: keep(&mut self.method),
            path: keep(&mut self.path),
            x_forwarded_for: keep(&mut self.x_forwarded_for),
            user_agent: keep(&mut self.user_agent),
            request_id: keep(&mut self.request_id),
            authority: keep(&mut self.authority),
            upstream_cluster: keep(&mut self.upstream_cluster),
            route_name: keep(&mut self.route_name),
            requested_server_name: keep(&mut self.requested_server_name),
            rbac_details: keep(&mut self.rbac_details),
            ..Record::default()
        };
    }

    /// The request is forwarded on `route`.
    pub fn forwarded(&mut self, route: Option<&str>) {
        set(&mut self.route_name, route.unwrap_or_default());
    }

    /// The cluster the route picked, named before any endpoint is: a request no endpoint
    /// serves (UH) still names it, as Envoy's router records the cluster once it is found.
    pub fn cluster(&mut self, name: &str) {
        set(&mut self.upstream_cluster, name);
    }

    /// The endpoint tried (the last one, after retries).
    pub fn upstream(&mut self, host: SocketAddr) {
        self.upstream_host = Some(host);
    }

    /// The RBAC filter denied the request on the DENY rule `rule` (istiod's policy name), as
    /// Envoy's details name it: `rbac_access_denied_matched_policy[RULE]`.
    pub fn rbac_denied(&mut self, rule: &str) {
        self.rbac_details.clear();
        for part in [RBAC_DENIED_PREFIX, rule, "]"] {
            self.rbac_details.push_str(part);
        }
    }

    /// RESPONSE_CODE_DETAILS: the RBAC denial's rule when one was named.
    pub fn details(&self) -> &str {
        if self.details == RBAC_DENIED && !self.rbac_details.is_empty() {
            &self.rbac_details
        } else {
            self.details
        }
    }

    /// The answer's status and details; its flags are set when the request ends, once
    /// retries and a client's hang-up are known.
    pub fn answered(&mut self, status: u16, details: &'static str) {
        // A request refused before its head parsed still gets a line.
        self.start.get_or_insert_with(SystemTime::now);
        self.status = status;
        self.details = details;
    }
}

/// Appends `r` as Istio's default format:
/// `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
/// %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
/// "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
/// %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
/// "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER%
/// %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
/// %REQUESTED_SERVER_NAME% %ROUTE_NAME%`, with `-` for what is absent.
///
/// Written byte by byte rather than through `write!`: this runs for every request, and the
/// formatting machinery cost more than the rest of the line.
pub fn format(r: &Record, out: &mut Vec<u8>) {
    out.push(b'[');
    match r.start {
        Some(wall) => push_time(out, wall),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b"] \"");
    push_text(out, &r.method);
    out.push(b' ');
    push_text(out, &r.path);
    out.push(b' ');
    push_text(out, r.protocol);
    out.extend_from_slice(b"\" ");
    push_number(out, u64::from(r.status));
    out.push(b' ');
    push_text(out, r.flags);
    out.push(b' ');
    push_text(out, r.details());
    out.extend_from_slice(b" - \"-\" ");
    push_number(out, r.bytes_received);
    out.push(b' ');
    push_number(out, r.bytes_sent);
    out.push(b' ');
    push_number(out, r.duration_ms);
    out.push(b' ');
    match r.upstream_service_time {
        Some(ms) => push_number(out, ms),
        None => out.push(b'-'),
    }
    for quoted in [&r.x_forwarded_for, &r.user_agent, &r.request_id, &r.authority] {
        out.extend_from_slice(b" \"");
        push_text(out, quoted);
        out.push(b'"');
    }
    out.extend_from_slice(b" \"");
    push_address(out, r.upstream_host);
    out.extend_from_slice(b"\" ");
    push_text(out, &r.upstream_cluster);
    for address in [r.upstream_local, r.downstream_local, r.downstream_remote] {
        out.push(b' ');
        push_address(out, address);
    }
    out.push(b' ');
    push_text(out, &r.requested_server_name);
    out.push(b' ');
    push_text(out, &r.route_name);
    out.push(b'\n');
}

/// A text field, `-` when empty.
fn push_text(out: &mut Vec<u8>, s: &str) {
    if s.is_empty() {
        out.push(b'-');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

fn push_number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// An address, `-` when absent; IPv4 (the common case) without the formatting machinery.
fn push_address(out: &mut Vec<u8>, address: Option<SocketAddr>) {
    match address {
        Some(SocketAddr::V4(a)) => {
            for (i, octet) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_number(out, u64::from(octet));
            }
            out.push(b':');
            push_number(out, u64::from(a.port()));
        }
        Some(a) => {
            let _ = write!(out, "{a}");
        }
        None => out.push(b'-'),
    }
}

thread_local! {
    /// The RFC 3339 text of the last second a line was logged in, up to the seconds: a line
    /// then only adds its milliseconds.
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

/// `2023-11-14T22:13:20.123Z`, as Envoy's %START_TIME%.
fn push_time(out: &mut Vec<u8>, wall: SystemTime) {
    let since = wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != since.as_secs() {
            let text = humantime::format_rfc3339_seconds(wall).to_string();
            cached.1.copy_from_slice(&text.as_bytes()[..19]);
            cached.0 = since.as_secs();
        }
        out.extend_from_slice(&cached.1);
    });
    let millis = since.subsec_millis();
    out.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ]);
}

/// Appends `r` as Istio's default JSON access log (`accessLogEncoding: JSON`): the text
/// format's fields under Istio's keys (sorted, as Envoy writes them), codes, sizes and the
/// duration as numbers, absent values as `null`; and `grpc_status` (Envoy's `%GRPC_STATUS%`,
/// which Istio's default leaves out, as its text format does): a key more harms no reader of
/// JSON, while a text field more would move every field after it. For the same reason an
/// AUDIT policy's mark (`access_log_hint`) is a JSON key, there only when one applies.
pub fn format_json(r: &Record, out: &mut Vec<u8>) {
    out.push(b'{');
    if let Some(hint) = r.access_log_hint {
        out.extend_from_slice(if hint { b"\"access_log_hint\":true," } else { b"\"access_log_hint\":false," });
    }
    let fields: [(&str, Json<'_>); 25] = [
        ("authority", Json::Text(some(&r.authority))),
        ("bytes_received", Json::Number(Some(r.bytes_received))),
        ("bytes_sent", Json::Number(Some(r.bytes_sent))),
        ("connection_termination_details", Json::Text(None)),
        ("downstream_local_address", Json::Address(r.downstream_local)),
        ("downstream_remote_address", Json::Address(r.downstream_remote)),
        ("duration", Json::Number(Some(r.duration_ms))),
        ("grpc_status", Json::Text(r.grpc_status)),
        ("method", Json::Text(some(&r.method))),
        ("path", Json::Text(some(&r.path))),
        ("protocol", Json::Text(some(r.protocol))),
        ("request_id", Json::Text(some(&r.request_id))),
        ("requested_server_name", Json::Text(some(&r.requested_server_name))),
        ("response_code", Json::Number(Some(u64::from(r.status)))),
        ("response_code_details", Json::Text(some(r.details()))),
        ("response_flags", Json::Text(Some(some(r.flags).unwrap_or("-")))),
        ("route_name", Json::Text(some(&r.route_name))),
        ("start_time", Json::Time(r.start)),
        ("upstream_cluster", Json::Text(some(&r.upstream_cluster))),
        ("upstream_host", Json::Address(r.upstream_host)),
        ("upstream_local_address", Json::Address(r.upstream_local)),
        // A response header: a string, as Envoy's `%RESP(…)%` gives it.
        ("upstream_service_time", Json::QuotedNumber(r.upstream_service_time)),
        ("upstream_transport_failure_reason", Json::Text(None)),
        ("user_agent", Json::Text(some(&r.user_agent))),
        ("x_forwarded_for", Json::Text(some(&r.x_forwarded_for))),
    ];
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        // Numbers, addresses and times never need escaping: the text writers serve as they are.
        match *value {
            Json::Text(Some(text)) => {
                let _ = serde_json::to_writer(&mut *out, text);
            }
            Json::Number(Some(n)) => push_number(out, n),
            Json::QuotedNumber(Some(n)) => quoted(out, |out| push_number(out, n)),
            Json::Address(Some(a)) => quoted(out, |out| push_address(out, Some(a))),
            Json::Time(Some(wall)) => quoted(out, |out| push_time(out, wall)),
            Json::Text(None)
            | Json::Number(None)
            | Json::QuotedNumber(None)
            | Json::Address(None)
            | Json::Time(None) => out.extend_from_slice(b"null"),
        }
    }
    out.extend_from_slice(b"}\n");
}

/// A JSON access-log value, written without building strings.
enum Json<'a> {
    Text(Option<&'a str>),
    Number(Option<u64>),
    /// A number in a string (a header's value).
    QuotedNumber(Option<u64>),
    Address(Option<SocketAddr>),
    Time(Option<SystemTime>),
}

fn quoted(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    out.push(b'"');
    write(out);
    out.push(b'"');
}

/// An optional text field: `None` when empty.
fn some(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// How `--access-log` writes its lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// Istio's default text line.
    #[default]
    Text,
    /// Istio's default JSON object, one per line.
    Json,
}

/// Replaces `dst`'s text with `src`, reusing its allocation.
pub(crate) fn set(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

/// A worker's side of the log: its line buffer and the handle to the writer thread.
pub struct Sink {
    buf: RefCell<Vec<u8>>,
    /// The record of lines written in one go ([`Sink::log_with`]), kept between them so that
    /// its strings keep their capacity.
    scratch: RefCell<Record>,
    writer: SyncSender<Vec<u8>>,
    encoding: Encoding,
    /// A wall-clock reading and the monotonic instant it was taken at: START_TIME is derived
    /// from the instant a request already has, instead of asking the clock again. Taken anew
    /// at every flush tick, so clock adjustments show within 50 ms.
    anchor: Cell<(Instant, SystemTime)>,
}

impl Sink {
    pub fn new(encoding: Encoding) -> Self {
        Self {
            buf: RefCell::new(Vec::with_capacity(FLUSH_AT)),
            scratch: RefCell::default(),
            writer: writer().clone(),
            encoding,
            anchor: Cell::new((Instant::now(), SystemTime::now())),
        }
    }

    /// The wall-clock time of `instant` (taken after the last anchor).
    pub fn wall(&self, instant: Instant) -> SystemTime {
        let (at, wall) = self.anchor.get();
        wall + instant.saturating_duration_since(at)
    }

    /// Buffers `r`'s line; hands the buffer on when it is full, or at once while `draining`
    /// (so that [`finish`] finds every line of a shutdown handed over).
    pub fn log(&self, r: &Record, draining: bool) {
        let full = {
            let mut buf = self.buf.borrow_mut();
            match self.encoding {
                Encoding::Text => format(r, &mut buf),
                Encoding::Json => format_json(r, &mut buf),
            }
            buf.len() >= FLUSH_AT
        };
        if full || draining {
            self.flush();
        }
    }

    /// Logs the line of a record `fill` writes all at once (a TCP connection's, as it ends),
    /// in a record of the sink's own.
    pub fn log_with(&self, draining: bool, fill: impl FnOnce(&mut Record)) {
        let mut r = self.scratch.borrow_mut();
        fill(&mut r);
        self.log(&r, draining);
        r.reset();
    }

    /// Hands the buffered lines to the writer thread, or drops them if it is behind; called
    /// every 50 ms, it also re-reads the wall clock.
    pub fn flush(&self) {
        self.anchor.set((Instant::now(), SystemTime::now()));
        let lines = {
            let mut buf = self.buf.borrow_mut();
            if buf.is_empty() {
                return;
            }
            std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_AT))
        };
        HANDED.fetch_add(1, Ordering::Relaxed);
        if let Err(TrySendError::Full(lines) | TrySendError::Disconnected(lines)) = self.writer.try_send(lines) {
            HANDED.fetch_sub(1, Ordering::Relaxed);
            let n = lines.iter().filter(|&&b| b == b'\n').count();
            tracing::warn!("access log: stdout is behind, {n} lines dropped");
        }
    }
}

/// Buffers handed to the writer thread and buffers it has written, so that an exiting process
/// can wait for its last lines. Touched once per buffer, never per request.
static HANDED: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// The process's one writer thread, once started.
static WRITER: OnceLock<SyncSender<Vec<u8>>> = OnceLock::new();

/// The writer thread, started on first use.
fn writer() -> &'static SyncSender<Vec<u8>> {
    WRITER.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUED_BUFFERS);
        let spawned = std::thread::Builder::new().name("strait-access-log".into()).spawn(move || {
            let mut stdout = std::io::stdout().lock();
            for lines in rx {
                let res = stdout.write_all(&lines).and_then(|()| stdout.flush());
                WRITTEN.fetch_add(1, Ordering::Relaxed);
                if res.is_err() {
                    return;
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!("access log: cannot start the writer thread: {e}");
        }
        tx
    })
}

/// Waits (at most `limit`) until every line handed over is written: called once the gateway
/// has drained, before the process exits. A no-op when the access log is off.
pub fn finish(limit: Duration) {
    if WRITER.get().is_none() {
        return;
    }
    let deadline = Instant::now() + limit;
    while WRITTEN.load(Ordering::Relaxed) < HANDED.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_istio_default_line() {
        let r = Record {
            start: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            method: "GET".into(),
            path: "/a?b=1".into(),
            protocol: "HTTP/1.1",
            status: 200,
            details: "via_upstream",
            bytes_received: 0,
            bytes_sent: 5,
            upstream_service_time: Some(1),
            user_agent: "curl/8".into(),
            request_id: "id-1".into(),
            authority: "app.test".into(),
            upstream_host: Some("127.0.0.1:9000".parse().unwrap()),
            upstream_cluster: "outbound|80||app.local".into(),
            upstream_local: Some("127.0.0.1:40000".parse().unwrap()),
            downstream_local: Some("127.0.0.1:8080".parse().unwrap()),
            downstream_remote: Some("127.0.0.1:50000".parse().unwrap()),
            route_name: "app".into(),
            ..Record::default()
        };
        let mut out = Vec::new();
        format(&r, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[2023-11-14T22:13:20.123Z] \"GET /a?b=1 HTTP/1.1\" 200 - via_upstream - \"-\" 0 5 0 1 \"-\" \"curl/8\" \
             \"id-1\" \"app.test\" \"127.0.0.1:9000\" outbound|80||app.local 127.0.0.1:40000 127.0.0.1:8080 \
             127.0.0.1:50000 - app\n"
        );
    }

    /// A TCP connection's line: Envoy's tcp_proxy fills no HTTP field, and its code is 0.
    #[test]
    fn formats_a_tcp_connection() {
        let r = Record {
            start: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            duration_ms: 1500,
            flags: "UF,URX",
            bytes_received: 7,
            upstream_host: Some("127.0.0.1:3306".parse().unwrap()),
            upstream_cluster: "outbound|3306||db.local".into(),
            downstream_local: Some("127.0.0.1:3306".parse().unwrap()),
            downstream_remote: Some("127.0.0.1:50000".parse().unwrap()),
            requested_server_name: "db.example.com".into(),
            ..Record::default()
        };
        let mut out = Vec::new();
        format(&r, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[2023-11-14T22:13:20.123Z] \"- - -\" 0 UF,URX - - \"-\" 7 0 1500 - \"-\" \"-\" \"-\" \"-\" \
             \"127.0.0.1:3306\" outbound|3306||db.local - 127.0.0.1:3306 127.0.0.1:50000 db.example.com -\n"
        );
        let mut out = Vec::new();
        format_json(&r, &mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((json["response_code"].as_u64(), json["method"].as_str()), (Some(0), None));
        assert_eq!(json["response_flags"], "UF,URX");
        assert_eq!(json["grpc_status"], serde_json::Value::Null, "not gRPC");
    }

    #[test]
    fn reset_forgets_the_request_but_keeps_the_allocations() {
        let mut r = Record {
            method: "GET".into(),
            route_name: "app".into(),
            status: 200,
            upstream_host: Some("127.0.0.1:9000".parse().unwrap()),
            ..Record::default()
        };
        let cap = r.route_name.capacity();
        r.reset();
        let mut out = Vec::new();
        format(&r, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[-] \"- - -\" 0 - - - \"-\" 0 0 0 - \"-\" \"-\" \"-\" \"-\" \"-\" - - - - - -\n"
        );
        assert_eq!(r.route_name.capacity(), cap);
    }
}
