//! `--access-log`: Istio's default text access log, one line per request on stdout.
//!
//! A worker formats its lines into a buffer of its own and hands the buffer to one writer
//! thread when it fills and every 50 ms; a stdout that does not keep up costs dropped lines (counted), never a stalled
//! request. Each buffer holds whole lines and is written in one call, so lines never
//! interleave mid-line.

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::codec::RequestHead;

/// A worker hands its buffer over once it holds this much, and from its config-following loop
/// (every 50 ms) otherwise.
const FLUSH_AT: usize = 32 * 1024;
/// Buffers waiting for the writer thread; beyond them lines are dropped.
const QUEUED_BUFFERS: usize = 64;

/// What one request did, gathered as it is served (Envoy's names in the comments).
#[derive(Debug, Default)]
pub struct Record {
    /// START_TIME, and DURATION from `began`.
    pub start: Option<(SystemTime, Instant)>,
    pub method: String,
    /// X-ENVOY-ORIGINAL-PATH?:PATH: the path as the client sent it, query included.
    pub path: String,
    pub protocol: &'static str,
    pub status: u16,
    /// RESPONSE_FLAGS: NR, UH, UF, UT, UC, DC, NC… or `-`.
    pub flags: &'static str,
    /// RESPONSE_CODE_DETAILS.
    pub details: &'static str,
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
    pub route_name: String,
}

impl Record {
    /// The request as the client sent it.
    pub fn begin(&mut self, head: &RequestHead<'_>, local: SocketAddr, remote: SocketAddr) {
        let text = |name: &str| head.header(name).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
        self.start = Some((SystemTime::now(), Instant::now()));
        self.method = head.method.to_owned();
        self.path = head.target.to_owned();
        self.protocol = if head.version == 0 { "HTTP/1.0" } else { "HTTP/1.1" };
        // As forwarded: the client's address appended, as Envoy logs it.
        self.x_forwarded_for = match text("x-forwarded-for") {
            xff if xff.is_empty() => remote.ip().to_string(),
            xff => format!("{xff}, {}", remote.ip()),
        };
        self.user_agent = text("user-agent");
        self.request_id = text("x-request-id");
        self.authority = head.host().unwrap_or_default().to_owned();
        self.downstream_local = Some(local);
        self.downstream_remote = Some(remote);
    }

    /// The request is forwarded on `route` with the request id the upstream sees (`None`: the
    /// client's own was kept).
    pub fn forwarded(&mut self, request_id: Option<&str>, route: Option<&str>) {
        if let Some(id) = request_id {
            self.request_id = id.to_owned();
        }
        self.route_name = route.unwrap_or_default().to_owned();
    }

    /// The endpoint tried (the last one, after retries).
    pub fn upstream(&mut self, host: SocketAddr, cluster: &str) {
        self.upstream_host = Some(host);
        self.upstream_cluster = cluster.to_owned();
    }

    pub fn answered(&mut self, status: u16, flags: &'static str, details: &'static str) {
        // A request refused before its head parsed still gets a line.
        self.start.get_or_insert_with(|| (SystemTime::now(), Instant::now()));
        self.status = status;
        self.flags = flags;
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
pub fn format(r: &Record, out: &mut Vec<u8>) {
    let (start, duration) = match r.start {
        Some((wall, began)) => (humantime::format_rfc3339_millis(wall).to_string(), began.elapsed().as_millis()),
        None => ("-".to_owned(), 0),
    };
    let dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let _ = writeln!(
        out,
        "[{start}] \"{} {} {}\" {} {} {} - \"-\" {} {} {duration} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" {} {} {} {} - {}",
        dash(&r.method),
        dash(&r.path),
        dash(r.protocol),
        r.status,
        dash(r.flags),
        dash(r.details),
        r.bytes_received,
        r.bytes_sent,
        opt(r.upstream_service_time.map(|t| t.to_string())),
        dash(&r.x_forwarded_for),
        dash(&r.user_agent),
        dash(&r.request_id),
        dash(&r.authority),
        opt(r.upstream_host.map(|a| a.to_string())),
        dash(&r.upstream_cluster),
        opt(r.upstream_local.map(|a| a.to_string())),
        opt(r.downstream_local.map(|a| a.to_string())),
        opt(r.downstream_remote.map(|a| a.to_string())),
        dash(&r.route_name),
    );
}

/// A worker's side of the log: its line buffer and the handle to the writer thread.
pub struct Sink {
    buf: RefCell<Vec<u8>>,
    writer: SyncSender<Vec<u8>>,
}

impl Default for Sink {
    fn default() -> Self {
        Self { buf: RefCell::new(Vec::with_capacity(FLUSH_AT)), writer: writer().0.clone() }
    }
}

impl Sink {
    /// Buffers `r`'s line; hands the buffer on when it is full, or at once while `draining`
    /// (so that [`finish`] finds every line of a shutdown handed over).
    pub fn log(&self, r: &Record, draining: bool) {
        let full = {
            let mut buf = self.buf.borrow_mut();
            format(r, &mut buf);
            buf.len() >= FLUSH_AT
        };
        if full || draining {
            self.flush();
        }
    }

    /// Hands the buffered lines to the writer thread, or drops them if it is behind.
    pub fn flush(&self) {
        let lines = {
            let mut buf = self.buf.borrow_mut();
            if buf.is_empty() {
                return;
            }
            std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_AT))
        };
        let writer = &writer().1;
        writer.handed.fetch_add(1, Ordering::Relaxed);
        if let Err(TrySendError::Full(lines) | TrySendError::Disconnected(lines)) = self.writer.try_send(lines) {
            writer.handed.fetch_sub(1, Ordering::Relaxed);
            let n = lines.iter().filter(|&&b| b == b'\n').count();
            tracing::warn!("access log: stdout is behind, {n} lines dropped");
        }
    }
}

/// Buffers handed to the writer thread and buffers it has written, so that an exiting process
/// can wait for its last lines. Touched once per buffer, never per request.
#[derive(Default)]
struct Progress {
    handed: AtomicU64,
    written: AtomicU64,
}

/// The process's one writer thread and its progress, once started.
static WRITER: OnceLock<(SyncSender<Vec<u8>>, Arc<Progress>)> = OnceLock::new();

/// The writer thread, started on first use.
fn writer() -> &'static (SyncSender<Vec<u8>>, Arc<Progress>) {
    WRITER.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUED_BUFFERS);
        let progress = Arc::new(Progress::default());
        let seen = progress.clone();
        let spawned = std::thread::Builder::new().name("strait-access-log".into()).spawn(move || {
            let mut stdout = std::io::stdout().lock();
            for lines in rx {
                let res = stdout.write_all(&lines).and_then(|()| stdout.flush());
                seen.written.fetch_add(1, Ordering::Relaxed);
                if res.is_err() {
                    return;
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!("access log: cannot start the writer thread: {e}");
        }
        (tx, progress)
    })
}

/// Waits (at most `limit`) until every line handed over is written: called once the gateway
/// has drained, before the process exits. A no-op when the access log is off.
pub fn finish(limit: Duration) {
    let Some((_, progress)) = WRITER.get() else { return };
    let deadline = Instant::now() + limit;
    while progress.written.load(Ordering::Relaxed) < progress.handed.load(Ordering::Relaxed)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_istio_default_line() {
        let r = Record {
            start: Some((SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123), Instant::now())),
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
}
