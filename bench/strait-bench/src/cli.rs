//! The command line: one subcommand per mode. Every load run is bounded by `--duration` or
//! `--requests`, so no run can go on forever.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "strait-bench", version, about = "Load generator, backend and side-by-side perf suite for Strait")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP/1.1 load: closed loop (as wrk), or open loop at --rate with latency corrected for
    /// coordinated omission (as wrk2).
    Http(HttpArgs),
    /// Raw TCP: bulk throughput over one or many streams, or echo round-trip latency.
    Tcp(TcpArgs),
    /// TLS: full or resumed handshakes per second, or HTTPS keep-alive requests.
    Tls(TlsArgs),
    /// HTTP/2 load: connections × concurrent streams, closed loop or open loop at --rate.
    H2(H2Args),
    /// gRPC unary load over HTTP/2: one fixed call, its status read from the trailers.
    Grpc(GrpcArgs),
    /// The built-in backend: fixed-size or echo HTTP/1.1 or HTTP/2 responses, a TCP sink or echo.
    Serve(ServeArgs),
    /// Run a scenario file: backend, Strait and peers pinned and interleaved, one comparison table.
    Scenario(ScenarioArgs),
}

/// What every load mode shares: how many, how long, where, and how to report.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Open connections (streams for TCP throughput), spread evenly over the threads.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,
    /// Load threads, each its own monoio runtime (pinned with --cpus).
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// How long to run, e.g. 10s, 500ms, 1m.
    #[arg(short = 'd', long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Stop after this many operations (requests, handshakes, echoes) in all, if sooner.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Run this long first and throw its figures away.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// An operation or connect that takes longer fails as a timeout.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// CPUs to pin the threads to, e.g. 2,3 or 4-7 (default: none, the kernel decides).
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<Cpus>,
    /// Exit 1, after the report, when more than this share of the operations failed (0 to 1;
    /// every kind of error counts, answers outside 2xx and 3xx too). A run in which no operation
    /// succeeded always exits 1.
    #[arg(long, value_name = "RATE", default_value_t = 0.01, value_parser = parse_rate)]
    pub max_error_rate: f64,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Print the result as one JSON document on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No live progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// http://HOST:PORT/PATH?QUERY
    pub url: String,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Requests in flight per connection (HTTP/1.1 pipelining).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    #[command(flatten)]
    pub request: RequestArgs,
    /// Open loop: requests per second in all, each latency measured from when it was due.
    #[arg(short = 'R', long)]
    pub rate: Option<f64>,
}

/// The request every connection (or stream) sends: `http` and `h2` make it alike.
#[derive(Debug, Clone, Default, Args)]
pub struct RequestArgs {
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: String,
    /// An extra request header, `Name: value`; repeatable. A `Host` given here replaces the URL's.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// The request body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// The request body, read from a file.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct H2Args {
    /// http://HOST:PORT/PATH (h2c, prior knowledge) or https://… (TLS, ALPN h2)
    pub url: String,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub streams: StreamArgs,
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
}

#[derive(Debug, Clone, Args)]
pub struct GrpcArgs {
    /// http://HOST:PORT/package.Service/Method (h2c) or https://…; a bare `/` calls
    /// /strait.bench.Bench/Unary.
    pub url: String,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub streams: StreamArgs,
    /// Bytes in the request message's one `bytes` field (protobuf field 1).
    #[arg(long, default_value_t = 16)]
    pub size: usize,
    /// Extra request metadata, `Name: value`; repeatable.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// How an HTTP/2 load multiplexes and paces.
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// Concurrent streams per connection, each sending its next request when its last answer
    /// has ended (or, with --rate, when it is due).
    #[arg(short = 's', long, default_value_t = 1)]
    pub streams: usize,
    /// Open loop: requests per second in all, each latency measured from when it was due.
    #[arg(short = 'R', long)]
    pub rate: Option<f64>,
}

/// Whom a TLS client trusts, and as whom it asks: `tls`, and `h2`/`grpc` on https:// URLs.
#[derive(Debug, Clone, Args)]
pub struct TrustArgs {
    /// The name sent as SNI and checked in the certificate (default: the URL's host).
    #[arg(long)]
    pub sni: Option<String>,
    /// PEM CA bundle the server's certificate must chain to.
    #[arg(long, conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// Accept any server certificate (measuring, not testing trust).
    #[arg(short = 'k', long)]
    pub insecure: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TcpMode {
    /// Push bytes as fast as the path takes them; report bytes/s.
    Throughput,
    /// Send a message, wait for it back, repeat; report round trips/s and their latency.
    Echo,
}

#[derive(Debug, Clone, Args)]
pub struct TcpArgs {
    /// HOST:PORT to connect to.
    pub addr: SocketAddr,
    #[arg(long, value_enum, default_value_t = TcpMode::Throughput)]
    pub mode: TcpMode,
    /// Bytes per write (throughput; default 256 KiB, so a stream costs few writes per
    /// gigabyte) or per message (echo; default 64, a latency probe).
    #[arg(long)]
    pub size: Option<usize>,
    #[command(flatten)]
    pub load: LoadArgs,
}

impl TcpArgs {
    /// `--size`, or the default for the mode.
    pub fn size(&self) -> usize {
        self.size.unwrap_or(match self.mode {
            TcpMode::Throughput => 256 * 1024,
            TcpMode::Echo => 64,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    /// A new connection and full handshake each time, closed after one request.
    Full,
    /// As full, but resuming the session the first handshake got (tickets or session IDs).
    Resumed,
    /// HTTPS keep-alive requests on long-lived connections.
    Requests,
}

#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// https://HOST:PORT/PATH
    pub url: String,
    #[arg(long, value_enum, default_value_t = TlsMode::Requests)]
    pub mode: TlsMode,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub kind: ServeKind,
    /// Where to listen.
    #[arg(long, global = true, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serving threads, each a monoio runtime with its own SO_REUSEPORT listener.
    #[arg(short = 't', long, global = true, default_value_t = 1)]
    pub threads: usize,
    #[arg(long, global = true, value_parser = parse_cpus)]
    pub cpus: Option<Cpus>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ServeKind {
    /// HTTP/1.1: a fixed-size body for every request, or the request's body echoed back.
    Http(ServeHttpArgs),
    /// HTTP/2 (h2c with prior knowledge, or TLS with ALPN h2): the same answers as `http`, and
    /// gRPC calls (`content-type: application/grpc`) answered with their own message and
    /// `grpc-status: 0`.
    H2(ServeHttpArgs),
    /// TCP: read and discard everything.
    Sink,
    /// TCP: write back everything read.
    Echo,
    /// DNS (UDP, on --listen): `hostN.SUFFIX` for N below --names answers 127.0.0.1, for the
    /// gateway's `--dns-server` (perf/dns-refresh.sh). One thread, whatever --threads says.
    Dns(ServeDnsArgs),
}

/// What `serve dns` answers.
#[derive(Debug, Clone, Args)]
pub struct ServeDnsArgs {
    /// Names served: host0.SUFFIX to host(N-1).SUFFIX.
    #[arg(long, default_value_t = 1000)]
    pub names: usize,
    #[arg(long, default_value = "dns.bench")]
    pub suffix: String,
    /// The answers' TTL, in seconds.
    #[arg(long, default_value_t = 1)]
    pub ttl: u32,
}

/// What `serve http` and `serve h2` answer.
#[derive(Debug, Clone, Args)]
pub struct ServeHttpArgs {
    /// Bytes in each response body.
    #[arg(long, default_value_t = 5)]
    pub size: usize,
    /// Answer with the request's own body instead.
    #[arg(long)]
    pub echo: bool,
    /// Once, at the Nth request (counted across threads), wait this long before answering:
    /// a stall to check that open-loop percentiles see it. Format N:DURATION, e.g. 2000:1s.
    #[arg(long, value_parser = parse_stall)]
    pub stall_once: Option<(u64, Duration)>,
    /// Terminate TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// `h2` only: answer nothing itself but pass every stream on to the HTTP/2 (h2c) server at
    /// this address, head, DATA and trailers as they come, over one connection per thread: the
    /// least an HTTP/2 proxy built on the h2 crate can do, a floor to measure a proxy against.
    #[arg(long)]
    pub relay: Option<SocketAddr>,
}

#[derive(Debug, Clone, Args)]
pub struct ScenarioArgs {
    /// A scenario file, e.g. perf/scenarios/http-small.yaml.
    pub file: PathBuf,
    /// The Strait binary to measure [default: `strait` beside this binary].
    #[arg(long)]
    pub strait: Option<PathBuf>,
    /// Only these peers (comma-separated from direct, strait, envoy, nginx, haproxy).
    #[arg(long, value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
    /// Override the scenario's rounds.
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Override the scenario's duration per run.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Print the comparison as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write the generated configs, certificate and logs here and keep them [default: a
    /// temporary folder, removed at the end].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// A CPU list such as `0`, `2,3` or `4-7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpus(pub Vec<usize>);

pub fn parse_cpus(s: &str) -> Result<Cpus, String> {
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let bad = || format!("`{part}`: expected a CPU number or range such as 2 or 4-7");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    Ok(Cpus(cpus))
}

/// A share from 0 to 1, e.g. 0.01.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("`{s}`: expected a share from 0 to 1, e.g. 0.01")),
    }
}

fn parse_stall(s: &str) -> Result<(u64, Duration), String> {
    let (n, d) = s.split_once(':').ok_or("expected N:DURATION, e.g. 2000:1s")?;
    let n = n.parse().map_err(|_| format!("`{n}`: expected a request number"))?;
    Ok((n, humantime::parse_duration(d).map_err(|e| format!("`{d}`: {e}"))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("0").unwrap(), Cpus(vec![0]));
        assert_eq!(parse_cpus("2,4-6").unwrap(), Cpus(vec![2, 4, 5, 6]));
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("x").is_err());
    }

    #[test]
    fn error_rates() {
        assert_eq!(parse_rate("0.01"), Ok(0.01));
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("1"), Ok(1.0));
        for bad in ["-0.1", "1.5", "1%", "NaN", ""] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stall() {
        assert_eq!(parse_stall("2000:1s").unwrap(), (2000, Duration::from_secs(1)));
        assert!(parse_stall("1s").is_err());
    }
}
