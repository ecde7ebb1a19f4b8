//! `strait-bench http` against a tiny backend each test starts: a thread per connection that
//! answers HTTP/1.1 and notes what it saw, so the load's counts can be checked from both ends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use strait_test_support::closed_port;

use super::{run_json, run_json_failing};

/// How the backend answers.
#[derive(Debug, Clone, Copy)]
struct Behaviour {
    status: u16,
    /// Answer with `Connection: close` and close.
    close: bool,
    /// Hold the answer to this request (counted from 1 across connections) for a second.
    stall_at: Option<u64>,
    /// Answer every Nth request (counted as above) 503 instead.
    fail_every: Option<u64>,
}

const OK: Behaviour = Behaviour { status: 200, close: false, stall_at: None, fail_every: None };

#[derive(Debug, Default)]
struct Seen {
    requests: AtomicU64,
    connections: AtomicU64,
    /// The most requests one read brought in: above 1 means they came pipelined.
    most_per_read: AtomicU64,
    /// The first request's head and body.
    first: Mutex<Option<(String, Vec<u8>)>>,
}

struct Backend {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl Backend {
    fn start(behaviour: Behaviour) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                shared.connections.fetch_add(1, Relaxed);
                let seen = shared.clone();
                thread::spawn(move || serve(stream, behaviour, &seen));
            }
        });
        Backend { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

fn serve(mut stream: TcpStream, behaviour: Behaviour, seen: &Seen) {
    let _ = stream.set_nodelay(true);
    let answer = |status: u16| {
        format!(
            "HTTP/1.1 {status} X\r\nContent-Length: 5\r\n{}\r\nhello",
            if behaviour.close { "Connection: close\r\n" } else { "" }
        )
    };
    let (answer, failure) = (answer(behaviour.status), answer(503));
    let (mut buf, mut chunk, mut out) = (Vec::new(), [0u8; 16384], Vec::new());
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut this_read = 0;
        while let Some((head, body, used)) = split_request(&buf) {
            this_read += 1;
            let number = seen.requests.fetch_add(1, Relaxed) + 1;
            if number == 1 {
                *seen.first.lock().unwrap() = Some((head, body));
            }
            if behaviour.stall_at == Some(number) {
                let _ = stream.write_all(&out);
                out.clear();
                thread::sleep(Duration::from_secs(1));
            }
            let fails = behaviour.fail_every.is_some_and(|n| number.is_multiple_of(n));
            out.extend_from_slice(if fails { failure.as_bytes() } else { answer.as_bytes() });
            buf.drain(..used);
            if behaviour.close {
                let _ = stream.write_all(&out);
                return;
            }
        }
        seen.most_per_read.fetch_max(this_read, Relaxed);
        if stream.write_all(&out).is_err() {
            return;
        }
        out.clear();
    }
}

/// A whole request at the front of `buf`: its head, its body and how many bytes it took.
fn split_request(buf: &[u8]) -> Option<(String, Vec<u8>, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.trim().parse::<usize>().unwrap());
    let body = buf.get(end..end + length)?.to_vec();
    Some((head, body, end + length))
}

fn count(report: &Value, section: &str, key: &str) -> u64 {
    report[section][key].as_u64().unwrap_or(0)
}

#[test]
fn a_request_count_is_exact() {
    let backend = Backend::start(OK);
    let r = run_json(&["http", &backend.url(), "-n", "500", "-c", "8", "-d", "20s"]);
    assert_eq!(r["mode"], "http");
    assert_eq!(r["operations"], 500, "{r}");
    assert_eq!(count(&r, "statuses", "2xx"), 500, "{r}");
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
    assert_eq!(backend.seen.requests.load(Relaxed), 500);
    // Keep-alive: one connection each, never reopened.
    assert_eq!(backend.seen.connections.load(Relaxed), 8);
}

#[test]
fn pipelined_requests_arrive_together_and_count_right() {
    let backend = Backend::start(OK);
    let r = run_json(&["http", &backend.url(), "-n", "402", "-c", "2", "--pipeline", "4", "-d", "20s"]);
    assert_eq!(r["operations"], 402, "{r}");
    assert_eq!(count(&r, "statuses", "2xx"), 402, "{r}");
    assert_eq!(backend.seen.requests.load(Relaxed), 402);
    assert!(backend.seen.most_per_read.load(Relaxed) > 1, "the backend never saw two requests in one read");
}

#[test]
fn a_post_body_reaches_the_backend() {
    let backend = Backend::start(OK);
    let r = run_json(&["http", &backend.url(), "-m", "POST", "--body", "hello body", "-H", "X-Test: yes", "-n", "10"]);
    assert_eq!(r["operations"], 10, "{r}");
    let (head, body) = backend.seen.first.lock().unwrap().clone().unwrap();
    assert!(head.starts_with("POST / HTTP/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("Host: {}\r\n", backend.addr)), "{head}");
    assert!(head.contains("X-Test: yes\r\n"), "{head}");
    assert!(head.contains("Content-Length: 10\r\n"), "{head}");
    assert_eq!(body, b"hello body");
}

#[test]
fn error_statuses_are_counted_and_fail_the_run() {
    let backend = Backend::start(Behaviour { status: 503, ..OK });
    let (r, stderr) = run_json_failing(&["http", &backend.url(), "-n", "100", "-c", "4"]);
    assert_eq!(r["operations"], 100, "{r}");
    assert_eq!(count(&r, "statuses", "5xx"), 100, "{r}");
    assert_eq!(count(&r, "errors", "status"), 100, "{r}");
    assert!(stderr.contains("no operation succeeded (status 100)"), "{stderr}");
}

#[test]
fn errors_past_the_rate_fail_the_run() {
    let backend = Backend::start(Behaviour { fail_every: Some(10), ..OK });
    let args = ["http", &backend.url(), "-n", "100", "-c", "2"];
    let (r, stderr) = run_json_failing(&args);
    assert_eq!(count(&r, "errors", "status"), 10, "{r}");
    assert!(
        stderr.contains("10 of 100 operations failed (status 10), more than --max-error-rate 0.01 allows"),
        "{stderr}"
    );
    let r = run_json(&[&args[..], &["--max-error-rate", "0.1"]].concat());
    assert_eq!(count(&r, "errors", "status"), 10, "{r}");
}

#[test]
fn connection_close_reconnects() {
    let backend = Backend::start(Behaviour { close: true, ..OK });
    let r = run_json(&["http", &backend.url(), "-n", "50", "-c", "2"]);
    assert_eq!(r["operations"], 50, "{r}");
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
    // A connection per answer, and each load connection may open one more before it learns the
    // count is used up.
    assert!((50..=52).contains(&backend.seen.connections.load(Relaxed)), "{:?}", backend.seen);
}

#[test]
fn a_closed_port_ends_at_the_deadline_with_connect_errors() {
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let started = Instant::now();
    let (r, stderr) = run_json_failing(&["http", &url, "-c", "4", "-d", "1s"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(r["operations"], 0, "{r}");
    assert!(count(&r, "errors", "connect") > 0, "{r}");
    assert!(stderr.contains("no operation succeeded (connect "), "{stderr}");
}

/// The check of coordinated omission: a backend that stalls for a second, once. The
/// open loop keeps the schedule, so every request due during the stall shows it; the closed
/// loop just stops sending on that connection, and its percentiles barely move.
#[test]
fn the_open_loop_sees_a_stall_the_closed_loop_hides() {
    let stalling = Behaviour { stall_at: Some(500), ..OK };
    let (open, closed) = (Backend::start(stalling), Backend::start(stalling));
    let (open, closed) = thread::scope(|s| {
        let open = s.spawn(|| run_json(&["http", &open.url(), "--rate", "1000", "-c", "4", "-d", "4s"]));
        let closed = s.spawn(|| run_json(&["http", &closed.url(), "-c", "4", "-d", "4s"]));
        (open.join().unwrap(), closed.join().unwrap())
    });
    let us = |r: &Value, q: &str| r["latency_us"][q].as_f64().unwrap();
    assert_eq!(open["mode"], "http-open-loop");
    // About 4000 requests, the 250 due on the stalled connection during the stall all late.
    let done = open["operations"].as_u64().unwrap();
    assert!((3600..=4000).contains(&done), "{open}");
    assert!(us(&open, "p99") >= 500_000.0, "{open}");
    assert!(us(&open, "max") >= 1_000_000.0, "{open}");
    assert!(us(&closed, "max") >= 1_000_000.0, "{closed}");
    assert!(us(&closed, "p99") < 100_000.0, "{closed}");
}
