//! The admin's `/server_info` and `/logging`, end to end on both drivers.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use support::client;
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
        service_entry("dead", "dead.local", 80, &[free_port()]),
    ]);
    // An explicit level, so that a RUST_LOG in the test's environment changes nothing.
    let gw = Gateway::builder(driver).workers(workers).arg("--log-level").arg("info").file("gw.yaml", &yaml).start();
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
    let resp = client::request(
        gw.admin,
        &format!("POST {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    (resp.status, resp.body_text())
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
}
