//! DestinationRule `outlierDetection` end to end, with real backends that fail and two
//! workers: every request goes on a fresh connection, so the failures that add up to an
//! ejection arrive on either core, and the ejection must hold on both. Covers readmission
//! after `baseEjectionTime` and its growth, panic mode, gateway and local-origin errors, the
//! state on `/clusters` (in force by the time the failing head reaches the client), and a
//! reload that keeps it.

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::backend::{read_head, Backend, Mode};
use support::client;
use support::config::app_behind_rule;
use support::{connect_send, free_port, metric, read_to_close, wait_until, Driver, Gateway};

/// No retries: each failure reaches the client, and the tests count them exactly.
const NO_RETRY: &str = "  - retries:\n      attempts: 0\n    route:\n    - destination:\n        host: app.local\n";

/// `app.local` with endpoints on `ports`, under round robin and `outlier` (YAML under
/// `outlierDetection:`, indented 6).
fn start(driver: Driver, ports: &[u16], outlier: &str) -> (Gateway, SocketAddr) {
    let port = free_port();
    let policy = format!("    loadBalancer:\n      simple: ROUND_ROBIN\n    outlierDetection:\n{outlier}");
    let gw = gateway!(driver).file("gw.yaml", &app_behind_rule(port, ports, NO_RETRY, &policy)).start();
    (gw, format!("127.0.0.1:{port}").parse().unwrap())
}

fn status(addr: SocketAddr) -> u16 {
    client::get(addr, "app.test", "/").status
}

/// `/clusters`' `health_flags` for the endpoint at `port`.
fn health(gw: &Gateway, port: u16) -> String {
    let page = gw.admin_get("/clusters").1;
    let prefix = format!("outbound|80||app.local::127.0.0.1:{port}::health_flags::");
    page.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{page}")).to_string()
}

/// Sends requests until `bad` has answered `n` in all, and returns when that was.
fn fail_until(addr: SocketAddr, bad: &Backend, n: usize) -> Instant {
    for _ in 0..200 {
        if bad.count() >= n {
            assert_eq!(bad.count(), n);
            return Instant::now();
        }
        status(addr);
    }
    panic!("{} answered {} requests, never {n}", bad.name, bad.count());
}

/// Requests answered by the healthy backend for `how_long`, the ejected one getting none.
fn only_good_for(addr: SocketAddr, how_long: Duration, bad: &Backend) {
    let (start, before) = (Instant::now(), bad.count());
    while start.elapsed() < how_long {
        assert_eq!(status(addr), 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(bad.count(), before, "an ejected endpoint got requests");
}

both_drivers! {
    fn consecutive_5xx_eject_until_base_ejection_time_which_grows(driver) {
        let (good, bad) = (Backend::start("good"), Backend::with_mode("bad", Mode::Status(500)));
        let outlier = "      consecutive5xxErrors: 3\n      interval: 1s\n      baseEjectionTime: 2s\n      maxEjectionPercent: 100\n";
        let (gw, addr) = start(driver, &[good.port(), bad.port()], outlier);
        let ejected = fail_until(addr, &bad, 3);
        assert_eq!(health(&gw, bad.port()), "/failed_outlier_check");
        assert_eq!(health(&gw, good.port()), "healthy");
        only_good_for(addr, Duration::from_secs(1), &bad);
        // Readmitted after baseEjectionTime: the bad backend is tried again...
        wait_until(Duration::from_secs(6), || {
            status(addr);
            bad.count() > 3
        })
        .expect("readmitted");
        assert!(ejected.elapsed() >= Duration::from_millis(1500), "readmitted after {:?}", ejected.elapsed());
        assert_eq!(health(&gw, bad.port()), "healthy");
        // ...and ejected again at its third failure, now for twice as long.
        let again = fail_until(addr, &bad, 6);
        only_good_for(addr, Duration::from_secs(3).saturating_sub(again.elapsed()), &bad);
        wait_until(Duration::from_secs(6), || {
            status(addr);
            bad.count() > 6
        })
        .expect("readmitted again");
        assert!(again.elapsed() >= Duration::from_millis(3500), "second ejection ended after {:?}", again.elapsed());
    }

    fn panic_mode_uses_every_endpoint_when_too_few_are_healthy(driver) {
        let good = Backend::start("good");
        let bad = [Backend::with_mode("bad1", Mode::Status(500)), Backend::with_mode("bad2", Mode::Status(500))];
        let outlier = "      consecutive5xxErrors: 2\n      baseEjectionTime: 60s\n      maxEjectionPercent: 100\n      minHealthPercent: 50\n";
        let (gw, addr) = start(driver, &[good.port(), bad[0].port(), bad[1].port()], outlier);
        // With one of three ejected, two thirds are healthy: the ejected one gets nothing.
        wait_until(Duration::from_secs(10), || {
            status(addr);
            bad.iter().any(|b| health(&gw, b.port()) != "healthy")
        })
        .expect("one bad backend ejected");
        let (ejected, other) = if health(&gw, bad[0].port()) == "healthy" { (&bad[1], &bad[0]) } else { (&bad[0], &bad[1]) };
        let before = ejected.count();
        wait_until(Duration::from_secs(10), || {
            status(addr);
            health(&gw, other.port()) != "healthy"
        })
        .expect("the second bad backend ejected");
        assert_eq!(ejected.count(), before);
        // One of three healthy is under minHealthPercent: panic, all three are used again.
        let counts: Vec<usize> = bad.iter().map(Backend::count).collect();
        for _ in 0..30 {
            status(addr);
        }
        for (b, before) in bad.iter().zip(counts) {
            assert!(b.count() > before, "{} unused in panic mode", b.name);
            assert_eq!(health(&gw, b.port()), "/failed_outlier_check");
        }
    }

    fn every_endpoint_ejected_answers_no_healthy_upstream_and_a_reload_keeps_it(driver) {
        // The default maxEjectionPercent (10%) still lets one endpoint go, as in Envoy.
        let bad = Backend::with_mode("bad", Mode::Status(503));
        let (gw, addr) = start(driver, &[bad.port()], "      consecutive5xxErrors: 2\n      baseEjectionTime: 60s\n");
        fail_until(addr, &bad, 2);
        let resp = client::get(addr, "app.test", "/");
        assert_eq!((resp.status, resp.body_text().as_str()), (503, "no healthy upstream"));
        assert_eq!(bad.count(), 2);
        let stats = gw.admin_get("/stats/prometheus").1;
        assert_eq!(metric(&stats, "envoy_cluster_outlier_detection_ejections_active"), Some(1.0), "{stats}");
        assert_eq!(metric(&stats, "envoy_cluster_outlier_detection_ejections_enforced_total"), Some(1.0));
        // A reload that keeps the endpoint keeps its ejection.
        let port = addr.port();
        let policy = "    loadBalancer:\n      simple: RANDOM\n    outlierDetection:\n      consecutive5xxErrors: 2\n      baseEjectionTime: 60s\n";
        gw.write_config("gw.yaml", &app_behind_rule(port, &[bad.port()], NO_RETRY, policy));
        gw.signal("HUP");
        gw.wait_generation(2);
        assert_eq!(status(addr), 503);
        assert_eq!(bad.count(), 2);
        assert_eq!(health(&gw, bad.port()), "/failed_outlier_check");
    }

    fn gateway_errors_count_502_503_504_only(driver) {
        let good = Backend::start("good");
        let (e500, e502) = (Backend::with_mode("e500", Mode::Status(500)), Backend::with_mode("e502", Mode::Status(502)));
        let outlier = "      consecutive5xxErrors: 0\n      consecutiveGatewayErrors: 2\n      baseEjectionTime: 60s\n      maxEjectionPercent: 100\n";
        let (gw, addr) = start(driver, &[good.port(), e500.port(), e502.port()], outlier);
        for _ in 0..30 {
            status(addr);
        }
        assert_eq!(e502.count(), 2);
        assert!(e500.count() >= 8, "a 500 is no gateway error: {}", e500.count());
        assert_eq!(health(&gw, e502.port()), "/failed_outlier_check");
        assert_eq!(health(&gw, e500.port()), "healthy");
    }

    fn split_local_origin_failures_eject_an_endpoint_that_refuses_connections(driver) {
        let good = Backend::start("good");
        let dead = support::closed_port();
        let outlier = "      splitExternalLocalOriginErrors: true\n      consecutiveLocalOriginFailures: 2\n      baseEjectionTime: 60s\n      maxEjectionPercent: 100\n";
        let (gw, addr) = start(driver, &[good.port(), dead], outlier);
        let statuses: Vec<u16> = (0..20).map(|_| status(addr)).collect();
        assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), 2, "{statuses:?}");
        assert!(statuses[10..].iter().all(|&s| s == 200), "{statuses:?}");
        assert_eq!(health(&gw, dead), "/failed_outlier_check");
        let page = gw.admin_get("/clusters").1;
        assert!(page.contains(&format!("127.0.0.1:{dead}::cx_connect_fail::2\n")), "{page}");
    }

    fn an_endpoint_is_ejected_before_its_client_has_the_failing_head(driver) {
        // A backend that answers a 500 head and holds its body until told.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (release, released) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            read_head(&mut reader).unwrap();
            let mut stream = stream;
            stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\n").unwrap();
            released.recv().unwrap();
            stream.write_all(b"late").unwrap();
        });
        let (gw, addr) = start(driver, &[port], "      consecutive5xxErrors: 1\n      baseEjectionTime: 60s\n");
        let mut client = connect_send(addr, b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n");
        let head = support::read_raw_head(&mut client).expect("a response head");
        assert!(head.starts_with(b"HTTP/1.1 500"), "{}", String::from_utf8_lossy(&head));
        // Envoy's router tells the detector on the upstream's headers, not at the body's end.
        assert_eq!(health(&gw, port), "/failed_outlier_check");
        release.send(()).unwrap();
        assert!(read_to_close(&mut client, Duration::from_millis(500)).starts_with(b"late"));
    }
}
