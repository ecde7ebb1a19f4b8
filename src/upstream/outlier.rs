//! Outlier detection (DestinationRule `outlierDetection`), as Envoy's detector does it: each
//! endpoint's consecutive failures and ejection, shared by every worker (an ejection is decided
//! from all workers' observations and seen by all of them) and kept across reloads by the
//! live registry (`live.rs`), which holds each cluster's [`Hosts`].
//!
//! Only failures and ejections write to the shared state; a success reads it (and writes only
//! to clear a non-zero count), so a healthy cluster's cache lines stay shared between cores.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use std::ops::Deref;
use std::sync::Arc;

use crate::snapshot::{Cluster, OutlierDetection};

/// Envoy's `max_ejection_time`, which Istio leaves at its default: an ejection grows with each
/// one in a row up to 300 s (or `baseEjectionTime`, if longer).
const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Milliseconds on a process-wide monotonic clock, as the ejection deadlines are kept.
pub fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    // Starts at 1 so that 0 can mean "never ejected".
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// What one try at an endpoint came to, as Envoy's outlier detector tells results apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// The upstream answered with this status.
    Status(u16),
    /// A new HTTP connection was established (only counted when local-origin errors are split).
    Connected,
    /// A TCP-proxied connection was established: the whole of its success.
    Established,
    /// Connecting failed or timed out.
    ConnectFailed,
    /// The upstream reset or broke the exchange after the connection was made.
    Reset,
    /// No response in time.
    Timeout,
}

/// One endpoint's health in one cluster.
#[derive(Debug, Default)]
pub struct HostHealth {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    /// Until when (on [`clock_ms`]) the host is ejected; in the past once it is readmitted, and
    /// 0 if it never was ejected.
    ejected_until: AtomicU64,
    /// Envoy's ejection multiplier: ejections in a row, less one per healthy `interval` since.
    ejections: AtomicU32,
    /// Ejections made, and refused by `maxEjectionPercent`, for the stats.
    enforced: AtomicU64,
    overflow: AtomicU64,
}

impl HostHealth {
    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Relaxed) > now
    }

    /// Counts `what`; true when it makes a consecutive-error count reach its threshold (the
    /// count then starts again, whether or not the ejection is allowed, as in Envoy).
    fn count(&self, od: &OutlierDetection, what: Observation) -> bool {
        let split = od.split_external_local_origin_errors;
        // Without the split, local-origin results stand for the status Envoy maps them to.
        let status = match what {
            Observation::Status(s) => s,
            Observation::Connected => {
                if split {
                    clear(&self.consecutive_local);
                }
                return false;
            }
            Observation::Established => {
                clear(&self.consecutive_local);
                200
            }
            Observation::ConnectFailed | Observation::Reset | Observation::Timeout if split => {
                return bump(&self.consecutive_local, od.consecutive_local_origin_failures);
            }
            Observation::ConnectFailed | Observation::Reset => 503,
            Observation::Timeout => 504,
        };
        if !(500..600).contains(&status) {
            clear(&self.consecutive_5xx);
            clear(&self.consecutive_gateway);
            return false;
        }
        let gateway = if matches!(status, 502..=504) {
            bump(&self.consecutive_gateway, od.consecutive_gateway_errors)
        } else {
            clear(&self.consecutive_gateway);
            false
        };
        bump(&self.consecutive_5xx, od.consecutive_5xx) | gateway
    }

    /// How long the next ejection lasts: `baseEjectionTime` times the ejections in a row, which
    /// lose one per `interval` spent healthy since the last ended.
    fn next_ejection(&self, od: &OutlierDetection, now: u64) -> (u32, Duration) {
        let last_end = self.ejected_until.load(Relaxed);
        let interval = od.interval.as_millis().max(1) as u64;
        let healthy_intervals = if last_end == 0 { 0 } else { now.saturating_sub(last_end) / interval };
        let previous = u64::from(self.ejections.load(Relaxed)).saturating_sub(healthy_intervals);
        let n = previous as u32 + 1;
        let base = od.base_ejection_time.max(Duration::from_millis(1));
        (n, (base * n).min(base.max(MAX_EJECTION)))
    }
}

/// Adds one to a count with a threshold; true when it reaches it (and restarts it).
fn bump(count: &AtomicU32, threshold: Option<u32>) -> bool {
    let Some(threshold) = threshold else { return false };
    if count.fetch_add(1, Relaxed) + 1 == threshold {
        count.store(0, Relaxed);
        return true;
    }
    false
}

/// Clears a count; the load first keeps a count that is already 0 from being written.
fn clear(count: &AtomicU32) {
    if count.load(Relaxed) != 0 {
        count.store(0, Relaxed);
    }
}

/// A cluster's ejections: in force now, made in all, and refused by `maxEjectionPercent`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EjectionStats {
    pub active: u64,
    pub enforced_total: u64,
    pub overflow: u64,
}

/// Which of a cluster's endpoints may be picked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    /// Every endpoint: none is ejected, or so few are healthy that Envoy's panic mode ignores
    /// health (`minHealthPercent`).
    All,
    /// Only those not ejected at `now` (see [`HostHealth::is_ejected`]).
    Healthy { now: u64 },
    /// None: every endpoint is ejected and panic mode is off.
    None,
}

impl Usable {
    /// Whether endpoint `i` of the cluster whose `hosts` these are may be picked.
    pub fn allows(self, hosts: &Hosts, i: usize) -> bool {
        match self {
            Usable::All => true,
            Usable::Healthy { now } => !hosts[i].is_ejected(now),
            Usable::None => false,
        }
    }
}

/// A cluster's endpoints' outlier state, at the index of the snapshot cluster's endpoint: its
/// policy is the snapshot's `Cluster`, its state this.
#[derive(Debug, Default)]
pub struct Hosts(pub Vec<Arc<HostHealth>>);

impl Deref for Hosts {
    type Target = [Arc<HostHealth>];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Hosts {
    /// Records what a try at endpoint `i` came to, and ejects it when that crosses a
    /// consecutive-error threshold.
    pub fn observe(&self, cluster: &Cluster, i: usize, what: Observation) {
        self.observe_at(cluster, i, what, clock_ms);
    }

    fn observe_at(&self, cluster: &Cluster, i: usize, what: Observation, now: impl FnOnce() -> u64) {
        let Some(od) = &cluster.policy.outlier_detection else { return };
        let Some(host) = self.get(i) else { return };
        if host.count(od, what) {
            self.eject(cluster, i, od, now());
        }
    }

    /// Which endpoints the balancer may pick now.
    pub fn usable(&self, cluster: &Cluster) -> Usable {
        self.usable_at(cluster, clock_ms)
    }

    fn usable_at(&self, cluster: &Cluster, now: impl FnOnce() -> u64) -> Usable {
        // The clock is read only once some endpoint has been ejected.
        if cluster.policy.outlier_detection.is_none() || self.iter().all(|h| h.ejected_until.load(Relaxed) == 0) {
            return Usable::All;
        }
        let now = now();
        let ejected = self.ejected_count(now);
        let n = self.len();
        let min_health = cluster.policy.outlier_detection.as_ref().map_or(0, |od| od.min_health_percent as usize);
        if ejected == 0 || (n - ejected) * 100 < n * min_health {
            Usable::All
        } else if ejected == n {
            Usable::None
        } else {
            Usable::Healthy { now }
        }
    }

    /// Envoy's `outlier_detection` stats of this cluster.
    pub fn ejection_stats(&self) -> EjectionStats {
        let now = clock_ms();
        EjectionStats {
            active: self.ejected_count(now) as u64,
            enforced_total: self.iter().map(|h| h.enforced.load(Relaxed)).sum(),
            overflow: self.iter().map(|h| h.overflow.load(Relaxed)).sum(),
        }
    }

    fn ejected_count(&self, now: u64) -> usize {
        self.iter().filter(|h| h.is_ejected(now)).count()
    }

    /// Ejects endpoint `i` unless it already is or `maxEjectionPercent` forbids it; Envoy
    /// always allows one ejection, whatever the percentage.
    fn eject(&self, cluster: &Cluster, i: usize, od: &OutlierDetection, now: u64) {
        let host = &self[i];
        let allowed = |ejected: usize| ejected <= 1 || ejected * 100 <= self.len() * od.max_ejection_percent as usize;
        let before = host.ejected_until.load(Relaxed);
        if before > now {
            return;
        }
        if !allowed(self.ejected_count(now) + 1) {
            host.overflow.fetch_add(1, Relaxed);
            return;
        }
        let (n, time) = host.next_ejection(od, now);
        let until = now + time.as_millis() as u64;
        if host.ejected_until.compare_exchange(before, until, Relaxed, Relaxed).is_err() {
            return;
        }
        // Another worker may have ejected another endpoint meanwhile: the later count decides,
        // and both may step back (the next failures try again).
        if !allowed(self.ejected_count(now)) {
            host.ejected_until.store(before, Relaxed);
            return;
        }
        host.ejections.store(n, Relaxed);
        host.enforced.fetch_add(1, Relaxed);
        tracing::warn!(cluster = %cluster.name, endpoint = %cluster.endpoints[i].addr, ejection = n, "outlier ejected for {time:?}");
    }
}

#[cfg(test)]
mod tests;
