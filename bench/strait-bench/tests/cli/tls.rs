//! `strait-bench tls` against the built-in backend terminating TLS with certificates made here:
//! full and resumed handshakes, HTTPS requests, and a client that must not trust the server.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use strait_test_support::closed_port;
use strait_test_support::tls::Ca;

use crate::{bench, run_json, run_json_failing, Served};

/// A CA, a server certificate for localhost and 127.0.0.1 it signed, and a CA that signed
/// nothing here, as PEM files in a temporary directory.
pub struct Certs {
    _dir: tempfile::TempDir,
    pub ca: String,
    pub other_ca: String,
    cert: String,
    key: String,
}

impl Certs {
    pub fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let path = |p: PathBuf| p.to_str().unwrap().to_string();
        let ca = Ca::new("strait-bench test CA");
        let other = Ca::new("a CA that signed nothing here");
        let (cert, key) = ca.server(&["localhost", "127.0.0.1"]).write(dir.path(), "server");
        Certs {
            ca: path(ca.write(dir.path(), "ca.pem")),
            other_ca: path(other.write(dir.path(), "other-ca.pem")),
            cert: path(cert),
            key: path(key),
            _dir: dir,
        }
    }

    fn serve(&self) -> Served {
        self.serve_as("http")
    }

    /// `serve KIND` (`http` or `h2`) terminating TLS with the server certificate.
    pub fn serve_as(&self, kind: &str) -> Served {
        Served::start(&[kind, "--tls-cert", &self.cert, "--tls-key", &self.key])
    }
}

fn url(served: &Served) -> String {
    format!("https://{}/", served.addr)
}

fn operations(report: &Value) -> u64 {
    report["operations"].as_u64().unwrap()
}

fn assert_clean(report: &Value) {
    assert!(operations(report) > 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_eq!(report["statuses"]["2xx"].as_u64(), Some(operations(report)), "{report}");
}

#[test]
fn full_handshakes_trusting_the_ca() {
    let certs = Certs::new();
    let served = certs.serve();
    let report = run_json(&["tls", &url(&served), "--mode", "full", "--ca", &certs.ca, "-c", "4", "-d", "1s"]);
    assert_eq!(report["mode"], "tls-full");
    assert_clean(&report);
    assert_eq!(report["resumed"].as_u64(), Some(0), "{report}");
}

#[test]
fn resumed_handshakes_resume() {
    let certs = Certs::new();
    let served = certs.serve();
    // The warm-up takes the first handshakes, which have no session to resume, out of the count.
    let args =
        ["tls", &url(&served), "--mode", "resumed", "--ca", &certs.ca, "-c", "4", "-d", "1s", "--warmup", "300ms"];
    let out = bench().args(args).args(["--json", "--quiet"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mode"], "tls-resumed");
    assert_clean(&report);
    assert_eq!(report["resumed"].as_u64(), Some(operations(&report)), "{report}");
}

#[test]
fn https_requests() {
    let certs = Certs::new();
    let served = certs.serve();
    let report = run_json(&["tls", &url(&served), "--mode", "requests", "--ca", &certs.ca, "-c", "4", "-d", "1s"]);
    assert_eq!(report["mode"], "tls-requests");
    assert_clean(&report);
    // The certificate's other name, sent as SNI to the same address.
    let args =
        ["tls", &url(&served), "--mode", "requests", "--ca", &certs.ca, "--sni", "localhost", "-c", "4", "-d", "1s"];
    assert_clean(&run_json(&args));
}

#[test]
fn a_ca_that_did_not_sign_the_server_fails_every_handshake_and_the_run_still_ends() {
    let certs = Certs::new();
    let served = certs.serve();
    for mode in ["full", "requests"] {
        let started = Instant::now();
        let (report, stderr) =
            run_json_failing(&["tls", &url(&served), "--mode", mode, "--ca", &certs.other_ca, "-c", "4", "-d", "1s"]);
        assert!(started.elapsed() < Duration::from_secs(3), "{mode}: took {:?}", started.elapsed());
        assert_eq!(operations(&report), 0, "{report}");
        assert!(report["errors"]["tls"].as_u64().unwrap() > 0, "{report}");
        assert!(stderr.contains("no operation succeeded (tls "), "{stderr}");
    }
    // The same server, with trust switched off.
    let report = run_json(&["tls", &url(&served), "--mode", "full", "-k", "-c", "4", "-d", "1s"]);
    assert_clean(&report);
}

#[test]
fn a_dead_port_fails_to_connect_and_the_run_still_ends() {
    let started = Instant::now();
    let dead = format!("https://127.0.0.1:{}/", closed_port());
    let (report, _) = run_json_failing(&["tls", &dead, "--mode", "full", "-k", "-c", "4", "-d", "1s"]);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(operations(&report), 0, "{report}");
    assert!(report["errors"]["connect"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn trust_must_be_chosen() {
    let out = bench().args(["tls", "https://127.0.0.1:1/", "-d", "1s"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca"));
}
