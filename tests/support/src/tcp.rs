//! TCP proxy test support: Istio YAML for TCP servers and routes, raw TCP backends on
//! 127.0.0.1:0 run by std threads (counting what they see), a blackholed listener, and
//! Prometheus samples by label.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::config::{gateway, head};
use super::{free_port, wait_until, Gateway};

/// A port for a gateway listener, or for nothing to listen on, below the kernel's ephemeral
/// range: `free_port` releases a port from that range, where concurrent tests' backends, admin
/// ports and connections draw theirs too, so another test may take it before the gateway binds
/// it. Ports down here are handed out only by this, each once per test process.
pub fn listen_port() -> u16 {
    const FIRST: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    if ephemeral < FIRST + 1_000 {
        return free_port();
    }
    let span = ephemeral - FIRST;
    // Test processes running side by side start far apart.
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let port = FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free port in {FIRST}..{ephemeral}");
}

/// A Gateway `name` in `default` with one server of `protocol` (TCP, MONGO, ...) on `port`.
pub fn tcp_gateway(name: &str, port: u16, protocol: &str) -> String {
    gateway(name, port, protocol, &["*"])
}

/// A STATIC ServiceEntry `host` with one TCP service port `port` and endpoints at
/// 127.0.0.1:`endpoint_ports` (the endpoints' `ports` map is keyed by the port's name).
pub fn tcp_service_entry(name: &str, host: &str, port: u16, endpoint_ports: &[u16]) -> String {
    let endpoints: String =
        endpoint_ports.iter().map(|p| format!("  - address: 127.0.0.1\n    ports:\n      tcp: {p}\n")).collect();
    format!(
        "{}  hosts:
  - {host}
  ports:
  - number: {port}
    name: tcp
    protocol: TCP
  resolution: STATIC
  endpoints:
{endpoints}",
        head("ServiceEntry", name)
    )
}

/// A VirtualService `name` for `*` on `gateway` with the given `tcp:` list (YAML, each line
/// indented for the `tcp:` key, as `tcp_route` writes it).
pub fn tcp_virtual_service(name: &str, gateway: &str, tcp: &str) -> String {
    format!("{}  hosts:\n  - \"*\"\n  gateways:\n  - {gateway}\n  tcp:\n{tcp}", head("VirtualService", name))
}

/// One `tcp` list entry: the optional `match:` blocks (YAML lines indented for a list under
/// `match:`, e.g. `    - sourceSubnet: 10.0.0.0/8\n`) and weighted destinations on `port`.
pub fn tcp_route(matches: &str, port: u16, destinations: &[(&str, u32)]) -> String {
    let matches = if matches.is_empty() { String::new() } else { format!("    match:\n{matches}") };
    let route: String = destinations
        .iter()
        .map(|(host, weight)| {
            format!(
                "    - destination:
        host: {host}
        port:
          number: {port}
      weight: {weight}
"
            )
        })
        .collect();
    format!("  -\n{matches}    route:\n{route}")
}

/// A DestinationRule for `host` whose `connectionPool.tcp` holds `settings` (flow YAML body,
/// e.g. `idleTimeout: 1s`).
pub fn tcp_destination_rule(name: &str, host: &str, settings: &str) -> String {
    format!(
        "{}  host: {host}\n  trafficPolicy:\n    connectionPool:\n      tcp: {{{settings}}}\n",
        head("DestinationRule", name)
    )
}

/// What a backend saw, over all its connections.
#[derive(Default)]
pub struct Stats {
    pub accepted: AtomicUsize,
    /// Connections whose handler has returned (the backend's side is closed).
    pub closed: AtomicUsize,
    /// Reads that failed with ECONNRESET.
    pub resets: AtomicUsize,
    /// Bytes read from all connections.
    pub received: AtomicU64,
}

/// A raw TCP backend on 127.0.0.1:0: a thread per connection runs the handler.
pub struct TcpBackend {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

impl TcpBackend {
    pub fn start(handler: impl Fn(TcpStream, &Stats) + Send + Sync + 'static) -> TcpBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpBackend { addr: listener.local_addr().unwrap(), stats: Arc::default(), stop: Arc::default() };
        let (stats, stop, handler) = (b.stats.clone(), b.stop.clone(), Arc::new(handler));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                let (stats, handler) = (stats.clone(), handler.clone());
                // Small stacks: the busiest test holds a thousand connections at once.
                std::thread::Builder::new()
                    .stack_size(64 << 10)
                    .spawn(move || {
                        handler(stream, &stats);
                        stats.closed.fetch_add(1, Ordering::Relaxed);
                    })
                    .unwrap();
            }
        });
        b
    }

    /// Echoes every byte back; a half-close is answered with a half-close.
    pub fn echo() -> TcpBackend {
        TcpBackend::start(echo)
    }

    /// Writes `name` on accept, then echoes.
    pub fn named(name: &'static str) -> TcpBackend {
        TcpBackend::start(move |mut s, stats| {
            if s.write_all(name.as_bytes()).is_ok() {
                echo(s, stats);
            }
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn accepted(&self) -> usize {
        self.stats.accepted.load(Ordering::Relaxed)
    }

    pub fn closed(&self) -> usize {
        self.stats.closed.load(Ordering::Relaxed)
    }

    pub fn resets(&self) -> usize {
        self.stats.resets.load(Ordering::Relaxed)
    }

    pub fn received(&self) -> u64 {
        self.stats.received.load(Ordering::Relaxed)
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads once into `buf`, counting bytes and resets; `None` at EOF or on an error.
pub fn read_counted(s: &mut TcpStream, buf: &mut [u8], stats: &Stats) -> Option<usize> {
    match s.read(buf) {
        Ok(0) => None,
        Ok(n) => {
            stats.received.fetch_add(n as u64, Ordering::Relaxed);
            Some(n)
        }
        Err(e) => {
            if e.kind() == ErrorKind::ConnectionReset {
                stats.resets.fetch_add(1, Ordering::Relaxed);
            }
            None
        }
    }
}

/// The echo loop: every byte back until EOF, which is passed on as a half-close.
pub fn echo(mut s: TcpStream, stats: &Stats) {
    let mut buf = vec![0u8; 64 << 10];
    while let Some(n) = read_counted(&mut s, &mut buf, stats) {
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

/// A listener that never accepts, its accept queue filled so that further SYNs go unanswered.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _held: Vec<TcpStream>,
}

impl Blackhole {
    /// `None` when the kernel keeps completing connections (nothing to test against then).
    pub fn start() -> Option<Blackhole> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        // std listens with a backlog of 128: a few more than that fill the queue.
        while held.len() < 1024 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => held.push(s),
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    return Some(Blackhole { addr, _listener: listener, _held: held })
                }
                Err(e) => panic!("filling the blackhole's backlog: {e}"),
            }
        }
        None
    }
}

/// The value of the sample of `family` whose line contains `label` (`""` for an unlabelled one).
pub fn sample(body: &str, family: &str, label: &str) -> Option<f64> {
    sample_with(body, family, &[label])
}

/// The value of the sample of `family` whose line contains every one of `labels`.
pub fn sample_with(body: &str, family: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(family) && matches!(l.as_bytes().get(family.len()), Some(b' ') | Some(b'{')))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits (5 s at most) until the sample of `family` with `label` satisfies `ok`; panics with the
/// value last seen and the gateway's logs.
pub fn wait_sample(gw: &Gateway, family: &str, label: &str, ok: impl Fn(f64) -> bool) {
    let mut seen = None;
    let done = wait_until(Duration::from_secs(5), || {
        seen = sample(&gw.admin_get("/stats/prometheus").1, family, label);
        seen.is_some_and(&ok)
    });
    if done.is_none() {
        panic!("{family} {{{label}}}: last seen {seen:?}; logs:\n{}", gw.logs());
    }
}
