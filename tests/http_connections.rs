//! Connection handling end to end on both drivers: upstream reuse, pipelining, HTTP/1.0,
//! bodiless answers, 100-continue, and 1 GiB bodies streamed with flat memory.

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{Read, Write};
use std::time::Duration;

use support::backend::{self, Backend};
use support::client::{self, Conn};
use support::config::{docs, http_gateway, service_entry, virtual_service};
use support::{free_port, metric, Driver, Gateway};

const ROUTE_ALL: &str = "  - route:\n    - destination:\n        host: app.local\n";

fn setup(driver: Driver, backend: &Backend, workers: usize) -> (Gateway, std::net::SocketAddr) {
    let port = free_port();
    let yaml = docs(&[
        http_gateway("gw", port, &["*"]),
        virtual_service("app", "gw", &["*"], ROUTE_ALL),
        service_entry("app", "app.local", 80, &[backend.port()]),
    ]);
    let gw = gateway!(driver).workers(workers).file("gw.yaml", &yaml).start();
    (gw, format!("127.0.0.1:{port}").parse().unwrap())
}

both_drivers! {
    fn upstream_connections_are_reused(driver) {
        let b = Backend::start("app");
        let (gw, addr) = setup(driver, &b, 2);
        let mut c = Conn::open(addr);
        for i in 0..1000 {
            let resp = c.get(&format!("/n/{i}"), "x");
            assert_eq!(resp.status, 200);
        }
        // One client connection lives on one worker: one upstream connection serves it all.
        assert_eq!(b.connections.load(std::sync::atomic::Ordering::Relaxed), 1);
        let (_, stats) = gw.admin_get("/stats/prometheus");
        assert!(metric(&stats, "strait_upstream_reuse_ratio").is_some_and(|r| r > 0.99), "{stats}");
    }

    fn an_idle_connection_closed_by_the_upstream_is_not_reused(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b, 1);
        let mut c = Conn::open(addr);
        assert_eq!(c.get("/close-idle/10", "x").status, 200);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(c.get("/", "x").status, 200);
        assert_eq!(b.connections.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(b.count(), 2, "the second request went out once, on a fresh connection");
    }

    fn a_reused_connection_dropped_before_answering_is_retried_on_a_fresh_one(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b, 1);
        let mut c = Conn::open(addr);
        assert_eq!(c.get("/drop-next", "x").status, 200);
        let resp = c.get("/after", "x");
        assert_eq!(resp.status, 200, "replayed on a fresh connection: {:?}", resp.body_text());
        assert_eq!(b.connections.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(b.last().target, "/after");
    }

    fn pipelined_requests_answer_in_order(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b, 2);
        let mut c = Conn::open(addr);
        c.send(b"GET /size/3 HTTP/1.1\r\nHost: x\r\n\r\nPOST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /chunked/70000 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /size/9 HTTP/1.1\r\nHost: x\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.read_response(false).body.len(), 3);
        let mut sum = 0;
        backend::checksum(&mut sum, 0, b"hello");
        assert_eq!(c.read_response(false).body_text(), format!("5 {sum}"));
        let chunked = c.read_response(false);
        assert_eq!(chunked.body.len(), 70000);
        assert!(chunked.body.iter().enumerate().all(|(i, b)| *b == backend::pattern_byte(i)));
        let head = c.read_response(true);
        assert_eq!(head.header("content-length"), Some("9"));
        let no_content = c.read_response(false);
        assert_eq!(no_content.status, 204);
        // Still usable afterwards: nothing was left unread or double-read.
        assert_eq!(c.get("/", "x").status, 200);
    }

    fn http10_keep_alive_only_on_request(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b, 2);
        let mut c = Conn::open(addr);
        c.send(b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
        let first = c.read_response(false);
        assert_eq!(first.status, 200);
        assert_eq!(first.version, 1, "the version the gateway speaks (RFC 9110 2.5)");
        assert_eq!(first.header("connection"), Some("keep-alive"));
        c.send(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
        let second = c.read_response(false);
        assert_eq!(second.status, 200);
        assert!(c.try_read_response(false).is_none(), "closed after a plain HTTP/1.0 request");
    }

    fn chunked_answer_to_http10_client(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b, 2);
        let mut s = support::connect_send(addr, b"GET /chunked/100000 HTTP/1.0\r\nHost: x\r\n\r\n");
        let raw = support::read_to_close(&mut s, Duration::from_secs(10));
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
        let body = &raw[split + 4..];
        assert_eq!(body.len(), 100000);
        assert!(body.iter().enumerate().all(|(i, b)| *b == backend::pattern_byte(i)));
    }

    fn expect_continue(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b, 2);
        let mut c = Conn::open(addr);
        c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
        let interim = c.read_response(false);
        assert_eq!(interim.status, 100);
        c.send(b"abcd");
        let resp = c.read_response(false);
        assert_eq!(resp.status, 200);
        assert!(resp.body_text().starts_with("4 "));
        assert_eq!(b.last().header("expect"), None);
    }

    fn gigabyte_bodies_stream_with_flat_memory(driver) {
        const GIB: usize = 1 << 30;
        let b = Backend::start("app");
        let (gw, addr) = setup(driver, &b, 1);
        let rss_before = rss_kib(gw.child.id());
        // Upload: chunked, 1 GiB, checksum verified by the backend.
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        let block: Vec<u8> = (0..1 << 20).map(backend::pattern_byte).collect();
        let mut sum = 0u64;
        let mut sent = 0;
        let mut peak = 0;
        while sent < GIB {
            let chunk = &block[..];
            s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).unwrap();
            s.write_all(chunk).unwrap();
            s.write_all(b"\r\n").unwrap();
            backend::checksum(&mut sum, sent, chunk);
            sent += chunk.len();
            if sent % (128 << 20) == 0 {
                peak = peak.max(rss_kib(gw.child.id()));
            }
        }
        s.write_all(b"0\r\n\r\n").unwrap();
        let mut c = Conn { reader: std::io::BufReader::new(s) };
        let resp = c.read_response(false);
        assert_eq!(resp.body_text(), format!("{GIB} {sum}"));
        // Download: 1 GiB chunked from the backend.
        c.send(b"GET /chunked/1073741824 HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut line = String::new();
        use std::io::BufRead;
        while { line.clear(); c.reader.read_line(&mut line).unwrap(); line != "\r\n" } {}
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let mut ok = true;
        loop {
            line.clear();
            c.reader.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim_end(), 16).unwrap();
            if n == 0 {
                break;
            }
            let mut left = n;
            while left > 0 {
                let k = left.min(buf.len());
                c.reader.read_exact(&mut buf[..k]).unwrap();
                ok &= buf[..k].iter().enumerate().all(|(i, b)| *b == backend::pattern_byte(got + i));
                got += k;
                left -= k;
            }
            c.reader.read_line(&mut line).unwrap();
            if got % (128 << 20) < n {
                peak = peak.max(rss_kib(gw.child.id()));
            }
        }
        assert_eq!(got, GIB);
        assert!(ok, "downloaded bytes differ from the backend's");
        let growth_mib = peak.saturating_sub(rss_before) / 1024;
        assert!(growth_mib < 64, "RSS grew by {growth_mib} MiB");
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

both_drivers! {
    fn bookinfo_routing_of_the_seeds(driver) {
    let prod = Backend::start("prod");
    let qa = Backend::start("qa");
    let qa_special = Backend::start("qa-7777");
    let port = free_port();
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/bookinfo/bookinfo.yaml"))
        .unwrap()
        .replace("9080 # gateway port", &format!("{port} # gateway port"))
        .replace("19080 # reviews.prod endpoint", &format!("{} # reviews.prod endpoint", prod.port()))
        .replace("29080 # reviews.qa endpoint", &format!("{} # reviews.qa endpoint", qa.port()))
        .replace(
            "27777 # reviews.qa special endpoint",
            &format!("{} # reviews.qa special endpoint", qa_special.port()),
        );
    let gw = gateway!(driver).file("bookinfo.yaml", &yaml).start();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Conn::open(addr);
    c.send(b"GET /anything HTTP/1.1\r\nHost: uk.bookinfo.com\r\nCookie: user=dev-123\r\n\r\n");
    assert_eq!(c.read_response(false).header("x-backend"), Some("qa-7777"));
    let mut counts = std::collections::HashMap::new();
    for _ in 0..1000 {
        let r = c.get("/reviews/1", "eu.bookinfo.com");
        *counts.entry(r.header("x-backend").unwrap().to_string()).or_insert(0) += 1;
    }
    let prod_share = counts.get("prod").copied().unwrap_or(0);
    assert!((740..=860).contains(&prod_share), "80/20 split within tolerance: {counts:?}");
    assert_eq!(counts.get("prod").unwrap() + counts.get("qa").unwrap(), 1000);
    assert_eq!(client::get(addr, "uk.bookinfo.com", "/other").status, 404);
    drop(gw);
}
}
