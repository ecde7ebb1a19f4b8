//! What one client may take, set on the command line: head sizes (431, 414), the time to send
//! a head (slowloris: 408, counted from the connection's start), the idle time between
//! requests, a request's whole duration (408), and connections per worker.

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::backend::Backend;
use support::client::{self, Conn};
use support::config::app_behind_rule;
use support::{free_port, Driver, Gateway};

const ROUTE: &str = "  - route:\n    - destination:\n        host: app.local\n";

fn start(driver: Driver, args: &[&str]) -> (Gateway, SocketAddr, Backend) {
    let backend = Backend::start("app");
    let port = free_port();
    let config = app_behind_rule(port, &[backend.port()], ROUTE, "    loadBalancer:\n      simple: ROUND_ROBIN\n");
    let mut builder = gateway!(driver).file("gw.yaml", &config).workers(1);
    for a in args {
        builder = builder.arg(a);
    }
    (builder.start(), format!("127.0.0.1:{port}").parse().unwrap(), backend)
}

/// Everything the gateway sends until it closes `s`, and how long that took.
fn until_closed(s: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("closed by the gateway within 10 s");
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

both_drivers! {
    fn head_limits_are_configurable(driver) {
        let (_gw, addr, backend) = start(driver, &["--max-request-headers-kb", "2", "--max-request-line-kb", "1", "--max-headers-count", "5"]);
        let get = |fields: &str, path: &str| client::request(addr, &format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n{fields}Connection: close\r\n\r\n")).status;
        assert_eq!(get(&format!("X-Big: {}\r\n", "b".repeat(3000)), "/"), 431);
        assert_eq!(get("", &format!("/{}", "a".repeat(1100))), 414);
        let fields = |n: usize| (0..n).map(|i| format!("X-{i}: v\r\n")).collect::<String>();
        // Host and Connection count among the five.
        assert_eq!(get(&fields(4), "/"), 431);
        assert_eq!(get(&fields(3), "/"), 200);
        // Both near their limits, the whole head still under 2 KiB.
        assert_eq!(get(&format!("X-Fits: {}\r\n", "b".repeat(1000)), &format!("/{}", "a".repeat(800))), 200);
        assert_eq!(backend.count(), 2);
    }

    fn a_slow_head_is_cut_off_from_the_connections_start(driver) {
        let (_gw, addr, backend) = start(driver, &["--request-headers-timeout", "1s"]);
        // Slowloris: a byte every 200 ms keeps the connection busy but never finishes a head.
        let mut drip = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        let head = b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: abcdefghijklmnopqrstuvwxyz";
        let mut answer = Vec::new();
        drip.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        for b in head {
            if drip.write_all(&[*b]).is_err() || drip.read_to_end(&mut answer).is_ok() {
                break;
            }
        }
        let (rest, _) = until_closed(&mut drip);
        answer.extend_from_slice(rest.as_bytes());
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "cut off after {took:?}");
        // A connection that sends nothing at all is closed, with nothing to answer.
        let mut silent = TcpStream::connect(addr).unwrap();
        let (got, took) = until_closed(&mut silent);
        assert_eq!(got, "");
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "{took:?}");
        assert_eq!(backend.count(), 0);
        // A prompt client is served as usual.
        assert_eq!(client::get(addr, "app.test", "/").status, 200);
    }

    fn an_idle_keep_alive_connection_is_closed(driver) {
        let (_gw, addr, _backend) = start(driver, &["--idle-timeout", "1s", "--request-headers-timeout", "30s"]);
        let mut c = Conn::open(addr);
        assert_eq!(c.get("/", "app.test").status, 200);
        // Still open within the idle timeout...
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(c.get("/", "app.test").status, 200);
        // ...closed after it, without an answer.
        let (got, took) = until_closed(c.reader.get_mut());
        assert_eq!(got, "");
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "{took:?}");
    }

    fn a_request_over_its_maximum_duration_is_answered_408(driver) {
        let (_gw, addr, _backend) = start(driver, &["--max-request-duration", "1s"]);
        let started = Instant::now();
        let resp = client::get(addr, "app.test", "/delay/3000");
        assert_eq!((resp.status, resp.body_text().as_str()), (408, "downstream duration timeout"));
        assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
        assert_eq!(client::get(addr, "app.test", "/delay/100").status, 200);
    }

    fn past_the_connection_limit_new_clients_wait_in_the_backlog(driver) {
        let (_gw, addr, _backend) = start(driver, &["--max-connections-per-worker", "2"]);
        let (mut a, mut b) = (Conn::open(addr), Conn::open(addr));
        assert_eq!(a.get("/", "app.test").status, 200);
        assert_eq!(b.get("/", "app.test").status, 200);
        // A third is accepted by the kernel but not served while two are open...
        let mut third = TcpStream::connect(addr).unwrap();
        third.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").unwrap();
        third.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut byte = [0u8; 1];
        assert!(third.read(&mut byte).is_err(), "served past the limit");
        // ...and is, once one of them closes.
        drop(a);
        let (got, _) = until_closed(&mut third);
        assert!(got.starts_with("HTTP/1.1 200 "), "{got:?}");
        assert_eq!(b.get("/", "app.test").status, 200);
    }
}
