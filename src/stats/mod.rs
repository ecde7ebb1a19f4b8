//! The gateway's counters and gauges ([`Counter`], [`Gauge`]), which every layer may use
//! (below them all but the snapshot, whose cluster labels the Istio series take): per-worker
//! sets written only by their own worker and merged only when scraped (`admin` renders them).
//!
//! Every counter has exactly one writer (its worker, or the control thread for
//! [`ControlStats`]), so an update is a relaxed load and store: no lock, no `lock`-prefixed
//! read-modify-write, and no cache line shared with another core on the request path. Readers
//! (the admin thread) may see a value a moment old, which is all a scrape needs.

use std::collections::BTreeMap;
use std::sync::Arc;

pub mod endpoints;
pub mod http_cluster;
pub mod istio;
pub mod l4;
mod registry;

pub use crate::counter::{Counter, Gauge};
pub use endpoints::EndpointCounters;
pub use http_cluster::HttpCluster;
pub use istio::{Destination as IstioDestination, MessageSeries, Outcome, Protocol, RequestSeries, SeriesKey};
pub use l4::{L4Counters, L4Key, L4Kind, L4Totals};

use endpoints::EndpointRegistry;
use http_cluster::{HttpClusterRegistry, HttpClusterTotals};
use istio::IstioRegistry;
use l4::L4Registry;

/// Status codes are counted exactly in a fixed array indexed by the code; index 0 counts codes
/// outside 100..=599, which a broken upstream may send.
pub const STATUS_SLOTS: usize = 600;

/// One worker's counters. Aligned to 128 bytes (two cache lines, the unit the adjacent-line
/// prefetcher pulls in) so that two workers' structs never share a line.
#[derive(Debug)]
#[repr(align(128))]
pub struct WorkerStats {
    pub downstream_cx_total: Counter,
    pub downstream_cx_active: Gauge,
    pub downstream_rq_total: Counter,
    /// Responses sent downstream, by status code (see [`WorkerStats::record_status`]).
    pub responses: [Counter; STATUS_SLOTS],
    /// Upstream requests sent on a pooled (already open) connection.
    pub upstream_cx_reused: Counter,
    /// TCP connections no `tcp` route admitted.
    pub tcp_no_route: Counter,
    /// TLS handshakes completed, of which resumed; handshakes that failed (timeouts, alerts,
    /// refused client certificates); TLS connections no server or `tls` route took.
    pub ssl_handshake: Counter,
    pub ssl_session_reused: Counter,
    pub ssl_connection_error: Counter,
    pub ssl_no_route: Counter,
    /// Requests the AuthorizationPolicy stage allowed and denied (Envoy's `rbac.allowed`,
    /// `rbac.denied`).
    pub rbac_allowed: Counter,
    pub rbac_denied: Counter,
    /// TCP connections the same judged at their start (Envoy's `tcp.rbac.*`).
    pub tcp_rbac_allowed: Counter,
    pub tcp_rbac_denied: Counter,
    /// Global rate limit checks (Envoy's `ratelimit.*`).
    pub ratelimit: RateLimitCounters,
    /// Proxied TCP traffic by route and cluster.
    pub l4: L4Registry,
    /// HTTP upstream connections, requests and answers by cluster.
    pub http_clusters: HttpClusterRegistry,
    /// Istio's request series.
    pub istio: IstioRegistry,
    /// Per-endpoint connections and requests, for `/clusters`.
    pub endpoints: EndpointRegistry,
    /// The snapshot generation this worker serves; the control thread reads it to know that
    /// every worker has picked up a publication.
    pub(crate) generation: Gauge,
    /// 1 once this worker has stopped accepting for a shutdown.
    pub(crate) draining: Gauge,
}

impl Default for WorkerStats {
    fn default() -> Self {
        Self {
            downstream_cx_total: Counter::default(),
            downstream_cx_active: Gauge::default(),
            downstream_rq_total: Counter::default(),
            responses: std::array::from_fn(|_| Counter::default()),
            upstream_cx_reused: Counter::default(),
            tcp_no_route: Counter::default(),
            ssl_handshake: Counter::default(),
            ssl_session_reused: Counter::default(),
            ssl_connection_error: Counter::default(),
            ssl_no_route: Counter::default(),
            rbac_allowed: Counter::default(),
            rbac_denied: Counter::default(),
            tcp_rbac_allowed: Counter::default(),
            tcp_rbac_denied: Counter::default(),
            ratelimit: RateLimitCounters::default(),
            l4: L4Registry::default(),
            http_clusters: HttpClusterRegistry::default(),
            istio: IstioRegistry::default(),
            endpoints: EndpointRegistry::default(),
            generation: Gauge::default(),
            draining: Gauge::default(),
        }
    }
}

/// Envoy's ratelimit filter's counters (`ratelimit.ok`, `over_limit`, `error`,
/// `failure_mode_allowed`), and the errors that were timeouts.
#[derive(Debug, Default)]
pub struct RateLimitCounters {
    pub ok: Counter,
    pub over_limit: Counter,
    pub error: Counter,
    pub failure_mode_allowed: Counter,
    pub timeout: Counter,
}

impl WorkerStats {
    /// Counts one response sent downstream with `status`.
    #[inline]
    pub fn record_status(&self, status: u16) {
        let slot = usize::from(status);
        self.responses[if (100..STATUS_SLOTS).contains(&slot) { slot } else { 0 }].inc();
    }

    /// Counts what the AuthorizationPolicy stage's RBAC filters did to a request.
    #[inline]
    pub fn record_rbac(&self, rbac: RbacCount) {
        if rbac.allowed > 0 {
            self.rbac_allowed.add(u64::from(rbac.allowed));
        }
        if rbac.denied {
            self.rbac_denied.inc();
        }
    }

    /// Counts a TCP connection the AuthorizationPolicy stage judged.
    #[inline]
    pub fn record_tcp_rbac(&self, allowed: bool) {
        if allowed {
            self.tcp_rbac_allowed.inc();
        } else {
            self.tcp_rbac_denied.inc();
        }
    }
}

/// What one request did to Envoy's `http.rbac.*` counters: each RBAC filter istiod builds
/// (AUDIT, DENY, ALLOW, each when a policy of that action applies) counts `allowed` or
/// `denied` for every request it sees, and a denial ends the chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RbacCount {
    pub allowed: u8,
    pub denied: bool,
}

/// Control-thread counters; written only by the control thread.
#[derive(Debug, Default)]
pub struct ControlStats {
    pub reload_ok: Counter,
    pub reload_failed: Counter,
    /// Lookups of a `resolution: DNS` name (the first and each refresh) that got an answer,
    /// and those that failed (the last answer, if any, kept).
    pub dns_resolve_ok: Counter,
    pub dns_resolve_failed: Counter,
    /// Snapshots republished because a DNS answer changed.
    pub dns_updates: Counter,
}

/// The workers' counters summed at scrape time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub downstream_cx_total: u64,
    pub downstream_cx_active: i64,
    pub downstream_rq_total: u64,
    pub responses: Box<[u64; STATUS_SLOTS]>,
    pub upstream_cx_reused: u64,
    pub tcp_no_route: u64,
    pub ssl_handshake: u64,
    pub ssl_session_reused: u64,
    pub ssl_connection_error: u64,
    pub ssl_no_route: u64,
    pub rbac_allowed: u64,
    pub rbac_denied: u64,
    pub tcp_rbac_allowed: u64,
    pub tcp_rbac_denied: u64,
    /// `ratelimit.ok`, `over_limit`, `error`, `failure_mode_allowed`, and the timeouts.
    pub ratelimit: [u64; 5],
    pub l4: BTreeMap<L4Key, L4Totals>,
    pub http_clusters: BTreeMap<Arc<str>, HttpClusterTotals>,
    /// The config generation every worker serves: a published generation counts once the
    /// slowest worker has switched to it (0 before every worker has started).
    pub generation: i64,
}

impl Totals {
    pub fn sum(workers: &[Arc<WorkerStats>]) -> Self {
        let mut t = Totals {
            downstream_cx_total: 0,
            downstream_cx_active: 0,
            downstream_rq_total: 0,
            responses: Box::new([0; STATUS_SLOTS]),
            upstream_cx_reused: 0,
            tcp_no_route: 0,
            ssl_handshake: 0,
            ssl_session_reused: 0,
            ssl_connection_error: 0,
            ssl_no_route: 0,
            rbac_allowed: 0,
            rbac_denied: 0,
            tcp_rbac_allowed: 0,
            tcp_rbac_denied: 0,
            ratelimit: [0; 5],
            l4: l4::sum(workers.iter().map(|w| &w.l4)),
            http_clusters: http_cluster::sum(workers.iter().map(|w| &w.http_clusters)),
            generation: served_generation(workers),
        };
        for w in workers {
            t.downstream_cx_total += w.downstream_cx_total.get();
            t.downstream_cx_active += w.downstream_cx_active.get();
            t.downstream_rq_total += w.downstream_rq_total.get();
            for (sum, c) in t.responses.iter_mut().zip(&w.responses) {
                *sum += c.get();
            }
            t.upstream_cx_reused += w.upstream_cx_reused.get();
            t.tcp_no_route += w.tcp_no_route.get();
            t.ssl_handshake += w.ssl_handshake.get();
            t.ssl_session_reused += w.ssl_session_reused.get();
            t.ssl_connection_error += w.ssl_connection_error.get();
            t.ssl_no_route += w.ssl_no_route.get();
            t.rbac_allowed += w.rbac_allowed.get();
            t.rbac_denied += w.rbac_denied.get();
            t.tcp_rbac_allowed += w.tcp_rbac_allowed.get();
            t.tcp_rbac_denied += w.tcp_rbac_denied.get();
            let r = &w.ratelimit;
            for (sum, c) in
                t.ratelimit.iter_mut().zip([&r.ok, &r.over_limit, &r.error, &r.failure_mode_allowed, &r.timeout])
            {
                *sum += c.get();
            }
        }
        t
    }

    /// Responses of one class (`2` for 2xx, …).
    pub fn responses_in_class(&self, class: usize) -> u64 {
        self.responses[class * 100..(class + 1) * 100].iter().sum()
    }

    /// Share of HTTP upstream requests that went on an already-open connection: reused /
    /// (reused + opened). 0 before the first upstream request.
    pub fn upstream_reuse_ratio(&self) -> f64 {
        let opened: u64 = self.http_clusters.values().map(|c| c.cx_total).sum();
        let attempts = self.upstream_cx_reused + opened;
        if attempts == 0 {
            0.0
        } else {
            self.upstream_cx_reused as f64 / attempts as f64
        }
    }
}

/// The smallest generation any worker has applied.
pub fn served_generation(workers: &[Arc<WorkerStats>]) -> i64 {
    workers.iter().map(|w| w.generation.get()).min().unwrap_or(0)
}

#[cfg(test)]
mod tests;
