//! nghttp2's `h2load` drives the real binary on both drivers: many streams at once over a few
//! connections, h2c with prior knowledge on an HTTP port and `h2` by ALPN on an HTTPS port, to
//! an HTTP/1.1 backend. Every response must be 2xx and the backend must have seen every
//! request. `h2load` comes with Debian's `nghttp2-client` (`.ci/run` installs it); without it
//! locally the tests say so and pass.

use std::net::SocketAddr;
use std::process::Command;

use strait_test_support::{self as support, both_drivers, gateway};

use support::backend::Backend;
use support::config::{docs, http_gateway, service_entry};
use support::free_port;
use support::tls::{route_all, server, simple_tls, Ca};

/// Requests in all, over `CLIENTS` connections of up to `STREAMS` concurrent streams each.
const REQUESTS: usize = 2000;
const CLIENTS: usize = 4;
const STREAMS: usize = 32;

/// False, after saying why on stderr, when `h2load` is not installed here.
fn have_h2load() -> bool {
    let found = Command::new("h2load").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: h2load is not installed (apt-get install nghttp2-client; .ci/run installs it)");
    }
    found
}

/// Runs h2load against `url`; its report (stdout), having checked that it exited 0.
fn h2load(url: &str) -> String {
    let out = Command::new("timeout")
        .args(["60", "h2load", "-n", &REQUESTS.to_string(), "-c", &CLIENTS.to_string(), "-m", &STREAMS.to_string()])
        .arg(url)
        .output()
        .expect("h2load runs");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "h2load {}: {report}{}", out.status, String::from_utf8_lossy(&out.stderr));
    report
}

/// Checks h2load's report: the protocol it spoke, every request done and answered 2xx.
fn assert_all_2xx(report: &str) {
    assert!(report.contains("Application protocol: h2"), "{report}");
    let n = REQUESTS;
    let requests = format!("requests: {n} total, {n} started, {n} done, {n} succeeded, 0 failed, 0 errored, 0 timeout");
    assert!(report.contains(&requests), "{report}");
    assert!(report.contains(&format!("status codes: {n} 2xx, 0 3xx, 0 4xx, 0 5xx")), "{report}");
}

both_drivers! {
    fn h2c_streams_all_reach_the_backend(driver) {
        if !have_h2load() {
            return;
        }
        let app = Backend::start("app");
        let port = free_port();
        let yaml = docs(&[
            http_gateway("gw", port, &["*"]),
            route_all("app", &["gw"], &["*"], "app.local"),
            service_entry("app", "app.local", 80, &[app.port()]),
        ]);
        let _gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert_all_2xx(&h2load(&format!("http://{addr}/h2c")));
        assert_eq!(app.count(), REQUESTS, "the backend saw every request");
        assert!(app.requests().iter().all(|r| r.target == "/h2c"));
    }

    fn h2_over_tls_streams_all_reach_the_backend(driver) {
        if !have_h2load() {
            return;
        }
        let app = Backend::start("app");
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("h2load test ca");
        let (crt, key) = ca.server(&["localhost"]).write(dir.path(), "server");
        let port = free_port();
        let yaml = docs(&[
            support::tls::gateway("gw", &[server(port, "https", "HTTPS", &["*"], &simple_tls(&crt, &key))]),
            route_all("app", &["gw"], &["*"], "app.local"),
            service_entry("app", "app.local", 80, &[app.port()]),
        ]);
        let _gw = gateway!(driver).file("gw.yaml", &yaml).start();
        // h2load verifies no certificate; it offers h2 by ALPN and reports what was chosen.
        assert_all_2xx(&h2load(&format!("https://localhost:{port}/tls")));
        assert_eq!(app.count(), REQUESTS, "the backend saw every request");
        assert!(app.requests().iter().all(|r| r.target == "/tls" && r.header("x-forwarded-proto") == Some("https")));
    }
}
