//! The scenario file: what to compare and how. Every field but `name` has a default, unknown
//! fields are refused, and every error names the file and the field.
//!
//! ```yaml
//! name: http-small                  # required; titles the table
//! description: 5-byte answers ...   # optional, printed under the title
//! rounds: 3                         # each round runs every peer once, in a rotated order
//! duration: 5s                      # measured length of each load run
//! warmup: 1s                        # a discarded load run before each measured one (0s: none)
//! peers: [direct, strait, envoy, nginx, haproxy]   # the default; `direct` is the load
//!                                   # against the backend with no proxy, the ratios' baseline
//! cpus:                             # a CPU number or list such as 0, "2,3" or "4-7"
//!   proxy: 0                        # default: the first CPU this process may use
//!   backend: 1                      # default: the second (the first if there is one)
//!   load: 1                         # default: as backend
//! backend:
//!   kind: http                      # http (serve http), h2 (serve h2), sink or echo
//!                                   # (serve sink|echo); default: what load.mode needs
//!   size: 5                         # HTTP answer body: bytes, or "64KiB", "1MiB"
//!   threads: 1
//! load:
//!   mode: http                      # http | tcp-throughput | tcp-echo | tls-full |
//!                                   # tls-resumed | tls-requests | h2 | grpc (h2c with
//!                                   # prior knowledge; grpc: unary calls)
//!   connections: [16, 64, 256]      # one table row per peer and count
//!   streams: [16, 64, 256]          # h2 and grpc: concurrent streams in all, spread evenly
//!                                   # over each connection count (a row per pair)
//!   threads: 1                      # load threads, spread over cpus.load
//!   pipeline: 1                     # http: requests in flight per connection
//!   path: /                         # http and tls: the request path
//!   headers: ["X-Bench: 1"]         # http: extra request headers
//!   rate: 50%                       # http: open loop at this many requests/s, or at this
//!                                   # share of the rate the same peer saturates at in a
//!                                   # closed-loop run just before (which is a row too)
//!   size: 64KiB                     # tcp: bytes per write (throughput) or message (echo)
//!   timeout: 5s                     # an operation slower than this fails
//! proxy:                            # the same for every peer, so they compare like for like
//!   workers: 1                      # Strait --workers, nginx worker_processes, HAProxy
//!                                   # nbthread, Envoy --concurrency
//!   virtual_hosts: 1                # http: routed hosts in each proxy's config (Strait: one
//!                                   # VirtualService each, Envoy: virtual hosts, nginx: server
//!                                   # blocks, HAProxy: map entries); above 1 the load asks
//!                                   # for the last of them by Host
//! strait:
//!   args: ["--driver", "legacy"]    # more `strait run` arguments
//! ```

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::cli::{parse_cpus, Cpus};
use crate::error::BenchError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_rounds")]
    pub rounds: u32,
    #[serde(default = "default_duration", deserialize_with = "duration")]
    pub duration: Duration,
    #[serde(default = "default_warmup", deserialize_with = "duration")]
    pub warmup: Duration,
    #[serde(default = "PeerName::all")]
    pub peers: Vec<PeerName>,
    #[serde(default)]
    pub cpus: CpuPlan,
    #[serde(default)]
    pub backend: Backend,
    #[serde(default)]
    pub load: Load,
    #[serde(default)]
    pub proxy: Proxy,
    #[serde(default)]
    pub strait: Strait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerName {
    Direct,
    Strait,
    Envoy,
    Nginx,
    Haproxy,
}

impl PeerName {
    pub const ALL: [PeerName; 5] =
        [PeerName::Direct, PeerName::Strait, PeerName::Envoy, PeerName::Nginx, PeerName::Haproxy];

    fn all() -> Vec<PeerName> {
        Self::ALL.to_vec()
    }

    pub fn name(self) -> &'static str {
        match self {
            PeerName::Direct => "direct",
            PeerName::Strait => "strait",
            PeerName::Envoy => "envoy",
            PeerName::Nginx => "nginx",
            PeerName::Haproxy => "haproxy",
        }
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PeerName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown peer `{s}`, expected one of {}", Self::ALL.map(PeerName::name).join(", ")))
    }
}

/// Where each part runs; unset parts take the defaults `resolve` gives them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuPlan {
    #[serde(default, deserialize_with = "cpus")]
    pub proxy: Option<Cpus>,
    #[serde(default, deserialize_with = "cpus")]
    pub backend: Option<Cpus>,
    #[serde(default, deserialize_with = "cpus")]
    pub load: Option<Cpus>,
}

/// The CPUs of each part, every one of them a CPU this process may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub proxy: Cpus,
    pub backend: Cpus,
    pub load: Cpus,
}

impl CpuPlan {
    /// The proxy alone on the first usable CPU, backend and load together on the second: the
    /// proxy's core then shows only the proxy's work.
    pub fn resolve(&self, usable: &[usize]) -> Result<Placement, String> {
        let first = *usable.first().ok_or("cpus: this process may use no CPU")?;
        let second = usable.get(1).copied().unwrap_or(first);
        let pick = |field: &str, set: &Option<Cpus>, default: usize| match set {
            None => Ok(Cpus(vec![default])),
            Some(Cpus(list)) => match list.iter().find(|c| !usable.contains(c)) {
                Some(c) => Err(format!("cpus.{field}: CPU {c} is not one this process may use ({usable:?})")),
                None => Ok(Cpus(list.clone())),
            },
        };
        let backend = pick("backend", &self.backend, second)?;
        let load = match &self.load {
            None => backend.clone(),
            set => pick("load", set, second)?,
        };
        Ok(Placement { proxy: pick("proxy", &self.proxy, first)?, backend, load })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Http,
    H2,
    Sink,
    Echo,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Http => "http",
            BackendKind::H2 => "h2",
            BackendKind::Sink => "sink",
            BackendKind::Echo => "echo",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub kind: Option<BackendKind>,
    #[serde(default = "default_body", deserialize_with = "size")]
    pub size: usize,
    #[serde(default = "one")]
    pub threads: usize,
}

impl Default for Backend {
    fn default() -> Self {
        Backend { kind: None, size: default_body(), threads: 1 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Http,
    TcpThroughput,
    TcpEcho,
    TlsFull,
    TlsResumed,
    TlsRequests,
    H2,
    Grpc,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Http => "http",
            Mode::TcpThroughput => "tcp-throughput",
            Mode::TcpEcho => "tcp-echo",
            Mode::TlsFull => "tls-full",
            Mode::TlsResumed => "tls-resumed",
            Mode::TlsRequests => "tls-requests",
            Mode::H2 => "h2",
            Mode::Grpc => "grpc",
        }
    }

    /// The backend this mode's load needs.
    pub fn backend(self) -> BackendKind {
        match self {
            Mode::TcpThroughput => BackendKind::Sink,
            Mode::TcpEcho => BackendKind::Echo,
            Mode::H2 | Mode::Grpc => BackendKind::H2,
            _ => BackendKind::Http,
        }
    }

    pub fn is_tls(self) -> bool {
        matches!(self, Mode::TlsFull | Mode::TlsResumed | Mode::TlsRequests)
    }

    pub fn is_tcp(self) -> bool {
        matches!(self, Mode::TcpThroughput | Mode::TcpEcho)
    }

    /// HTTP/2 to the proxy (and from the proxy where it can: see `peers`).
    pub fn is_h2(self) -> bool {
        matches!(self, Mode::H2 | Mode::Grpc)
    }
}

/// An open loop's rate: requests per second, or a share of the saturated closed-loop rate.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "NumberOrText")]
pub enum Rate {
    PerSecond(f64),
    Percent(f64),
}

impl Rate {
    /// The rate to run at, given what the same peer saturated at (if it was measured).
    pub fn resolve(self, saturated: Option<f64>) -> Option<f64> {
        match self {
            Rate::PerSecond(r) => Some(r),
            Rate::Percent(p) => saturated.filter(|s| *s > 0.0).map(|s| s * p / 100.0),
        }
    }
}

impl TryFrom<NumberOrText> for Rate {
    type Error = String;

    fn try_from(raw: NumberOrText) -> Result<Self, String> {
        let bad = || format!("`{raw}`: expected requests per second (20000) or a share of the saturated rate (50%)");
        let rate = match &raw {
            NumberOrText::Number(n) => Rate::PerSecond(*n),
            NumberOrText::Text(t) => match t.trim().strip_suffix('%') {
                Some(p) => Rate::Percent(p.trim().parse().map_err(|_| bad())?),
                None => Rate::PerSecond(t.trim().parse().map_err(|_| bad())?),
            },
        };
        match rate {
            Rate::PerSecond(r) | Rate::Percent(r) if r.is_finite() && r > 0.0 => Ok(rate),
            _ => Err(bad()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default = "default_connections")]
    pub connections: Vec<usize>,
    #[serde(default)]
    pub streams: Vec<usize>,
    #[serde(default = "one")]
    pub threads: usize,
    pub pipeline: Option<usize>,
    pub path: Option<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    pub rate: Option<Rate>,
    #[serde(default, deserialize_with = "optional_size")]
    pub size: Option<usize>,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            mode: default_mode(),
            connections: default_connections(),
            streams: Vec::new(),
            threads: 1,
            pipeline: None,
            path: None,
            headers: Vec::new(),
            rate: None,
            size: None,
            timeout: default_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    #[serde(default = "one")]
    pub workers: usize,
    #[serde(default = "one")]
    pub virtual_hosts: usize,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy { workers: 1, virtual_hosts: 1 }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strait {
    #[serde(default)]
    pub args: Vec<String>,
}

impl Scenario {
    /// Reads and checks `file`.
    pub fn load(file: &Path) -> Result<Scenario, BenchError> {
        let text =
            std::fs::read_to_string(file).map_err(BenchError::io(format!("reading scenario {}", file.display())))?;
        Self::parse(&text).map_err(|msg| BenchError::Scenario { file: file.to_path_buf(), msg })
    }

    /// Parses and checks a scenario; the error names the field (`load.rate: …`).
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario =
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text)).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner().to_string();
                // serde_yaml starts some messages with its own path, at times only the field's
                // parent (`cpus: ` for cpus.proxy); the path serde_path_to_error tracked is exact.
                let message = match inner.split_once(": ") {
                    Some((theirs, rest)) if path.starts_with(theirs) => rest,
                    _ => &inner,
                };
                if path == "." {
                    message.to_string()
                } else {
                    format!("{path}: {message}")
                }
            })?;
        scenario.check()?;
        Ok(scenario)
    }

    /// The load points, a table row each: connections, and for HTTP/2 the concurrent streams
    /// in all over them (each connection count with each stream count).
    pub fn points(&self) -> Vec<Point> {
        let mut points = Vec::new();
        for &connections in &self.load.connections {
            match self.load.mode.is_h2() {
                // One stream per connection unless the file says otherwise.
                true if self.load.streams.is_empty() => points.push(Point { connections, streams: Some(connections) }),
                true => points.extend(self.load.streams.iter().map(|&s| Point { connections, streams: Some(s) })),
                false => points.push(Point { connections, streams: None }),
            }
        }
        points
    }

    /// The backend `load.mode` needs, unless `backend.kind` names another.
    pub fn backend_kind(&self) -> BackendKind {
        self.backend.kind.unwrap_or(self.load.mode.backend())
    }

    /// What serde cannot say: ranges and fields that only some modes use.
    pub fn check(&self) -> Result<(), String> {
        let mode = self.load.mode;
        let only = |field: &str, set: bool, ok: bool, modes: &str| {
            if set && !ok {
                Err(format!("{field}: only for load.mode {modes}, not {}", mode.name()))
            } else {
                Ok(())
            }
        };
        let positive =
            |field: &str, n: usize| if n == 0 { Err(format!("{field}: must be at least 1")) } else { Ok(()) };
        if self.name.trim().is_empty() {
            return Err("name: must not be empty".into());
        }
        if self.rounds == 0 {
            return Err("rounds: must be at least 1".into());
        }
        if self.duration.is_zero() {
            return Err("duration: must be longer than 0s".into());
        }
        if self.peers.is_empty() {
            return Err("peers: name at least one peer".into());
        }
        let mut seen = HashSet::new();
        if let Some(p) = self.peers.iter().find(|p| !seen.insert(**p)) {
            return Err(format!("peers: `{p}` is named twice"));
        }
        positive("backend.threads", self.backend.threads)?;
        positive("load.threads", self.load.threads)?;
        positive("proxy.workers", self.proxy.workers)?;
        positive("proxy.virtual_hosts", self.proxy.virtual_hosts)?;
        if self.load.connections.is_empty() {
            return Err("load.connections: name at least one connection count".into());
        }
        only("load.streams", !self.load.streams.is_empty(), mode.is_h2(), "h2 and grpc")?;
        for &s in &self.load.streams {
            positive("load.streams", s)?;
            if let Some(c) = self.load.connections.iter().find(|c| s % **c != 0) {
                return Err(format!("load.streams: {s} streams do not spread evenly over {c} connections"));
            }
        }
        if let Some(c) = self.load.connections.iter().find(|c| **c < self.load.threads) {
            return Err(format!("load.connections: {c} is fewer than load.threads ({})", self.load.threads));
        }
        if self.backend_kind() != mode.backend() {
            return Err(format!("backend.kind: load.mode {} needs a {} backend", mode.name(), mode.backend().name()));
        }
        let http = mode == Mode::Http;
        only("load.pipeline", self.load.pipeline.is_some(), http, "http")?;
        positive("load.pipeline", self.load.pipeline.unwrap_or(1))?;
        only("load.headers", !self.load.headers.is_empty(), http, "http")?;
        if let Some(h) = self.load.headers.iter().find(|h| !h.contains(':')) {
            return Err(format!("load.headers: `{h}`: expected `Name: value`"));
        }
        only("load.rate", self.load.rate.is_some(), http || mode.is_h2(), "http, h2 and grpc")?;
        only("load.path", self.load.path.is_some(), http || mode.is_tls() || mode == Mode::H2, "http, h2 and tls-*")?;
        if let Some(p) = self.load.path.as_ref().filter(|p| !p.starts_with('/')) {
            return Err(format!("load.path: `{p}` must start with /"));
        }
        only("load.size", self.load.size.is_some(), mode.is_tcp(), "tcp-throughput and tcp-echo")?;
        positive("load.size", self.load.size.unwrap_or(1))?;
        only("proxy.virtual_hosts", self.proxy.virtual_hosts > 1, http, "http")?;
        Ok(())
    }
}

/// One load point: a table row per peer (and phase).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub connections: usize,
    /// HTTP/2: concurrent streams in all, `connections` of them at least.
    pub streams: Option<usize>,
}

impl Point {
    /// Concurrent streams on each connection.
    pub fn per_connection(self) -> Option<usize> {
        self.streams.map(|s| s / self.connections)
    }
}

fn default_rounds() -> u32 {
    3
}

fn default_duration() -> Duration {
    Duration::from_secs(5)
}

fn default_warmup() -> Duration {
    Duration::from_secs(1)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The bench-peers rig's `hello`: small enough that the proxy's own work dominates.
fn default_body() -> usize {
    5
}

fn default_mode() -> Mode {
    Mode::Http
}

fn default_connections() -> Vec<usize> {
    vec![64]
}

fn one() -> usize {
    1
}

/// A scalar that may be written as a number or as text (`0` or `"2,3"`, `5` or `"1MiB"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumberOrText {
    Number(f64),
    Text(String),
}

impl fmt::Display for NumberOrText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumberOrText::Number(n) => write!(f, "{n}"),
            NumberOrText::Text(t) => f.write_str(t),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("`{text}`: {e}; expected a duration such as 5s or 500ms")))
}

fn cpus<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cpus>, D::Error> {
    let raw = NumberOrText::deserialize(d)?;
    parse_cpus(&raw.to_string()).map(Some).map_err(serde::de::Error::custom)
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    parse_size(&NumberOrText::deserialize(d)?.to_string()).map_err(serde::de::Error::custom)
}

fn optional_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    size(d).map(Some)
}

/// `5`, `64KiB`, `1 MiB`, `1GiB` (binary units: sizes of buffers and bodies).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let bad = || format!("`{s}`: expected a size such as 5, 64KiB or 1MiB");
    let n: usize = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_scenario_parses() {
        let s = Scenario::parse(
            "name: x\ndescription: d\nrounds: 2\nduration: 2s\nwarmup: 0s\npeers: [direct, strait]\n\
             cpus: {proxy: 0, backend: \"1\", load: 1-1}\nbackend: {kind: http, size: 1MiB, threads: 2}\n\
             load: {mode: http, connections: [16, 64], threads: 2, pipeline: 4, path: /x, headers: [\"A: b\"], \
             rate: 50%, timeout: 1s}\nproxy: {workers: 2, virtual_hosts: 10}\nstrait: {args: [--driver, legacy]}\n",
        )
        .unwrap();
        assert_eq!(s.rounds, 2);
        assert_eq!(s.duration, Duration::from_secs(2));
        assert_eq!(s.warmup, Duration::ZERO);
        assert_eq!(s.peers, [PeerName::Direct, PeerName::Strait]);
        assert_eq!(s.cpus.backend, Some(Cpus(vec![1])));
        assert_eq!(s.backend.size, 1 << 20);
        assert_eq!(s.load.connections, [16, 64]);
        assert_eq!(s.load.rate, Some(Rate::Percent(50.0)));
        assert_eq!(s.proxy.virtual_hosts, 10);
        assert_eq!(s.strait.args, ["--driver", "legacy"]);
    }

    #[test]
    fn defaults() {
        let s = Scenario::parse("name: x").unwrap();
        assert_eq!((s.rounds, s.duration, s.warmup), (3, Duration::from_secs(5), Duration::from_secs(1)));
        assert_eq!(s.peers, PeerName::ALL);
        assert_eq!(s.load.mode, Mode::Http);
        assert_eq!(s.backend_kind(), BackendKind::Http);
        assert_eq!(s.backend.size, 5);
        assert_eq!((s.proxy.workers, s.proxy.virtual_hosts), (1, 1));
        let tcp = Scenario::parse("name: x\nload: {mode: tcp-throughput, size: 64KiB}").unwrap();
        assert_eq!(tcp.backend_kind(), BackendKind::Sink);
        assert_eq!(tcp.load.size, Some(65536));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("name: x\nbogus: 1", "bogus: unknown field `bogus`, expected one of `name`"),
            ("name: x\nload: {conections: [1]}", "load.conections: unknown field `conections`"),
            ("rounds: 1", "missing field `name`"),
            ("name: x\nrounds: 0", "rounds: must be at least 1"),
            ("name: x\nduration: fast", "duration: `fast`"),
            ("name: x\npeers: [direct, apache]", "peers[1]: unknown variant `apache`"),
            ("name: x\npeers: [strait, strait]", "peers: `strait` is named twice"),
            ("name: x\ncpus: {proxy: 3-1}", "cpus.proxy: `3-1`"),
            ("name: x\nbackend: {size: 1MB}", "backend.size: `1MB`"),
            ("name: x\nload: {rate: fast}", "load.rate: `fast`"),
            ("name: x\nload: {rate: -5}", "load.rate: `-5`"),
            ("name: x\nload: {mode: tcp-echo, rate: 50%}", "load.rate: only for load.mode http"),
            ("name: x\nload: {mode: udp}", "load.mode: unknown variant `udp`"),
            ("name: x\nload: {connections: [1, 8], threads: 2}", "load.connections: 1 is fewer"),
            ("name: x\nload: {size: 5}", "load.size: only for load.mode tcp"),
            ("name: x\nload: {path: x}", "load.path: `x` must start with /"),
            ("name: x\nload: {headers: [nocolon]}", "load.headers: `nocolon`"),
            ("name: x\nbackend: {kind: sink}", "backend.kind: load.mode http needs a http backend"),
            ("name: x\nload: {mode: tls-full}\nproxy: {virtual_hosts: 2}", "proxy.virtual_hosts: only for"),
            ("name: x\nload: {streams: [16]}", "load.streams: only for load.mode h2 and grpc, not http"),
            ("name: x\nload: {mode: h2, connections: [8], streams: [12]}", "load.streams: 12 streams do not spread"),
            ("name: x\nload: {mode: grpc, streams: [0]}", "load.streams: must be at least 1"),
            ("name: x\nload: {mode: grpc, path: /x}", "load.path: only for load.mode http, h2 and tls-*"),
        ];
        for (yaml, want) in cases {
            let err = Scenario::parse(yaml).unwrap_err();
            assert!(err.contains(want), "{yaml:?}: {err}");
        }
    }

    #[test]
    fn http2_points_pair_connections_with_streams() {
        let s = Scenario::parse("name: x\nload: {mode: h2, connections: [1, 8], streams: [16, 64]}").unwrap();
        assert_eq!(s.backend_kind(), BackendKind::H2);
        let points: Vec<_> = s.points().iter().map(|p| (p.connections, p.streams, p.per_connection())).collect();
        assert_eq!(
            points,
            [(1, Some(16), Some(16)), (1, Some(64), Some(64)), (8, Some(16), Some(2)), (8, Some(64), Some(8))]
        );
        let grpc = Scenario::parse("name: x\nload: {mode: grpc, connections: [4]}").unwrap();
        assert_eq!(grpc.points(), [Point { connections: 4, streams: Some(4) }]);
        let http = Scenario::parse("name: x\nload: {connections: [16, 64]}").unwrap();
        assert_eq!(http.points()[1], Point { connections: 64, streams: None });
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("strait-bench-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.yaml");
        std::fs::write(&file, "name: x\nload: {conections: [1]}\n").unwrap();
        let err = Scenario::load(&file).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.starts_with(&file.display().to_string()) && err.contains("conections"), "{err}");
    }

    #[test]
    fn rates() {
        let parse = |s: &str| Rate::try_from(NumberOrText::Text(s.into()));
        assert_eq!(parse("50%"), Ok(Rate::Percent(50.0)));
        assert_eq!(parse("12.5 %"), Ok(Rate::Percent(12.5)));
        assert_eq!(parse("20000"), Ok(Rate::PerSecond(20000.0)));
        assert!(parse("0%").is_err() && parse("x%").is_err() && parse("").is_err());
        assert_eq!(Rate::Percent(50.0).resolve(Some(30_000.0)), Some(15_000.0));
        assert_eq!(Rate::Percent(50.0).resolve(None), None);
        assert_eq!(Rate::Percent(50.0).resolve(Some(0.0)), None);
        assert_eq!(Rate::PerSecond(100.0).resolve(None), Some(100.0));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5"), Ok(5));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert!(parse_size("1MB").is_err() && parse_size("MiB").is_err());
    }

    #[test]
    fn placement() {
        let plan = CpuPlan::default();
        let two = plan.resolve(&[0, 1]).unwrap();
        assert_eq!((two.proxy, two.backend, two.load), (Cpus(vec![0]), Cpus(vec![1]), Cpus(vec![1])));
        let one = plan.resolve(&[3]).unwrap();
        assert_eq!((one.proxy, one.load), (Cpus(vec![3]), Cpus(vec![3])));
        let set = CpuPlan { proxy: Some(Cpus(vec![2])), backend: None, load: Some(Cpus(vec![0, 1])) };
        assert_eq!(set.resolve(&[0, 1, 2]).unwrap().load, Cpus(vec![0, 1]));
        assert!(set.resolve(&[0, 1]).unwrap_err().starts_with("cpus.proxy: CPU 2"));
    }
}
