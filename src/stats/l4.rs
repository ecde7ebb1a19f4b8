//! Counters of proxied TCP connections, per route and per cluster, kept per worker.
//!
//! A worker registers a route or cluster the first time it carries a connection for it and then
//! updates the counters it holds with single-writer stores, like every other worker counter.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::registry::Registry;
use super::{Counter, Gauge};

/// What a set of counters describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4Kind {
    /// A VirtualService `tcp` route, Envoy's tcp_proxy stat prefix.
    Route,
    /// An upstream cluster.
    Cluster,
}

/// One route's or cluster's counters on one worker. "rx" is what this side received: from the
/// client for a route, from the upstream for a cluster.
#[derive(Debug, Default)]
pub struct L4Counters {
    pub cx_total: Counter,
    pub cx_active: Gauge,
    pub rx_bytes: Counter,
    pub tx_bytes: Counter,
    /// Clusters: connects that failed or timed out.
    pub connect_fail: Counter,
    /// Clusters: connections refused by `maxConnections`.
    pub overflow: Counter,
    /// Routes: connections closed by the idle timeout.
    pub idle_timeout: Counter,
}

/// A route or cluster: its kind and name.
pub type L4Key = (L4Kind, Arc<str>);

/// One worker's counters by route and cluster name.
pub type L4Registry = Registry<L4Key, L4Counters>;

/// [`L4Counters`] summed over workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L4Totals {
    pub cx_total: u64,
    pub cx_active: i64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub connect_fail: u64,
    pub overflow: u64,
    pub idle_timeout: u64,
}

/// Every worker's registry summed by kind and name.
pub fn sum<'a>(registries: impl Iterator<Item = &'a L4Registry>) -> BTreeMap<L4Key, L4Totals> {
    Registry::sum(registries, |t: &mut L4Totals, c| {
        t.cx_total += c.cx_total.get();
        t.cx_active += c.cx_active.get();
        t.rx_bytes += c.rx_bytes.get();
        t.tx_bytes += c.tx_bytes.get();
        t.connect_fail += c.connect_fail.get();
        t.overflow += c.overflow.get();
        t.idle_timeout += c.idle_timeout.get();
    })
}
