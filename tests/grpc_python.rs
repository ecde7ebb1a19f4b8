//! gRPC end to end with real clients: Python's `grpcio` (tests/grpc_py/, generic handlers on
//! raw bytes, no generated code) calls through the real binary's h2c listener to a grpcio
//! backend behind a ServiceEntry port of protocol GRPC (an HTTP/2 upstream): unary, server and
//! client streaming, bidi streaming of a request sent whole, deadlines, cancellation, 4 MiB
//! messages and error statuses with trailing metadata, and a bidi call whose client waits for
//! each answer before it sends on (under the default retry policy, over h2c and TLS, and to a
//! backend over TLS). Needs
//! `python3` with `grpcio` (`.ci/run` installs it).

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::config::{docs, service_entry};
use support::tls::{route_all, server as tls_server, simple_tls, Ca};
use support::{wait_until, Driver, Gateway};

/// The Python scripts' folder.
fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_py")
}

/// Fails, saying how to get it, when `grpcio` is missing: never a silent skip.
fn require_grpcio() {
    let found = Command::new("python3").args(["-c", "import grpc"]).status().is_ok_and(|s| s.success());
    assert!(found, "python3 with grpcio is needed: `python3 -m pip install grpcio==1.68.1` (.ci/run installs it)");
}

/// The grpcio backend (server.py), on a port of its own; the lines it prints after its port
/// (events such as `cancelled`) are kept. It stops when its stdin closes, or is killed.
struct PyServer {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    events: Arc<Mutex<Vec<String>>>,
}

impl PyServer {
    fn start() -> PyServer {
        Self::start_with(&[])
    }

    /// With server.py's arguments (a certificate and key file: over TLS).
    fn start_with(args: &[&std::path::Path]) -> PyServer {
        require_grpcio();
        let mut child = Command::new("python3")
            .arg(scripts().join("server.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("server.py printed nothing").unwrap();
        let port = first.strip_prefix("port ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{first}"));
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| seen.lock().unwrap().push(l)));
        PyServer { child, _stdin: stdin, port, events }
    }

    fn saw(&self, event: &str) -> bool {
        self.events.lock().unwrap().iter().any(|e| e == event)
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway for `app.test` routing everything to `app.local`, whose port of protocol GRPC is
/// `server`.
fn start(driver: Driver, server: &PyServer) -> (Gateway, SocketAddr) {
    let entry = service_entry("app", "app.local", 80, &[server.port]).replace("protocol: HTTP", "protocol: GRPC");
    gateway!(driver).start_app("  - route:\n    - destination:\n        host: app.local\n", vec![entry])
}

/// Runs client.py's `case` against `addr`: what it printed (its own deadlines bound it).
fn call(addr: SocketAddr, case: &str) -> String {
    call_with(addr, case, &[])
}

/// As [`call`], with client.py's further arguments (a CA file: over TLS).
fn call_with(addr: SocketAddr, case: &str, more: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(scripts().join("client.py"))
        .args([&addr.to_string(), case])
        .args(more)
        .output()
        .unwrap();
    assert!(out.status.success(), "client.py {case}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim_end().to_string()
}

/// A fresh backend and gateway, then `case`'s output.
fn through_gateway(driver: Driver, case: &str) -> String {
    let server = PyServer::start();
    let (_gw, addr) = start(driver, &server);
    call(addr, case)
}

both_drivers! {
    fn unary_call_is_echoed(driver) {
        assert_eq!(through_gateway(driver, "unary"), "hello");
    }

    fn server_streaming_delivers_every_message(driver) {
        assert_eq!(through_gateway(driver, "server_stream"), "msg-0 msg-1 msg-2 msg-3 msg-4");
    }

    fn client_streaming_delivers_every_message(driver) {
        assert_eq!(through_gateway(driver, "client_stream"), "a,b,c");
    }

    fn a_deadline_shorter_than_the_server_is_deadline_exceeded(driver) {
        let server = PyServer::start();
        let (_gw, addr) = start(driver, &server);
        // The client's timer and the gateway's (set from the `grpc-timeout` the client sent)
        // end together: whichever fires first decides, as through Envoy, whose timeout answer
        // (504, `upstream request timeout`) is UNAVAILABLE to a gRPC client.
        let status = call(addr, "deadline");
        assert!(["DEADLINE_EXCEEDED", "UNAVAILABLE|upstream request timeout"].contains(&status.as_str()), "{status}");
        // The deadline went up as `grpc-timeout`, so the server stops waiting too.
        let carried = wait_until(Duration::from_secs(5), || server.saw("deadline carried"));
        assert!(carried.is_some(), "{:?}", server.events.lock().unwrap());
    }

    fn a_client_cancel_mid_stream_reaches_the_server(driver) {
        let server = PyServer::start();
        let (_gw, addr) = start(driver, &server);
        assert_eq!(call(addr, "cancel"), "tick-0 tick-1 tick-2 CANCELLED");
        assert!(wait_until(Duration::from_secs(5), || server.saw("cancelled")).is_some(), "the server saw no cancel");
    }

    fn four_mib_messages_go_both_ways(driver) {
        assert_eq!(through_gateway(driver, "big"), "4194304 True");
    }

    fn an_error_status_keeps_its_message_and_trailing_metadata(driver) {
        assert_eq!(through_gateway(driver, "error"), "NOT_FOUND|thing not found|no such thing");
    }

    fn bidi_streaming_carries_a_whole_request_and_each_answer(driver) {
        assert_eq!(through_gateway(driver, "bidi_whole"), "re:one re:two re:three");
    }

    // The route names no retries: Istio's default policy retries `unavailable`, and the body
    // it might replay must not be waited for.
    fn a_bidi_call_that_waits_for_each_answer_gets_it(driver) {
        assert_eq!(through_gateway(driver, "bidi"), "re:one re:two re:three");
    }

    fn a_bidi_call_that_waits_for_each_answer_gets_it_over_tls(driver) {
        let server = PyServer::start();
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("grpc test ca");
        let (crt, key) = ca.server(&["app.test"]).write(dir.path(), "server");
        let ca_file = ca.write(dir.path(), "ca");
        let port = support::free_port();
        let entry = service_entry("app", "app.local", 80, &[server.port]).replace("protocol: HTTP", "protocol: GRPC");
        let yaml = docs(&[
            support::tls::gateway("gw", &[tls_server(port, "https", "HTTPS", &["app.test"], &simple_tls(&crt, &key))]),
            route_all("app", &["gw"], &["app.test"], "app.local"),
            entry,
        ]);
        let _gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(call_with(addr, "bidi", &[ca_file.to_str().unwrap()]), "re:one re:two re:three");
    }

    // The upstream over TLS (DestinationRule SIMPLE): its session carries each message up
    // while the answers come down.
    fn a_bidi_call_that_waits_for_each_answer_gets_it_from_a_backend_over_tls(driver) {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("grpc test ca");
        let (crt, key) = ca.server(&["app.local"]).write(dir.path(), "backend");
        let ca_file = ca.write(dir.path(), "ca");
        let server = PyServer::start_with(&[&crt, &key]);
        let entry = service_entry("app", "app.local", 80, &[server.port]).replace("protocol: HTTP", "protocol: GRPC");
        let rule = support::tls::tls_destination_rule(
            "app",
            "app.local",
            &format!("{{mode: SIMPLE, caCertificates: \"{}\", sni: app.local}}", ca_file.display()),
        );
        let (_gw, addr) =
            gateway!(driver).start_app("  - route:\n    - destination:\n        host: app.local\n", vec![entry, rule]);
        assert_eq!(call(addr, "bidi"), "re:one re:two re:three");
    }
}
