//! Test support, one crate for the gateway's unit and integration tests and strait-bench's: start
//! the real `strait` binary (by the path the test names) on 127.0.0.1 with a config written for
//! the test, real HTTP, TCP and TLS backends on 127.0.0.1:0, a DNS server, raw-byte and TLS
//! clients, and throwaway certificates.

pub mod backend;
pub mod client;
pub mod config;
pub mod dns;
pub mod h2;
pub mod kube;
pub mod redis;
pub mod tcp;
pub mod tls;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The I/O driver a test runs the gateway on: every integration test runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Uring,
    Legacy,
}

impl Driver {
    fn env(self) -> &'static str {
        match self {
            Driver::Uring => "uring",
            Driver::Legacy => "legacy",
        }
    }
}

/// Declares `#[test] fn NAME_uring()` and `#[test] fn NAME_legacy()` running `body(driver)`.
#[macro_export]
macro_rules! both_drivers {
    ($(fn $name:ident($driver:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                fn run($driver: $crate::Driver) $body
                #[test]
                fn uring() { run($crate::Driver::Uring) }
                #[test]
                fn legacy() { run($crate::Driver::Legacy) }
            }
        )*
    };
}

/// `Gateway::builder` for the `strait` binary cargo built for the calling test: a macro, so that
/// `env!` reads the test's build, which names the binary, not this crate's.
#[macro_export]
macro_rules! gateway {
    ($driver:expr) => {
        $crate::Gateway::builder(env!("CARGO_BIN_EXE_strait"), $driver)
    };
}

/// A port that was free a moment ago (bound, then released), and that this process has not
/// handed out before: a gateway whose listener and admin port came out the same cannot start.
/// Taken from below the kernel's ephemeral range: a port from inside it (what binding port 0
/// gives) can meanwhile become the local port of an outgoing connection of a test running
/// beside, and the gateway could then not bind it. Where the range leaves no room below, one
/// the kernel picks.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(0);
    let mut given = GIVEN.lock().unwrap();
    if ephemeral_low >= 4096 {
        // The upper half of what lies below the range, from a place of this process's own so that
        // test processes side by side seldom probe the same ports.
        let (low, span) = (ephemeral_low / 2, ephemeral_low / 2);
        let start = std::process::id() as u16 % span;
        for i in 0..span {
            let port = low + (start + i) % span;
            if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.insert(port);
                return port;
            }
        }
    }
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if given.insert(port) {
            return port;
        }
    }
}

/// A port whose connects are refused for as long as the test process lives: bound, never
/// listened on, and held, so that no backend of a test running beside this one can take it
/// (a port from [`free_port`] can be, which turns "connection refused" into that backend's
/// answer).
pub fn closed_port() -> u16 {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    // Held until the process exits: the port must stay closed for every request of the test.
    std::mem::forget(socket);
    port
}

/// Reads a message head byte by byte, up to and with its blank line, leaving what follows
/// unread; `None` when the stream ends (or fails) first.
pub fn read_raw_head(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// Waits up to 10 s for something to accept on `addr`.
pub fn wait_listening(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < until, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running gateway; killed when dropped.
pub struct Gateway {
    pub child: Child,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    /// What the gateway printed on stderr, captured to a file for failure messages.
    pub log: PathBuf,
}

pub struct GatewayBuilder {
    bin: PathBuf,
    files: Vec<(String, String)>,
    workers: usize,
    driver: Driver,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Gateway {
    /// A gateway run from the binary at `bin` (see [`gateway!`]).
    pub fn builder(bin: impl Into<PathBuf>, driver: Driver) -> GatewayBuilder {
        GatewayBuilder { bin: bin.into(), files: Vec::new(), workers: 2, driver, args: Vec::new(), envs: Vec::new() }
    }

    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Rewrites one config file (for reload tests).
    pub fn write_config(&self, name: &str, yaml: &str) {
        std::fs::write(self.dir.path().join(name), yaml).unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the gateway printed on stdout (the access log).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// GET on the admin port; (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        self.try_admin_get(path).expect("the admin port answers")
    }

    /// GET on the admin port; `None` when it refuses the connection or closes it unanswered.
    pub fn try_admin_get(&self, path: &str) -> Option<(u16, String)> {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        client::try_request(self.admin, &raw).map(|resp| (resp.status, resp.body_text()))
    }

    /// Waits until `/stats/prometheus` shows `strait_config_generation` >= `generation`.
    pub fn wait_generation(&self, generation: u64) {
        wait_until(Duration::from_secs(10), || {
            let (_, body) = self.admin_get("/stats/prometheus");
            metric(&body, "strait_config_generation").is_some_and(|g| g >= generation as f64)
        })
        .unwrap_or_else(|| panic!("generation {generation} never reached; logs:\n{}", self.logs()));
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GatewayBuilder {
    /// Starts the gateway on a fresh port for `app.test` with the `http:` routes given, plus
    /// `extra` documents (ServiceEntries for the hosts the routes name); the port's address.
    pub fn start_app(self, http: &str, extra: Vec<String>) -> (Gateway, SocketAddr) {
        let port = free_port();
        let mut parts = vec![
            config::http_gateway("gw", port, &["app.test"]),
            config::virtual_service("app", "gw", &["app.test"], http),
        ];
        parts.extend(extra);
        (self.file("gw.yaml", &config::docs(&parts)).start(), SocketAddr::from(([127, 0, 0, 1], port)))
    }

    pub fn file(mut self, name: &str, yaml: &str) -> Self {
        self.files.push((name.to_string(), yaml.to_string()));
        self
    }

    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Sets an environment variable for the gateway (e.g. `SSL_CERT_FILE`, the system roots).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts the binary and waits for `/ready`.
    pub fn start(self) -> Gateway {
        let mut gw = self.spawn();
        let ready = wait_until(Duration::from_secs(15), || {
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("strait exited early ({status}):\n{}", gw.logs());
            }
            // A probe refused or left unanswered means not ready yet, never a failed test (one
            // that connected once failed the next connect in CI).
            gw.try_admin_get("/ready").is_some_and(|(status, _)| status == 200)
        });
        assert!(ready.is_some(), "strait never became ready:\n{}", gw.logs());
        gw
    }

    /// Starts the binary expecting it to refuse to serve; (its exit status, its stderr).
    pub fn start_refused(self) -> (ExitStatus, String) {
        let mut gw = self.spawn();
        let status = gw.wait_exit(Duration::from_secs(15));
        let logs = gw.logs();
        (status.unwrap_or_else(|| panic!("strait kept running:\n{logs}")), logs)
    }

    fn spawn(self) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        for (name, yaml) in &self.files {
            std::fs::write(dir.path().join(name), yaml).unwrap();
        }
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.path().join("gateway.log");
        let child = Command::new(&self.bin)
            .arg("run")
            .arg("--config")
            .arg(dir.path())
            .args(["--workers", &self.workers.to_string(), "--admin", &admin.to_string()])
            .args(&self.args)
            .env("STRAIT_DRIVER", self.driver.env())
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start strait");
        Gateway { child, admin, dir, log }
    }
}

/// The values of every field `name` (case-insensitive) in a parsed header list, in order.
pub fn header_all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The value of an unlabelled (or first labelled) sample of `name` in Prometheus text.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ') | Some(b'{')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The sum of every sample of `name` (all its label sets) in Prometheus text.
pub fn metric_sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ') | Some(b'{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Reads everything until EOF (or the timeout), for tests that expect a close.
pub fn read_to_close(stream: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// Sends raw bytes on a fresh connection.
pub fn connect_send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(bytes).unwrap();
    s
}
