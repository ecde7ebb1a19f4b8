//! A real `redis-server` for the tests (the distribution's package): started on a free port
//! with nothing saved to disk, asked `INFO commandstats` over RESP, stopped and started again
//! on the same port, killed when dropped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{free_port, wait_until};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A server on a free port, answering once this returns.
    pub fn start() -> RedisServer {
        let mut r = RedisServer { port: free_port(), child: None, dir: tempfile::tempdir().unwrap() };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:PORT`, as `--redis` takes it.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts it (again) on its port, empty.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server already runs");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (the distribution's redis-server package) must be installed");
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(10), || self.command("PING").is_some_and(|r| r == "+PONG"));
        assert!(up.is_some(), "redis-server never answered on {}", self.port);
    }

    /// Stops it; its port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One inline command's reply, as its first line (a bulk string's body follows unread).
    fn command(&self, command: &str) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        Some(line.trim_end().to_string())
    }

    /// `INFO commandstats`: calls by command (lower case).
    pub fn command_calls(&self) -> BTreeMap<String, u64> {
        let mut s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"INFO commandstats\r\n").unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let len: usize = line.trim_end().trim_start_matches('$').parse().unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        // `cmdstat_incrby:calls=3,usec=…`
        String::from_utf8(body)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
                Some((name.to_string(), calls))
            })
            .collect()
    }

    /// The keys matching `pattern` (`KEYS`, a test's few).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("KEYS {pattern}\r\n").as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let n: usize = line.trim_end().trim_start_matches('*').parse().unwrap();
        (0..n)
            .map(|_| {
                let (mut len, mut key) = (String::new(), String::new());
                r.read_line(&mut len).unwrap();
                r.read_line(&mut key).unwrap();
                key.trim_end().to_string()
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server that accepts connections and reads what they send but never answers: what a
/// check meets when Redis hangs.
pub struct SilentServer {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
}

impl SilentServer {
    pub fn start() -> SilentServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::Relaxed);
                std::thread::spawn(move || {
                    let mut conn = conn;
                    let mut buf = [0u8; 4096];
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                });
            }
        });
        SilentServer { port, accepted }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}
