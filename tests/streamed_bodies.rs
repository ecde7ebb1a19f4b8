//! Request bodies that stream up while the response comes down, whatever carries them: an
//! upstream over TLS (DestinationRule `tls`) answering before it read the body; a retried
//! status resends a body that fit the replay copy, and one past it is final; a route with a
//! mirror streams the body too, and the mirror gets it when it fit the copy.

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use support::backend::{Backend, Mode};
use support::client::Conn;
use support::config::{app_behind_rule, docs, http_gateway, service_entry};
use support::tls::{route_all, server as tls_server, simple_tls, tls_destination_rule, Ca, TlsBackend, TlsClient};
use support::Driver;

/// A gateway on its own port routing `up.test` to `backend` over TLS (SIMPLE), and that port;
/// `https`: the port serves TLS too.
fn behind_tls(
    driver: Driver,
    backend: &TlsBackend,
    ca: &Ca,
    dir: &std::path::Path,
    https: bool,
) -> (support::Gateway, SocketAddr) {
    let ca_file = ca.write(dir, "ca");
    let port = support::free_port();
    let server = if https {
        let (crt, key) = ca.server(&["up.test"]).write(dir, "gateway");
        support::tls::gateway("gw", &[tls_server(port, "https", "HTTPS", &["*"], &simple_tls(&crt, &key))])
    } else {
        http_gateway("gw", port, &["*"])
    };
    let config = docs(&[
        server,
        route_all("up", &["gw"], &["up.test"], "up.example.com"),
        service_entry("up", "up.example.com", 443, &[backend.port()]),
        tls_destination_rule(
            "up",
            "up.example.com",
            &format!("{{mode: SIMPLE, caCertificates: \"{}\", sni: up.example.com}}", ca_file.display()),
        ),
    ]);
    let gw = gateway!(driver).file("gw.yaml", &config).start();
    (gw, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A gateway (one worker) for `app.test` over `endpoints` in turn, retrying a 5xx twice.
fn retrying(driver: Driver, endpoints: &[u16]) -> (support::Gateway, SocketAddr) {
    let port = support::free_port();
    let http = "  - retries:\n      attempts: 2\n      retryOn: 5xx\n    route:\n    - destination:\n        host: app.local\n";
    let config = app_behind_rule(port, endpoints, http, "    loadBalancer:\n      simple: ROUND_ROBIN\n");
    let gw = gateway!(driver).file("gw.yaml", &config).workers(1).start();
    (gw, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Sends a chunked POST whose body is `pieces`, each after a pause (a streaming client: the
/// gateway does not wait for the body), and reads the answer: its status and `x-backend`.
fn post_in_pieces(addr: SocketAddr, pieces: &[Vec<u8>]) -> (u16, String) {
    let mut c = Conn::open(addr);
    c.send(b"POST /upload HTTP/1.1\r\nHost: app.test\r\ntransfer-encoding: chunked\r\n\r\n");
    for piece in pieces {
        std::thread::sleep(Duration::from_millis(150));
        c.send(format!("{:x}\r\n", piece.len()).as_bytes());
        c.send(piece);
        c.send(b"\r\n");
    }
    c.send(b"0\r\n\r\n");
    let r = c.try_read_response(false).expect("an answer");
    (r.status, r.header("x-backend").unwrap_or_default().to_string())
}

both_drivers! {
    // Each request's first try goes to `bad` or `good` in turn: the ones that met `bad` first
    // are retried on `good` with the whole body, the copy first.
    fn a_retried_status_sends_a_streamed_body_that_fit_the_copy_again(driver) {
        let bad = Backend::with_mode("bad", Mode::Status(503));
        let good = Backend::start("good");
        let (_gw, addr) = retrying(driver, &[bad.port(), good.port()]);
        let pieces = [b"first-".to_vec(), b"half|second-half".to_vec()];
        for i in 0..3 {
            assert_eq!(post_in_pieces(addr, &pieces), (200, "good".to_string()), "request {i}");
        }
        assert!(bad.count() >= 1, "no request met the failing endpoint");
        assert_eq!(good.count(), 3);
        assert!(good.requests().iter().all(|r| r.body == b"first-half|second-half"), "{:?}", good.requests());
    }

    // 24 KiB streamed: past the 16 KiB copy, the first answer is final (Envoy's
    // `retry_or_shadow_abandoned`).
    fn a_status_for_a_streamed_body_past_the_copy_is_final_and_counted(driver) {
        let bad = Backend::with_mode("bad", Mode::Status(503));
        let (gw, addr) = retrying(driver, &[bad.port()]);
        let pieces = vec![vec![b'x'; 8192]; 3];
        assert_eq!(post_in_pieces(addr, &pieces), (503, "bad".to_string()));
        assert_eq!(bad.count(), 1, "not retried");
        // Counted as the exchange ends, which may be just after the client has the answer.
        let abandoned = || support::metric_sum(&gw.admin_get("/stats/prometheus").1, "envoy_cluster_retry_or_shadow_abandoned");
        assert!(support::wait_until(Duration::from_secs(5), || abandoned() == 1.0).is_some(), "counted {}", abandoned());
    }

    // The body must not go up whole before the answer is read: the client sends a kilobyte of
    // the megabyte it announced and waits, as an upload refused at once leaves it.
    fn an_upstream_over_tls_that_answers_before_the_body_is_relayed_at_once(driver) {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("streamed bodies ca");
        let backend = TlsBackend::start("up", &ca.server(&["up.example.com"]), None);
        let (gw, addr) = behind_tls(driver, &backend, &ca, dir.path(), false);
        let mut c = Conn::open(addr);
        c.reader.get_mut().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = "POST /early/413 HTTP/1.1\r\nHost: up.test\r\nContent-Length: 1048576\r\n\r\n";
        c.send(format!("{head}{}", "x".repeat(1024)).as_bytes());
        let resp = c.try_read_response(false).unwrap_or_else(|| panic!("no early answer; logs:\n{}", gw.logs()));
        assert_eq!((resp.status, resp.header("x-backend")), (413, Some("up")));
    }

    // The same from an HTTP/1.1 client over TLS, whose body goes up through the client's own
    // session while the upstream's is watched for an answer.
    fn a_tls_client_gets_the_early_answer_of_an_upstream_over_tls(driver) {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("streamed bodies ca");
        let backend = TlsBackend::start("up", &ca.server(&["up.example.com"]), None);
        let (gw, addr) = behind_tls(driver, &backend, &ca, dir.path(), true);
        let mut c = TlsClient::new(&ca).open(addr, "up.test").unwrap();
        let head = "POST /early/413 HTTP/1.1\r\nHost: up.test\r\nContent-Length: 1048576\r\n\r\n";
        c.send(format!("{head}{}", "x".repeat(1024)).as_bytes()).unwrap();
        let resp = c.read_response().unwrap_or_else(|e| panic!("no early answer: {e}; logs:\n{}", gw.logs()));
        assert_eq!((resp.status, resp.header("x-backend")), (413, Some("up")));
    }

    // The client sends each chunk once the one before came back: a route with a mirror must not
    // wait for the whole body before the request goes.
    fn a_mirrored_route_streams_a_body_both_ways_and_the_mirror_gets_it_whole(driver) {
        let echo = Backend::with_mode("echo", Mode::Echo);
        let shadow = Backend::start("shadow");
        let http = "  - mirror:\n      host: shadow.local\n    route:\n    - destination:\n        host: app.local\n";
        let entries = vec![
            service_entry("app", "app.local", 80, &[echo.port()]),
            service_entry("shadow", "shadow.local", 80, &[shadow.port()]),
        ];
        let (gw, addr) = gateway!(driver).start_app(http, entries);
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = "POST /echo HTTP/1.1\r\nHost: app.test\r\ntransfer-encoding: chunked\r\n\r\n";
        conn.write_all(head.as_bytes()).unwrap();
        let mut seen = Vec::new();
        let mut read_until = |conn: &mut std::net::TcpStream, want: &[u8]| {
            while !seen.windows(want.len()).any(|w| w == want) {
                let mut buf = [0; 4096];
                let n = conn.read(&mut buf).unwrap_or_else(|e| {
                    panic!("{:?} did not come back: {e}; got {:?}; logs:\n{}", String::from_utf8_lossy(want), String::from_utf8_lossy(&seen), gw.logs())
                });
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&buf[..n]);
            }
        };
        for i in 0..3 {
            let chunk = format!("6\r\nping-{i}\r\n");
            conn.write_all(chunk.as_bytes()).unwrap();
            read_until(&mut conn, chunk.as_bytes());
        }
        conn.write_all(b"0\r\n\r\n").unwrap();
        read_until(&mut conn, b"0\r\n\r\n");
        assert!(support::wait_until(Duration::from_secs(5), || shadow.count() == 1).is_some(), "the mirror got nothing");
        assert_eq!(shadow.last().body, b"ping-0ping-1ping-2");
    }
}
