//! Live DNS for `resolution: DNS` endpoints: the control thread's resolver, asked for every
//! name a snapshot compile needs and asked again as each answer ages, off the request path.
//! A changed answer makes the control thread republish the snapshot (see `reload.rs`); a failed
//! one keeps the last good addresses.
//!
//! As Envoy under istiod (`respect_dns_ttl: true`, `dns_refresh_rate` from MeshConfig's
//! `dnsRefreshRate`): an answer is asked again when its TTL runs out, never sooner than
//! [`MIN_REFRESH`] (Envoy's `dns_min_refresh_rate`) and, here, never later than the refresh
//! rate, so that an `/etc/hosts` entry (which has no TTL) is followed too. A failed lookup, the
//! first one included, is asked again after the refresh rate: istiod sets no
//! `dns_failure_refresh_rate`, and without one Envoy's STRICT_DNS and LOGICAL_DNS clusters back
//! off by a fixed `dns_refresh_rate` (`FixedBackOffStrategy`), not exponentially.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};

use crate::snapshot::{distinct, Resolve};
use crate::stats::ControlStats;

/// Envoy's default `dns_min_refresh_rate`.
pub const MIN_REFRESH: Duration = Duration::from_secs(5);
/// MeshConfig's default `dnsRefreshRate`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// Where names are asked, and how often at most.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsOptions {
    /// Name servers to ask instead of `/etc/resolv.conf`'s (`--dns-server`); `/etc/hosts` is
    /// read either way.
    pub servers: Vec<SocketAddr>,
    /// `--dns-refresh-rate`: the longest an answer is kept before it is asked again; it wins
    /// over MeshConfig's `dnsRefreshRate`, and [`DEFAULT_REFRESH`] stands in for both.
    pub refresh_rate: Option<Duration>,
}

struct Answer {
    ips: Vec<IpAddr>,
    due: Instant,
}

pub struct Dns {
    opts: DnsOptions,
    /// MeshConfig's `dnsRefreshRate`, as the served config has it.
    mesh_refresh_rate: Option<Duration>,
    runtime: tokio::runtime::Runtime,
    answers: HashMap<String, Answer>,
    /// The names the compile under way asked for: once it ends, only those are kept.
    asked: HashSet<String>,
    /// Lookups answered and failed since [`Dns::count_into`] last counted them: a compile's
    /// first lookups run before the first generation's counters exist.
    answered: u64,
    failed: u64,
}

impl Dns {
    pub fn new(opts: DnsOptions) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Dns {
            opts,
            mesh_refresh_rate: None,
            runtime,
            answers: HashMap::new(),
            asked: HashSet::new(),
            answered: 0,
            failed: 0,
        })
    }

    /// The refresh rate of the config about to be compiled (MeshConfig's `dnsRefreshRate`).
    pub fn set_mesh_refresh_rate(&mut self, rate: Option<Duration>) {
        self.mesh_refresh_rate = rate;
    }

    /// The longest an answer is kept: `--dns-refresh-rate`, else MeshConfig's, else 60s.
    pub fn refresh_rate(&self) -> Duration {
        self.opts.refresh_rate.or(self.mesh_refresh_rate).unwrap_or(DEFAULT_REFRESH)
    }

    /// A compile is about to ask for names.
    pub fn begin(&mut self) {
        self.asked.clear();
    }

    /// The compile that asked is the one served: names it did not ask are no longer followed.
    pub fn commit(&mut self) {
        let asked = &self.asked;
        self.answers.retain(|name, _| asked.contains(name));
    }

    /// Adds the lookups made since the last call, first ones and refreshes alike, to `stats`.
    pub fn count_into(&mut self, stats: &ControlStats) {
        stats.dns_resolve_ok.add(std::mem::take(&mut self.answered));
        stats.dns_resolve_failed.add(std::mem::take(&mut self.failed));
    }

    /// When the next answer is due to be asked again.
    pub fn next_due(&self) -> Option<Instant> {
        self.answers.values().map(|a| a.due).min()
    }

    /// Asks again every answer that is due, together. True when an address set changed: the
    /// snapshot must then be compiled again. Failures keep the last good addresses.
    pub fn refresh(&mut self, stats: &ControlStats) -> bool {
        let now = Instant::now();
        let names: Vec<String> = self.answers.iter().filter(|(_, a)| a.due <= now).map(|(n, _)| n.clone()).collect();
        if names.is_empty() {
            return false;
        }
        let results = self.query(&names);
        let refresh_rate = self.refresh_rate();
        let mut changed = false;
        for (name, result) in names.into_iter().zip(results) {
            let Some(answer) = self.answers.get_mut(&name) else { continue };
            match result {
                Ok((ips, valid_until)) => {
                    self.answered += 1;
                    if ips != answer.ips {
                        tracing::info!(name, from = ?answer.ips, to = ?ips, "DNS answer changed");
                        answer.ips = ips;
                        changed = true;
                    }
                    answer.due = due(valid_until, refresh_rate);
                }
                Err(e) => {
                    self.failed += 1;
                    tracing::warn!(name, error = %e, kept = ?answer.ips, "DNS refresh failed; the last answer is kept");
                    answer.due = failure_due(refresh_rate);
                }
            }
        }
        self.count_into(stats);
        changed
    }

    /// When an answer valid until `valid_until` is asked again.
    fn due(&self, valid_until: Instant) -> Instant {
        due(valid_until, self.refresh_rate())
    }

    /// Asks for `names` at once. A resolver is built for each round: it reads `/etc/hosts` and
    /// `/etc/resolv.conf` when built, and a round must see their edits as Envoy's does.
    fn query(&self, names: &[String]) -> Vec<Result<(Vec<IpAddr>, Instant), ResolveError>> {
        self.runtime.block_on(async {
            let resolver = match self.resolver() {
                Ok(r) => r,
                Err(e) => return names.iter().map(|_| Err(e.clone())).collect(),
            };
            let lookups = names.iter().map(|name| {
                let resolver = &resolver;
                async move {
                    let found = resolver.lookup_ip(name.as_str()).await?;
                    Ok((distinct(found.iter()), found.valid_until()))
                }
            });
            join_all(lookups).await
        })
    }

    fn resolver(&self) -> Result<TokioResolver, ResolveError> {
        let provider = TokioConnectionProvider::default();
        let mut builder = if self.opts.servers.is_empty() {
            TokioResolver::builder(provider)?
        } else {
            let mut config = ResolverConfig::new();
            for &addr in &self.opts.servers {
                config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(config, provider)
        };
        // Our refresh is the cache: the resolver's own would answer a due name from memory.
        builder.options_mut().cache_size = 0;
        Ok(builder.build())
    }
}

/// A TTL, bounded below by [`MIN_REFRESH`] and above by the refresh rate.
fn due(valid_until: Instant, refresh_rate: Duration) -> Instant {
    let now = Instant::now();
    valid_until.clamp(now + MIN_REFRESH, now + refresh_rate.max(MIN_REFRESH))
}

/// When a failed lookup is asked again: Envoy's fixed failure backoff of one refresh rate (no
/// `dns_min_refresh_rate` floor: that bounds TTLs only).
fn failure_due(refresh_rate: Duration) -> Instant {
    Instant::now() + refresh_rate
}

impl Resolve for Dns {
    /// The answer followed for `name`, asked now when it is new (a compile waits for it, as
    /// Envoy's cluster waits for its first resolution before it serves).
    fn lookup(&mut self, name: &str) -> Vec<IpAddr> {
        self.asked.insert(name.to_string());
        if let Some(answer) = self.answers.get(name) {
            return answer.ips.clone();
        }
        let (ips, due) = match self.query(&[name.to_string()]).pop() {
            Some(Ok((ips, valid_until))) => {
                self.answered += 1;
                (ips, self.due(valid_until))
            }
            Some(Err(e)) => {
                self.failed += 1;
                tracing::warn!(name, error = %e, "DNS resolution failed; the endpoint has no addresses until it resolves");
                (Vec::new(), failure_due(self.refresh_rate()))
            }
            None => (Vec::new(), failure_due(self.refresh_rate())),
        };
        self.answers.insert(name.to_string(), Answer { ips: ips.clone(), due });
        ips
    }
}
