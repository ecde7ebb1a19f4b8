//! Per-endpoint counters for `/clusters` (Envoy's `cx_active`, `cx_total`, `cx_connect_fail`,
//! `rq_active`, `rq_total`), kept per worker and summed when the page is read.
//!
//! A worker registers a cluster's endpoints once per snapshot generation (the only time it takes
//! the lock, shared only with a reader of `/clusters`) and then updates the counters it holds
//! with single-writer stores. Keys are the cluster's name and the endpoint's address, so counts
//! carry over a reload.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::metrics::{Counter, Gauge};

/// One endpoint's counters on one worker.
#[derive(Debug, Default)]
pub struct EndpointCounters {
    pub cx_total: Counter,
    pub cx_active: Gauge,
    pub cx_connect_fail: Counter,
    pub rq_total: Counter,
    pub rq_active: Gauge,
}

type Key = (Arc<str>, SocketAddr);

/// One worker's endpoint counters.
#[derive(Debug, Default)]
pub struct EndpointRegistry {
    by_endpoint: Mutex<BTreeMap<Key, Arc<EndpointCounters>>>,
}

impl EndpointRegistry {
    /// The counters of `addr` in `cluster`, created on first use.
    pub fn register(&self, cluster: &Arc<str>, addr: SocketAddr) -> Arc<EndpointCounters> {
        let mut map = self.by_endpoint.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((cluster.clone(), addr)).or_default().clone()
    }
}

/// An endpoint's counters summed over workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EndpointTotals {
    pub cx_total: u64,
    pub cx_active: i64,
    pub cx_connect_fail: u64,
    pub rq_total: u64,
    pub rq_active: i64,
}

/// Sums the workers' registries, by cluster name and endpoint address.
pub fn sum<'a>(registries: impl Iterator<Item = &'a EndpointRegistry>) -> BTreeMap<Key, EndpointTotals> {
    let mut totals: BTreeMap<Key, EndpointTotals> = BTreeMap::new();
    for registry in registries {
        let map = registry.by_endpoint.lock().unwrap_or_else(|e| e.into_inner());
        for (key, c) in map.iter() {
            let t = totals.entry(key.clone()).or_default();
            t.cx_total += c.cx_total.get();
            t.cx_active += c.cx_active.get();
            t.cx_connect_fail += c.cx_connect_fail.get();
            t.rq_total += c.rq_total.get();
            t.rq_active += c.rq_active.get();
        }
    }
    totals
}
