//! The admin port end to end on both drivers: `/server_info`, `/logging`, its refusal of
//! cross-site requests, and its bounds on connections.

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::client::{self, Conn};
use support::config::{docs, http_gateway, service_entry, virtual_service};
use support::{free_port, wait_until, Driver, Gateway};

/// A gateway on a fresh port routing `app.test` to an endpoint nobody listens on: every request
/// fails upstream, which the proxy notes at debug level.
fn setup(driver: Driver, workers: usize) -> (Gateway, SocketAddr) {
    let port = free_port();
    let route = "  - route:\n    - destination:\n        host: dead.local\n";
    let yaml = docs(&[
        http_gateway("gw", port, &["app.test"]),
        virtual_service("app", "gw", &["app.test"], route),
        service_entry("dead", "dead.local", 80, &[support::closed_port()]),
    ]);
    // An explicit level, so that a RUST_LOG in the test's environment changes nothing.
    let gw = gateway!(driver).workers(workers).arg("--log-level").arg("info").file("gw.yaml", &yaml).start();
    (gw, format!("127.0.0.1:{port}").parse().unwrap())
}

fn server_info(gw: &Gateway) -> Value {
    let (status, body) = gw.admin_get("/server_info");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Seconds of a protobuf Duration string as `/server_info` gives them (`12s`).
fn seconds(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    s.strip_suffix('s').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not a duration: {s}"))
}

fn admin_post(gw: &Gateway, path: &str) -> (u16, String) {
    admin_post_with(gw, path, &format!("Host: {}\r\n", gw.admin))
}

/// `POST path` with `fields` (each ending in CRLF) as the request's only header fields besides
/// its length.
fn admin_post_with(gw: &Gateway, path: &str, fields: &str) -> (u16, String) {
    let resp = client::request(
        gw.admin,
        &format!("POST {path} HTTP/1.1\r\n{fields}Content-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    (resp.status, resp.body_text())
}

/// The gateway's threads, as the kernel lists them.
fn threads(gw: &Gateway) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", gw.child.id())).unwrap().count()
}

/// `/ready`'s status, or `None` when the admin closed the connection unanswered.
fn try_ready(gw: &Gateway) -> Option<u16> {
    let mut conn = Conn::try_open(gw.admin)?;
    let get = format!("GET /ready HTTP/1.1\r\nHost: {}\r\n\r\n", gw.admin);
    conn.reader.get_mut().write_all(get.as_bytes()).ok()?;
    conn.try_read_response(false).map(|r| r.status)
}

/// The proxy's debug line for a failed request (see `answer_error`).
fn debug_lines(gw: &Gateway) -> usize {
    gw.logs().lines().filter(|l| l.contains("DEBUG") && l.contains("answering an error")).count()
}

both_drivers! {
    fn server_info_reports_the_running_gateway(driver) {
        let (gw, _) = setup(driver, 3);
        let info = server_info(&gw);
        assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(info["state"], "LIVE");
        assert_eq!(info["workers"], 3);
        // tests/support sets STRAIT_DRIVER=uring, which runs on io_uring or refuses to start.
        let expected = match driver {
            Driver::Uring => "io_uring",
            Driver::Legacy => "legacy",
        };
        assert_eq!(info["driver"], expected, "{info}");
        let options = &info["command_line_options"];
        assert_eq!(options["concurrency"], 3);
        assert_eq!(options["config_paths"], json!([gw.config_dir().display().to_string()]));
        assert_eq!(options["admin_address"], gw.admin.to_string());

        let first = seconds(&info["uptime_current_epoch"]);
        assert_eq!(info["uptime_all_epochs"], info["uptime_current_epoch"]);
        wait_until(Duration::from_secs(5), || seconds(&server_info(&gw)["uptime_current_epoch"]) > first)
            .expect("the uptime grows");
    }

    fn logging_changes_the_level_while_serving(driver) {
        let (gw, addr) = setup(driver, 2);
        assert_eq!(gw.admin_get("/logging"), (200, "active loggers:\n  all: info\n".to_string()));
        assert_eq!(client::get(addr, "app.test", "/").status, 503);
        assert_eq!(debug_lines(&gw), 0, "no debug line at info:\n{}", gw.logs());

        assert_eq!(admin_post(&gw, "/logging?level=debug"), (200, "active loggers:\n  all: debug\n".to_string()));
        assert_eq!(gw.admin_get("/logging").1, "active loggers:\n  all: debug\n");
        assert_eq!(client::get(addr, "app.test", "/").status, 503);
        wait_until(Duration::from_secs(5), || debug_lines(&gw) > 0)
            .unwrap_or_else(|| panic!("no debug line after POST level=debug:\n{}", gw.logs()));
        assert!(gw.logs().contains("change all log levels: level='debug'"), "{}", gw.logs());

        let (status, body) = admin_post(&gw, "/logging?level=bogus");
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("unknown log level `bogus`"), "{body}");
        assert!(body.contains("levels: trace debug info warning error critical off"), "{body}");
        assert_eq!(admin_post(&gw, "/logging").0, 400, "no level");
        assert_eq!(gw.admin_get("/logging").1, "active loggers:\n  all: debug\n", "a bad POST changes nothing");

        // Envoy's names go both ways: warning in, warning out.
        assert_eq!(admin_post(&gw, "/logging?level=warning").0, 200);
        assert_eq!(gw.admin_get("/logging").1, "active loggers:\n  all: warning\n");
        let before = debug_lines(&gw);
        assert_eq!(client::get(addr, "app.test", "/").status, 503);
        assert_eq!(debug_lines(&gw), before, "debug is off again");
    }

    fn cross_site_requests_change_nothing(driver) {
        let (gw, _) = setup(driver, 2);
        let admin = gw.admin;
        let foreign = [
            format!("Host: {admin}\r\nOrigin: http://evil.example\r\n"),
            format!("Host: {admin}\r\nOrigin: null\r\n"),
            format!("Host: {admin}\r\nOrigin: https://{admin}\r\n"),
            // DNS rebinding: the page's own name, pointed at this host.
            format!("Host: evil.example:{}\r\n", admin.port()),
            format!("Host: evil.example:{}\r\nOrigin: http://evil.example:{}\r\n", admin.port(), admin.port()),
        ];
        for fields in &foreign {
            let (status, body) = admin_post_with(&gw, "/logging?level=debug", fields);
            assert_eq!(status, 403, "{fields}: {body}");
            assert_eq!(admin_post_with(&gw, "/reload", fields).0, 403, "{fields}");
        }
        assert_eq!(gw.admin_get("/logging").1, "active loggers:\n  all: info\n", "the level is unchanged");
        let (_, stats) = gw.admin_get("/stats");
        assert!(stats.contains("strait.reloads_ok: 0\n") && stats.contains("strait.reloads_failed: 0\n"), "{stats}");

        let same_site = [
            format!("Host: {admin}\r\nOrigin: http://{admin}\r\n"),
            format!("Host: localhost:{}\r\nOrigin: http://localhost:{}\r\n", admin.port(), admin.port()),
            // curl, scripts: no Origin.
            format!("Host: {admin}\r\n"),
        ];
        for (fields, level) in same_site.iter().zip(["debug", "warning", "info"]) {
            let (status, body) = admin_post_with(&gw, &format!("/logging?level={level}"), fields);
            assert_eq!(status, 200, "{fields}: {body}");
            assert_eq!(gw.admin_get("/logging").1, format!("active loggers:\n  all: {level}\n"));
        }
        assert_eq!(admin_post(&gw, "/reload").0, 200);
        assert!(gw.admin_get("/stats").1.contains("strait.reloads_ok: 1\n"));
    }

    fn idle_admin_clients_cost_no_threads_and_are_dropped(driver) {
        let (gw, _) = setup(driver, 2);
        let before = threads(&gw);
        // Each used to get a thread of its own for as long as it stayed silent.
        let idle: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(gw.admin).unwrap()).collect();
        let mut most = before;
        let watch = Instant::now();
        while watch.elapsed() < Duration::from_secs(2) {
            most = most.max(threads(&gw));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(most <= before + 4, "{before} threads grew to {most} with 300 idle admin clients");

        // The admin gives silent clients up within seconds, and answers again.
        let mut first = &idle[0];
        first.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        match first.read(&mut [0u8; 64]) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("an idle admin client was kept: {other:?}"),
        }
        wait_until(Duration::from_secs(30), || try_ready(&gw) == Some(200))
            .unwrap_or_else(|| panic!("/ready never answered again:\n{}", gw.logs()));
        drop(idle);
    }

    fn a_trickling_admin_client_is_cut_off(driver) {
        let (gw, _) = setup(driver, 2);
        let mut slow = TcpStream::connect(gw.admin).unwrap();
        slow.write_all(b"GET /ready HTTP/1.1\r\nx-slow: ").unwrap();
        // A byte every 500 ms: each read is quick, the request never ends.
        slow.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(30), "a client sending a byte now and then was kept");
            if slow.write_all(b"1").is_err() {
                break;
            }
            match slow.read(&mut [0u8; 64]) {
                Ok(0) => break,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(try_ready(&gw), Some(200));
    }
}
