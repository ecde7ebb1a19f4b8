//! End-to-end tests of `strait-bench`: the real binary, run as users run it, against its own
//! built-in backend (or a backend the test starts) on 127.0.0.1.

mod h2;
mod http;
mod scenario;
mod serve;
mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use strait_test_support::{free_port, wait_listening};

/// The `strait-bench` binary cargo built for these tests.
pub fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strait-bench"))
}

/// The gateway beside `strait-bench` in cargo's target directory, where `scenario` looks for it
/// too: cargo names only its own package's binaries to a test, and the workspace's `cargo test`
/// builds both.
pub fn strait() -> String {
    let path = Path::new(env!("CARGO_BIN_EXE_strait-bench")).with_file_name("strait");
    assert!(
        path.exists(),
        "no {} (`cargo test` at the root builds it, as `cargo build --bin strait` does)",
        path.display()
    );
    path.display().to_string()
}

/// Runs `strait-bench ARGS --json --quiet` and parses its report.
pub fn run_json(args: &[&str]) -> serde_json::Value {
    let out: Output = bench().args(args).args(["--json", "--quiet"]).output().expect("strait-bench runs");
    assert!(out.status.success(), "strait-bench {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    report(&out)
}

/// Runs `strait-bench ARGS --json --quiet`, which must report, then exit 1 as its target failed;
/// (the report, what it said on stderr).
pub fn run_json_failing(args: &[&str]) -> (serde_json::Value, String) {
    let out: Output = bench().args(args).args(["--json", "--quiet"]).output().expect("strait-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "strait-bench {args:?} should have failed: {stderr}");
    (report(&out), stderr)
}

fn report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// A `strait-bench serve …` process, killed when dropped.
pub struct Served {
    pub addr: SocketAddr,
    child: Child,
}

impl Served {
    /// Starts `strait-bench serve KIND ARGS… --listen 127.0.0.1:PORT` and waits until it accepts.
    pub fn start(args: &[&str]) -> Served {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = bench()
            .arg("serve")
            .args(args)
            .args(["--listen", &addr.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("strait-bench serve starts");
        let served = Served { addr, child };
        wait_listening(addr);
        served
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
