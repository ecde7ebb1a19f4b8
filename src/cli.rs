//! The command line, as ARCHITECTURE.md's CLI contract fixes it: `strait run` and
//! `strait validate`. Parsing only; the binary renders errors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::admin::LogFilter;
use crate::control::{BuildOptions, DnsOptions, RunOptions, DEFAULT_DRAIN_TIMEOUT};
use crate::limits::{ClientLimits, Limits, MAX_HEADERS};
use crate::percore::access_log::Encoding;
use crate::worker::{default_workers, DriverChoice, WorkerOptions};

/// Environment variable read when `--driver` is not given (the tests run everything on both).
pub const DRIVER_ENV: &str = "STRAIT_DRIVER";

/// `strait --version`: the package version and the commit it was built from (build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("STRAIT_COMMIT"), ")");

#[derive(Debug, Parser)]
#[command(name = "strait", version = VERSION, about = "An io_uring, thread-per-core edge gateway configured by Istio YAML")]
pub struct Cli {
    /// Log level (trace, debug, info, warning or warn, error, critical, off: Envoy's names) or a
    /// filter such as `strait=debug`; `POST /logging?level=` changes it while serving [default:
    /// RUST_LOG, else info]
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<LogFilter>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: SIGHUP reloads, SIGTERM/SIGINT drains and exits
    /// Boxed: the run flags outweigh validate's many times over.
    Run(Box<RunArgs>),
    /// Check a config as `run` would and exit 1 on errors or dangling references
    Validate(ConfigArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// A YAML file, or a directory whose *.yaml/*.yml files are all read; repeatable
    #[arg(long = "config", value_name = "PATH", required_unless_present = "kubernetes")]
    pub configs: Vec<PathBuf>,
    /// Read the config from the Kubernetes API (in-cluster service account, or KUBECONFIG) and
    /// follow its changes: Istio resources, the Secrets credentialName names, and Services with
    /// their EndpointSlices; beside any --config
    #[arg(long)]
    pub kubernetes: bool,
    /// A label of this gateway instance, matched against Gateway selectors; repeatable
    /// [default: istio=ingressgateway]
    #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Where `credentialName: NAME` finds NAME/tls.crt, NAME/tls.key and NAME/ca.crt
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// This gateway's own namespace, where `credentialName` Secrets are looked up, as istiod
    /// looks them up in the gateway workload's (an Istio install runs it in istio-system)
    #[arg(long, value_name = "NS", default_value = crate::config::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// An Istio ProxyConfig (the resource, or the `proxy.istio.io/config` annotation's
    /// mapping): `httpsHttp2Disabled: true` offers HTTPS clients HTTP/1.1 only; read again on
    /// every reload
    #[arg(long, value_name = "FILE")]
    pub proxy_config: Option<PathBuf>,
    /// Istio's MeshConfig (the `mesh` key of the `istio` ConfigMap): rootNamespace,
    /// defaultConfig, dnsRefreshRate, h2UpgradePolicy; read again on every reload
    #[arg(long, value_name = "FILE")]
    pub mesh: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Worker threads, worker i pinned to core i [default: the CPUs this process may use]
    #[arg(long, value_name = "N")]
    pub workers: Option<NonZeroUsize>,
    /// Admin interface address
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15000")]
    pub admin: SocketAddr,
    /// Istio's default access log, one line per request, on stdout
    #[arg(long)]
    pub access_log: bool,
    /// The access log's encoding, as Istio's `accessLogEncoding`
    #[arg(long, value_enum, value_name = "ENCODING", default_value = "text")]
    pub access_log_encoding: Encoding,
    /// Mirrored requests carry `HOST-shadow` as Host, as Istio 1.27 and older sent them
    /// (newer Istio keeps the original Host)
    #[arg(long)]
    pub mirror_shadow_suffix: bool,
    /// I/O driver; also read from STRAIT_DRIVER [default: auto]
    #[arg(long, value_enum, value_name = "DRIVER")]
    pub driver: Option<DriverChoice>,
    /// How long SIGTERM waits for open connections, e.g. 5s, 500ms, 1m [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// Listen on ports another process already serves, sharing their connections with it
    /// (SO_REUSEPORT, same user): for a hand-over, start the new instance with this flag and its
    /// own --admin, then SIGTERM the old one. Without it such a port is refused
    #[arg(long)]
    pub share_ports: bool,
    /// Reload when a --config path or the --proxy-config file changes on disk, as SIGHUP does: a
    /// plain edit, a file added or removed, or a mounted ConfigMap's `..data` swap
    #[arg(long)]
    pub watch: bool,
    /// Where ASMGlobalRateLimiter's counters live, shared by every instance:
    /// redis://[:PASSWORD@]HOST:PORT[/DB]. Without it global limits limit nothing
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// A global rate limit check that fails (Redis down, no answer within the timeout) answers
    /// 500 instead of letting the request through (Envoy's ratelimit `failure_mode_deny`)
    #[arg(long, requires = "redis")]
    pub ratelimit_failure_mode_deny: bool,
    /// A name server to ask for `resolution: DNS` hosts instead of /etc/resolv.conf's, e.g.
    /// 10.0.0.2:53; repeatable (/etc/hosts is read either way)
    #[arg(long = "dns-server", value_name = "ADDR")]
    pub dns_servers: Vec<SocketAddr>,
    /// The longest a DNS answer is kept before it is asked again, as MeshConfig's
    /// dnsRefreshRate, over which it wins (a shorter TTL is followed, down to 5s) [default:
    /// --mesh's dnsRefreshRate, else 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub dns_refresh_rate: Option<Duration>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What one client may take; over a size limit the answer is 431 or 414, over a time limit 408.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Largest request head (request line and header fields), in KiB, as Envoy's
    /// max_request_headers_kb
    #[arg(long, value_name = "KIB", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub max_request_headers_kb: u32,
    /// Longest request line, in KiB
    #[arg(long, value_name = "KIB", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub max_request_line_kb: u32,
    /// Most header fields in a request (100 at most)
    #[arg(long, value_name = "N", default_value_t = MAX_HEADERS as u32, value_parser = clap::value_parser!(u32).range(1..=MAX_HEADERS as i64))]
    pub max_headers_count: u32,
    /// How long a client may take to send a request head, counted from the connection's start
    /// for its first request (slowloris' bound) [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub request_headers_timeout: Option<Duration>,
    /// How long a client may take to complete a TLS handshake, from its connection's start
    /// [default: 15s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub tls_handshake_timeout: Option<Duration>,
    /// How long a keep-alive client connection may idle between requests [default: 1h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Longest a request may take, head to end of response (Envoy's max_stream_duration)
    /// [default: none]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_request_duration: Option<Duration>,
    /// Client connections one worker serves at once; more wait in the listen backlog
    #[arg(long, value_name = "N", default_value_t = ClientLimits::default().max_connections_per_worker)]
    pub max_connections_per_worker: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> ClientLimits {
        let default = ClientLimits::default();
        ClientLimits {
            head: Limits {
                max_head: self.max_request_headers_kb as usize * 1024,
                max_request_line: self.max_request_line_kb as usize * 1024,
                max_headers: self.max_headers_count as usize,
            },
            request_headers_timeout: self.request_headers_timeout.unwrap_or(default.request_headers_timeout),
            tls_handshake_timeout: self.tls_handshake_timeout.unwrap_or(default.tls_handshake_timeout),
            idle_timeout: self.idle_timeout.unwrap_or(default.idle_timeout),
            max_request_duration: self.max_request_duration,
            max_connections_per_worker: self.max_connections_per_worker.max(1),
        }
    }
}

impl ConfigArgs {
    pub fn build_options(&self) -> BuildOptions {
        let labels: BTreeMap<String, String> = if self.labels.is_empty() {
            [("istio".to_string(), "ingressgateway".to_string())].into()
        } else {
            self.labels.iter().cloned().collect()
        };
        BuildOptions {
            paths: self.configs.clone(),
            proxy_config: self.proxy_config.clone(),
            mesh: self.mesh.clone(),
            labels,
            secrets_dir: self.secrets_dir.clone(),
            namespace: self.namespace.clone(),
            kubernetes: self.kubernetes,
            workers: 1,
        }
    }
}

impl RunArgs {
    /// `env_driver` is the value of [`DRIVER_ENV`], if set.
    pub fn run_options(&self, env_driver: Option<&str>) -> Result<RunOptions, String> {
        let workers = self.workers.map_or_else(default_workers, NonZeroUsize::get);
        Ok(RunOptions {
            build: BuildOptions { workers, ..self.config.build_options() },
            workers: WorkerOptions {
                workers,
                driver: driver_choice(self.driver, env_driver)?,
                access_log: self.access_log.then_some(self.access_log_encoding),
                mirror_shadow_suffix: self.mirror_shadow_suffix,
                limits: self.limits.limits(),
                redis: match &self.redis {
                    Some(url) => Some(crate::upstream::redis::RedisTarget {
                        failure_mode_deny: self.ratelimit_failure_mode_deny,
                        ..crate::upstream::redis::RedisTarget::parse(url).map_err(|e| format!("--redis {e}"))?
                    }),
                    None => None,
                },
            },
            admin: self.admin,
            drain_timeout: self.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
            share_ports: self.share_ports,
            watch: self.watch,
            dns: DnsOptions { servers: self.dns_servers.clone(), refresh_rate: self.dns_refresh_rate },
        })
    }
}

/// `--driver` wins over the environment; neither means auto.
pub fn driver_choice(flag: Option<DriverChoice>, env: Option<&str>) -> Result<DriverChoice, String> {
    match (flag, env) {
        (Some(choice), _) => Ok(choice),
        (None, Some(value)) if !value.is_empty() => DriverChoice::from_str(value.trim(), true)
            .map_err(|_| format!("{DRIVER_ENV}={value}: expected uring, legacy or auto")),
        (None, _) => Ok(DriverChoice::Auto),
    }
}

/// `k=v`; the value may be empty, as a Kubernetes label value may.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}`: expected KEY=VALUE")),
    }
}

/// `500ms`, `5s`, `1.5s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)")),
    };
    let value: f64 = number.parse().map_err(|_| format!("`{s}`: expected a duration such as 5s or 500ms"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("`{s}`: {e}"))
}

#[cfg(test)]
mod tests;
