//! `strait-bench h2` and `grpc` against `strait-bench serve h2`: h2c with prior knowledge, TLS
//! with ALPN h2, the closed and open loop over connections × streams, and a port nobody
//! listens on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use strait_test_support::closed_port;

use crate::tls::Certs;
use crate::{run_json, run_json_failing, Served};

fn url(served: &Served, path: &str) -> String {
    format!("http://{}{path}", served.addr)
}

fn count(report: &Value, section: &str, key: &str) -> u64 {
    report[section][key].as_u64().unwrap_or(0)
}

fn us(report: &Value, q: &str) -> f64 {
    report["latency_us"][q].as_f64().unwrap()
}

/// Every request answered 2xx, none failed.
fn assert_clean(report: &Value, operations: u64) {
    assert_eq!(report["operations"], operations, "{report}");
    assert_eq!(count(report, "statuses", "2xx"), operations, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
}

#[test]
fn a_request_count_over_streams_is_exact() {
    let served = Served::start(&["h2", "--size", "100"]);
    let r = run_json(&["h2", &url(&served, "/"), "-n", "500", "-c", "2", "-s", "8", "-d", "20s"]);
    assert_eq!(r["mode"], "h2");
    assert_eq!(r["streams"], 8, "{r}");
    assert_clean(&r, 500);
    // Each answer's body, read whole.
    assert_eq!(r["bytes"], 500 * 100, "{r}");
}

#[test]
fn a_body_is_sent_and_echoed() {
    let served = Served::start(&["h2", "--echo"]);
    let args = ["h2", &url(&served, "/up"), "-m", "POST", "--body", "hello body", "-H", "x-test: yes", "-n", "40"];
    let r = run_json(&[&args[..], &["-c", "2", "-s", "4"]].concat());
    assert_clean(&r, 40);
    assert_eq!(r["bytes"], 40 * 10, "{r}");
    // HEAD: an answer without a body.
    let r = run_json(&["h2", &url(&served, "/"), "-m", "HEAD", "-n", "10"]);
    assert_clean(&r, 10);
    assert_eq!(r["bytes"], 0, "{r}");
}

/// One stream of a connection stalls for a second: in the closed loop the connection's other
/// streams go on meanwhile (they are multiplexed, not queued behind it), so only the tail
/// shows it; the open loop keeps the stalled stream's schedule, and every request due during
/// the stall shows it.
#[test]
fn a_stalled_stream_holds_up_only_itself_and_the_open_loop_sees_it() {
    let (open, closed) =
        (Served::start(&["h2", "--stall-once", "500:1s"]), Served::start(&["h2", "--stall-once", "500:1s"]));
    let (open, closed) = std::thread::scope(|s| {
        let open = s.spawn(|| run_json(&["h2", &url(&open, "/"), "--rate", "1000", "-c", "2", "-s", "2", "-d", "3s"]));
        let closed = s.spawn(|| run_json(&["h2", &url(&closed, "/"), "-c", "1", "-s", "4", "-d", "3s"]));
        (open.join().unwrap(), closed.join().unwrap())
    });
    assert_eq!(open["mode"], "h2-open-loop");
    assert_eq!(open["rate"], 1000.0, "{open}");
    // About 3000 requests, the 250 due on the stalled stream during the stall all late.
    let done = open["operations"].as_u64().unwrap();
    assert!((2600..=3000).contains(&done), "{open}");
    assert!(us(&open, "p99") >= 500_000.0, "{open}");
    assert!(us(&open, "max") >= 1_000_000.0, "{open}");
    assert!(us(&closed, "max") >= 1_000_000.0, "{closed}");
    assert!(us(&closed, "p99") < 100_000.0, "{closed}");
}

#[test]
fn a_closed_port_ends_at_the_deadline_with_connect_errors() {
    for mode in ["h2", "grpc"] {
        let url = format!("http://127.0.0.1:{}/", closed_port());
        let started = Instant::now();
        let (r, stderr) = run_json_failing(&[mode, &url, "-c", "4", "-s", "8", "-d", "1s"]);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "{mode}: took {took:?}");
        assert_eq!(r["operations"], 0, "{r}");
        assert!(count(&r, "errors", "connect") > 0, "{r}");
        assert!(stderr.contains("no operation succeeded (connect "), "{stderr}");
    }
}

#[test]
fn grpc_unary_calls_read_their_status_from_the_trailers() {
    let served = Served::start(&["h2"]);
    let r = run_json(&["grpc", &url(&served, "/strait.bench.Bench/Unary"), "-n", "300", "-c", "2", "-s", "4"]);
    assert_eq!(r["mode"], "grpc");
    assert_clean(&r, 300);
    // The backend echoes the message: 5 bytes of framing, field 1's tag and length, 16 bytes.
    assert_eq!(r["bytes"], 300 * (5 + 2 + 16), "{r}");
    let r = run_json(&["grpc", &url(&served, "/"), "--size", "300", "-n", "20", "--rate", "200"]);
    assert_eq!(r["mode"], "grpc-open-loop");
    assert_clean(&r, 20);
    assert_eq!(r["bytes"], 20 * (5 + 3 + 300), "{r}");
}

/// 200s without a `grpc-status` are failed calls, counted as answers too.
#[test]
fn answers_without_a_grpc_status_are_failed_calls() {
    let served = Served::start(&["h2"]);
    // The backend answers gRPC by the request's content-type: replaced, it answers as to
    // any HTTP/2 request.
    let args = ["grpc", &url(&served, "/"), "-H", "content-type: text/plain", "-n", "50"];
    let (r, stderr) = run_json_failing(&args);
    assert_eq!(r["operations"], 50, "{r}");
    assert_eq!(count(&r, "statuses", "2xx"), 50, "{r}");
    assert_eq!(count(&r, "errors", "grpc"), 50, "{r}");
    assert!(stderr.contains("no operation succeeded (grpc 50)"), "{stderr}");
}

/// `serve h2 --relay`: every stream passes through to the server behind, head, body and
/// trailers, over one connection per thread; with nothing behind, streams are refused.
#[test]
fn a_relay_passes_streams_through_whole() {
    let origin = Served::start(&["h2", "--echo"]);
    let relay = Served::start(&["h2", "--relay", &origin.addr.to_string()]);
    let args = ["h2", &url(&relay, "/up"), "-m", "POST", "--body", "through!", "-n", "200", "-c", "4", "-s", "8"];
    let r = run_json(&args);
    assert_clean(&r, 200);
    assert_eq!(r["bytes"], 200 * 8, "{r}");
    // A gRPC answer's status comes in the trailers, which the relay passes on.
    let r = run_json(&["grpc", &url(&relay, "/strait.bench.Bench/Unary"), "-n", "200", "-c", "2", "-s", "8"]);
    assert_clean(&r, 200);
    assert_eq!(r["bytes"], 200 * (5 + 2 + 16), "{r}");
    let nowhere = Served::start(&["h2", "--relay", &format!("127.0.0.1:{}", closed_port())]);
    let (r, _) = run_json_failing(&["h2", &url(&nowhere, "/"), "-n", "20", "-c", "1", "-s", "4"]);
    assert_eq!(count(&r, "statuses", "2xx"), 0, "{r}");
    assert_eq!(count(&r, "errors", "reset"), 20, "{r}");
}

#[test]
fn tls_negotiates_h2_by_alpn() {
    let certs = Certs::new();
    let h2 = certs.serve_as("h2");
    let https = format!("https://{}/", h2.addr);
    let r = run_json(&["h2", &https, "--ca", &certs.ca, "-n", "200", "-c", "2", "-s", "4"]);
    assert_clean(&r, 200);
    let r = run_json(&["grpc", &https, "--ca", &certs.ca, "--sni", "localhost", "-n", "200", "-c", "2", "-s", "4"]);
    assert_clean(&r, 200);
    // A CA that did not sign it, and a server that offers only http/1.1: no connection.
    let (r, _) = run_json_failing(&["h2", &https, "--ca", &certs.other_ca, "-c", "2", "-d", "1s"]);
    assert!(count(&r, "errors", "tls") > 0, "{r}");
    let http1 = certs.serve_as("http");
    let (r, stderr) = run_json_failing(&["h2", &format!("https://{}/", http1.addr), "-k", "-c", "2", "-d", "1s"]);
    assert!(count(&r, "errors", "tls") > 0, "{r}");
    assert!(stderr.contains("no operation succeeded (tls "), "{stderr}");
}

/// How the misbehaving backend answers.
#[derive(Debug, Clone, Copy)]
enum Misbehave {
    /// Reset every Nth stream (counted across connections) instead of answering it.
    ResetEvery(u64),
    /// End each connection with a graceful GOAWAY after answering N streams on it.
    GoAwayAfter(u64),
}

/// An h2c backend on a thread of its own (hyperium's h2 server on a monoio runtime), counting
/// the connections it accepted.
struct Misbehaving {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
}

impl Misbehaving {
    fn start(how: Misbehave) -> Misbehaving {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // The runtime waits for readiness; a blocking accept would stall its thread.
        listener.set_nonblocking(true).unwrap();
        let (connections, streams) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counted = connections.clone();
        std::thread::spawn(move || {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().unwrap();
            rt.block_on(async move {
                let listener = monoio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((stream, _)) = listener.accept().await {
                    counted.fetch_add(1, Relaxed);
                    let Ok(io) = stream.try_into_poll_io() else { continue };
                    monoio::spawn(Self::serve(io, how, streams.clone()));
                }
            });
        });
        Misbehaving { addr, connections }
    }

    async fn serve(io: monoio::net::tcp::stream_poll::TcpStreamPoll, how: Misbehave, streams: Arc<AtomicU64>) {
        let Ok(mut conn) = h2::server::handshake(io).await else { return };
        let mut answered = 0;
        // Accepting drives the connection to its end, the GOAWAY's included.
        while let Some(Ok((_request, mut respond))) = conn.accept().await {
            let n = streams.fetch_add(1, Relaxed) + 1;
            if let Misbehave::ResetEvery(every) = how {
                if n.is_multiple_of(every) {
                    respond.send_reset(h2::Reason::INTERNAL_ERROR);
                    continue;
                }
            }
            let _ = respond.send_response(http::Response::new(()), true);
            answered += 1;
            if matches!(how, Misbehave::GoAwayAfter(after) if answered == after) {
                conn.graceful_shutdown();
            }
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

#[test]
fn a_reset_stream_is_a_reset_error_and_the_connection_goes_on() {
    let backend = Misbehaving::start(Misbehave::ResetEvery(10));
    let r = run_json(&["h2", &backend.url(), "-n", "300", "-c", "1", "-s", "4", "--max-error-rate", "0.2"]);
    assert_eq!(r["operations"], 270, "{r}");
    assert_eq!(count(&r, "statuses", "2xx"), 270, "{r}");
    assert_eq!(r["errors"], serde_json::json!({"reset": 30}), "{r}");
    assert_eq!(backend.connections.load(Relaxed), 1);
}

#[test]
fn a_graceful_goaway_reconnects() {
    let backend = Misbehaving::start(Misbehave::GoAwayAfter(50));
    let r = run_json(&["h2", &backend.url(), "-n", "500", "-c", "1", "-s", "4", "-d", "20s"]);
    // h2's graceful shutdown announces the GOAWAY before it picks the last stream, so no stream
    // in flight is refused: every request is answered, on a new connection after 50 answers
    // (up to 54 with the 4 in flight), and maybe one more that finds the count used up.
    assert_clean(&r, 500);
    let connections = backend.connections.load(Relaxed);
    assert!((10..=11).contains(&connections), "{connections} connections");
}
