//! HTTP/1.1 load. The closed loop (as wrk) sends a connection's next request, or pipelined
//! batch, as soon as the last is answered. The open loop (as wrk2) gives every request a time
//! it is due at `--rate` and measures its latency from then, so a stall counts against every
//! request it held up and not only the one it hit (coordinated omission).
//!
//! Each connection is a monoio task on its thread. The request is serialized once for the run;
//! answers are parsed in place in one reused read buffer per connection; and each connection
//! has one timer, reset for every wait (connect, write, read, pacing, back-off), so no timer is
//! made per request.

pub mod decode;
pub mod pacer;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::time::Sleep;

use crate::cli::{HttpArgs, RequestArgs};
use crate::connect::{Connect, Tcp};
use crate::error::BenchError;
use crate::report::Report;
use crate::runner::{self, Backoff, Thread};
use crate::stats::{ErrorKind, Recorder};
use decode::{Answer, Decoder};
use pacer::Pacer;

/// A connection's read buffer. Bodies pass through it without being kept, so only a response
/// head (or chunk-size line) has to fit.
const READ_BUF: usize = 64 * 1024;

/// `strait-bench http URL`: plain-TCP HTTP/1.1 load.
pub fn run(args: &HttpArgs) -> Result<Report, BenchError> {
    let target = Target::parse(&args.url)?;
    if target.tls {
        return Err(BenchError::Usage(format!("{}: for HTTPS use `strait-bench tls --mode requests`", args.url)));
    }
    let mode = if args.rate.is_some() { "http-open-loop" } else { "http" };
    run_with(args, mode, Tcp { addr: target.addr, timeout: args.load.timeout })
}

/// The HTTP load over connections `connector` opens (plain TCP, or TLS for `tls --mode
/// requests`), reported under `mode`.
pub fn run_with<C>(args: &HttpArgs, mode: &str, connector: C) -> Result<Report, BenchError>
where
    C: Connect<Stream: AsyncReadRent + AsyncWriteRent>,
{
    let target = Target::parse(&args.url)?;
    if args.pipeline == 0 {
        return Err(BenchError::Usage("--pipeline must be at least 1".into()));
    }
    check_rate(args.rate)?;
    if args.rate.is_some() && args.pipeline > 1 {
        return Err(BenchError::Usage(
            "--pipeline does not combine with --rate: the open loop sends each request when it is due".into(),
        ));
    }
    let plan = Arc::new(Plan {
        request: request(&args.request, &target)?,
        head: args.request.method == "HEAD",
        pipeline: args.pipeline,
        timeout: args.load.timeout,
        rate: args.rate,
        connections: args.load.connections,
        threads: args.load.threads,
    });
    let outcome = runner::run(&args.load, mode, move |thread| load(thread, plan.clone(), connector.clone()))?;
    let mut report =
        Report::new(mode, &args.url, args.load.connections, args.load.threads, &outcome.recorder, outcome.elapsed);
    report.rate = args.rate;
    Ok(report)
}

/// Where the requests go, from an http:// or https:// URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    /// The host as the URL names it, without brackets: a DNS name or an IP address (what TLS
    /// sends as the server name).
    pub host: String,
    pub port: u16,
    /// The first address the host resolves to.
    pub addr: SocketAddr,
    /// Path and query, as the request line carries them.
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, BenchError> {
        let bad = |why: &dyn std::fmt::Display| BenchError::Usage(format!("{url}: {why}"));
        let u = url::Url::parse(url).map_err(|e| bad(&e))?;
        let tls = match u.scheme() {
            "http" => false,
            "https" => true,
            _ => return Err(bad(&"expected an http:// or https:// URL")),
        };
        let host = match u.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(bad(&"no host")),
        };
        let port = u.port_or_known_default().expect("http and https have default ports");
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| bad(&e))?
            .next()
            .ok_or_else(|| bad(&"the host resolves to no address"))?;
        let path = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        Ok(Target { tls, host, port, addr, path })
    }

    /// The `Host` header's value: brackets around an IPv6 address, the port only when it is not
    /// the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// The request `-m`, `-H` and `--body` describe, checked, before any protocol writes it.
#[derive(Debug)]
pub struct RequestParts {
    pub method: String,
    /// In the order given, a `Host` among them.
    pub headers: Vec<(String, String)>,
    /// The value of a `Host` header given with `-H`, which replaces the URL's authority.
    pub host: Option<String>,
    pub body: Option<Vec<u8>>,
}

impl RequestParts {
    pub fn new(args: &RequestArgs) -> Result<RequestParts, BenchError> {
        if args.method.is_empty() || !args.method.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BenchError::Usage(format!("-m `{}`: not an HTTP method", args.method)));
        }
        let body = match (&args.body, &args.body_file) {
            (Some(body), _) => Some(body.as_bytes().to_vec()),
            (None, Some(path)) => {
                Some(std::fs::read(path).map_err(BenchError::io(format!("reading {}", path.display())))?)
            }
            (None, None) => None,
        };
        let mut parts = RequestParts { method: args.method.clone(), headers: Vec::new(), host: None, body };
        for h in &args.headers {
            let (name, value) = header(h)?;
            if name.eq_ignore_ascii_case("host") {
                parts.host = Some(value.to_string());
            }
            if parts.body.is_some() && name.eq_ignore_ascii_case("content-length") {
                return Err(BenchError::Usage(format!("-H `{h}`: the body's length is set from --body")));
            }
            parts.headers.push((name.to_string(), value.to_string()));
        }
        Ok(parts)
    }
}

/// `-H Name: value`, split and trimmed.
pub fn header(h: &str) -> Result<(&str, &str), BenchError> {
    h.split_once(':')
        .map(|(n, v)| (n.trim(), v.trim()))
        .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| BenchError::Usage(format!("-H `{h}`: expected `Name: value`")))
}

/// `--rate`, when given, must be a rate.
pub fn check_rate(rate: Option<f64>) -> Result<(), BenchError> {
    match rate {
        Some(rate) if !(rate.is_finite() && rate > 0.0) => {
            Err(BenchError::Usage(format!("--rate {rate}: expected requests per second above 0")))
        }
        _ => Ok(()),
    }
}

/// The request every connection sends, serialized once for the whole run.
fn request(args: &RequestArgs, target: &Target) -> Result<Vec<u8>, BenchError> {
    let parts = RequestParts::new(args)?;
    let mut head = format!("{} {} HTTP/1.1\r\n", parts.method, target.path);
    if parts.host.is_none() {
        head += &format!("Host: {}\r\n", target.authority());
    }
    for (name, value) in &parts.headers {
        head += &format!("{name}: {value}\r\n");
    }
    if let Some(body) = &parts.body {
        head += &format!("Content-Length: {}\r\n", body.len());
    }
    head += "\r\n";
    let mut request = head.into_bytes();
    request.extend_from_slice(parts.body.as_deref().unwrap_or_default());
    Ok(request)
}

/// What every connection of the run shares.
struct Plan {
    request: Vec<u8>,
    /// HEAD answers carry no body, whatever their headers say.
    head: bool,
    pipeline: usize,
    timeout: Duration,
    rate: Option<f64>,
    connections: usize,
    threads: usize,
}

/// What one thread's connections share.
struct Shared {
    thread: Thread,
    plan: Arc<Plan>,
    /// `pipeline` copies of the request back to back; a batch is written from its front.
    batch: Rc<Vec<u8>>,
    rec: RefCell<Recorder>,
}

/// One thread's load: its share of the connections, each a task, until all are done.
async fn load<C>(thread: Thread, plan: Arc<Plan>, connector: C) -> Recorder
where
    C: Connect<Stream: AsyncReadRent + AsyncWriteRent>,
{
    // Connections are numbered across threads so the open loop spaces them all evenly.
    let first = runner::first(plan.connections as u64, plan.threads, thread.index) as usize;
    let count = thread.connections;
    let shared = Rc::new(Shared {
        batch: Rc::new(plan.request.repeat(plan.pipeline)),
        rec: RefCell::new(thread.recorder()),
        thread,
        plan,
    });
    let tasks: Vec<_> =
        (0..count).map(|i| monoio::spawn(connection(shared.clone(), connector.clone(), first + i))).collect();
    for task in tasks {
        task.await;
    }
    shared.rec.replace(Recorder::empty())
}

/// What a bounded wait came to.
pub enum Waited<T> {
    Ready(T),
    TimedOut,
    /// The run's deadline came first: what was in flight is dropped uncounted, as wrk does.
    RunOver,
}

/// Waits for `fut` until `limit` or the run's end, whichever is first, on the connection's one
/// timer. Giving up drops `fut`, and with it any buffer it holds.
pub async fn within<F: Future>(
    mut timer: Pin<&mut Sleep>,
    limit: Instant,
    run_end: Instant,
    fut: F,
) -> Waited<F::Output> {
    timer.as_mut().reset(monoio::time::Instant::from_std(limit.min(run_end)));
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            Poll::Ready(Waited::Ready(out))
        } else if timer.as_mut().poll(cx).is_ready() {
            Poll::Ready(if limit < run_end { Waited::TimedOut } else { Waited::RunOver })
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Why a connection's requests (or an HTTP/2 stream slot's) stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The run is over (its deadline, or `--requests` used up).
    Done,
    /// The server closes after its last answer (HTTP/2: a GOAWAY without error): open a new
    /// connection straight away.
    Reconnect,
    /// A failure, already counted: open a new connection after a back-off.
    Failed,
}

/// One connection task: connect, send and read until the run ends, reconnecting as needed.
async fn connection<C>(shared: Rc<Shared>, connector: C, index: usize)
where
    C: Connect<Stream: AsyncReadRent + AsyncWriteRent>,
{
    let run_end = shared.thread.deadline;
    let mut timer = pin!(monoio::time::sleep_until(monoio::time::Instant::from_std(run_end)));
    let mut conn = Conn {
        index,
        pacer: None,
        decoder: Decoder::new(shared.plan.head),
        buf: Vec::new(),
        pos: 0,
        backoff: Backoff::new(),
    };
    loop {
        let end = match within(timer.as_mut(), Instant::now() + shared.plan.timeout, run_end, connector.connect()).await
        {
            Waited::Ready(Ok(mut stream)) => conn.requests(&shared, &mut stream, timer.as_mut()).await,
            Waited::Ready(Err(kind)) => {
                shared.rec.borrow_mut().error(Instant::now(), kind);
                End::Failed
            }
            Waited::TimedOut => {
                shared.rec.borrow_mut().error(Instant::now(), ErrorKind::Timeout);
                End::Failed
            }
            Waited::RunOver => End::Done,
        };
        match end {
            End::Done => return,
            End::Reconnect => {}
            End::Failed => {
                let pause = Instant::now() + conn.backoff.next();
                if let Waited::RunOver = within(timer.as_mut(), pause, run_end, std::future::pending::<()>()).await {
                    return;
                }
            }
        }
    }
}

/// A connection task's state that outlives each TCP (or TLS) connection.
struct Conn {
    /// This connection's number among all threads' (the open loop's spacing).
    index: usize,
    /// The open loop's schedule, from the first connect on.
    pacer: Option<Pacer>,
    decoder: Decoder,
    buf: Vec<u8>,
    /// How much of `buf` is decoded.
    pos: usize,
    /// Reset once an answer comes.
    backoff: Backoff,
}

impl Conn {
    /// Sends requests and reads their answers on one connection until it ends.
    async fn requests<S>(&mut self, shared: &Shared, stream: &mut S, mut timer: Pin<&mut Sleep>) -> End
    where
        S: AsyncReadRent + AsyncWriteRent,
    {
        let plan = &*shared.plan;
        let thread = &shared.thread;
        let run_end = thread.deadline;
        self.decoder = Decoder::new(plan.head);
        self.pos = 0;
        self.buf.clear();
        if self.buf.capacity() == 0 {
            // New, or lost with a read that was given up on.
            self.buf.reserve_exact(READ_BUF);
        }
        if let Some(rate) = plan.rate {
            self.pacer.get_or_insert_with(|| Pacer::new(Instant::now(), rate, plan.connections, self.index));
        }
        loop {
            let mut now = Instant::now();
            // How many requests go out now, and the time their latency is measured from.
            let (count, from) = match &mut self.pacer {
                None => {
                    let mut count = 0;
                    while count < plan.pipeline && thread.start_one(now) {
                        count += 1;
                    }
                    (count, now)
                }
                Some(pacer) => {
                    let due = pacer.next_due();
                    if due >= run_end {
                        return End::Done;
                    }
                    // Sent late because the last answer came late: the server's delay, counted
                    // from when the request was due. Waiting for the timer, which may wake a
                    // little late: our own, so counted from when it woke.
                    let from = if due > now {
                        within(timer.as_mut(), due, run_end, std::future::pending::<()>()).await;
                        now = Instant::now();
                        now
                    } else {
                        due
                    };
                    (usize::from(thread.start_one(now)), from)
                }
            };
            if count == 0 {
                return End::Done;
            }
            let limit = now + plan.timeout;
            let batch = shared.batch.clone().slice(..count * plan.request.len());
            match within(timer.as_mut(), limit, run_end, stream.write_all(batch)).await {
                Waited::Ready((Ok(_), _)) => {}
                Waited::Ready((Err(_), _)) => return lose(shared, ErrorKind::Io, count),
                Waited::TimedOut => return lose(shared, ErrorKind::Timeout, count),
                Waited::RunOver => return End::Done,
            }
            let mut at = Instant::now();
            let mut left = count;
            while left > 0 {
                match self.decoder.decode(&self.buf[self.pos..]) {
                    Ok((used, Some(answer))) => {
                        self.pos += used;
                        left -= 1;
                        self.answered(shared, answer, from, at);
                        if answer.close {
                            return closed(shared, left);
                        }
                        continue;
                    }
                    Ok((used, None)) => self.pos += used,
                    Err(kind) => return lose(shared, kind, left),
                }
                // Keep only the undecoded tail (part of a head, at most), at the front.
                if self.pos > 0 {
                    self.buf.drain(..self.pos);
                    self.pos = 0;
                } else if self.buf.len() == self.buf.capacity() {
                    return lose(shared, ErrorKind::Parse, left);
                }
                let filled = self.buf.len();
                let buf = std::mem::take(&mut self.buf).slice_mut(filled..);
                match within(timer.as_mut(), limit, run_end, stream.read(buf)).await {
                    Waited::Ready((result, buf)) => {
                        self.buf = buf.into_inner();
                        at = Instant::now();
                        match result {
                            Ok(0) => {
                                return match self.decoder.eof() {
                                    Some(answer) => {
                                        self.answered(shared, answer, from, at);
                                        closed(shared, left - 1)
                                    }
                                    None => lose(shared, ErrorKind::Closed, left),
                                }
                            }
                            Ok(n) => shared.rec.borrow_mut().bytes(at, n as u64),
                            Err(_) => return lose(shared, ErrorKind::Io, left),
                        }
                    }
                    Waited::TimedOut => return lose(shared, ErrorKind::Timeout, left),
                    Waited::RunOver => return End::Done,
                }
            }
        }
    }

    /// One answer, whole at `at`, to a request whose latency runs from `from`.
    fn answered(&mut self, shared: &Shared, answer: Answer, from: Instant, at: Instant) {
        shared.rec.borrow_mut().answer(at, at.saturating_duration_since(from), answer.status);
        self.backoff.reset();
    }
}

/// The server closes the connection after an answer; pipelined requests it left unanswered
/// are lost.
fn closed(shared: &Shared, unanswered: usize) -> End {
    lose(shared, ErrorKind::Closed, unanswered);
    End::Reconnect
}

/// `lost` requests will not be answered on this connection: each is one error.
fn lose(shared: &Shared, kind: ErrorKind, lost: usize) -> End {
    let now = Instant::now();
    let mut rec = shared.rec.borrow_mut();
    for _ in 0..lost {
        rec.error(now, kind);
    }
    End::Failed
}
