//! Per-endpoint counters for `/clusters` (Envoy's `cx_active`, `cx_total`, `cx_connect_fail`,
//! `rq_active`, `rq_total`), kept per worker and summed when the page is read.
//!
//! A worker registers a cluster's endpoints once per snapshot generation and then updates the
//! counters it holds with single-writer stores.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::registry::Registry;
use super::{Counter, Gauge};

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

/// One worker's endpoint counters, by cluster name and address.
pub type EndpointRegistry = Registry<Key, EndpointCounters>;

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
    Registry::sum(registries, |t: &mut EndpointTotals, c| {
        t.cx_total += c.cx_total.get();
        t.cx_active += c.cx_active.get();
        t.cx_connect_fail += c.cx_connect_fail.get();
        t.rq_total += c.rq_total.get();
        t.rq_active += c.rq_active.get();
    })
}
