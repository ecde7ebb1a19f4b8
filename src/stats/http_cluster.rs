//! Envoy's per-cluster HTTP counters (`cluster.NAME.upstream_rq_total`, `upstream_rq_retry`,
//! `upstream_rq_200`, `upstream_cx_total`, …), kept per worker and summed when scraped.
//!
//! A worker finds a cluster's counters by name in a map of its own (`WorkerCtx::http_cluster`)
//! and a status code's counter in that cluster's short list: the registry's lock is taken only
//! the first time a worker meets a cluster or a code, after that a request only stores to
//! counters its worker alone writes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;

use super::registry::Registry;
use super::Counter;

/// One cluster's HTTP counters on one worker.
#[derive(Debug, Default)]
pub struct HttpClusterCounters {
    /// Upstream connections opened, and connects that failed or timed out.
    pub cx_total: Counter,
    pub cx_connect_fail: Counter,
    /// Requests sent upstream: every try, retries included.
    pub rq_total: Counter,
    /// Tries sent again under the route's retry policy.
    pub rq_retry: Counter,
    /// Requests whose body outgrew the copy kept for a retry, and so were not retried again.
    pub retry_or_shadow_abandoned: Counter,
    /// Answers by status code (see [`HttpCluster::record_status`]).
    codes: Registry<u16, Counter>,
}

/// One worker's HTTP counters by cluster name.
pub type HttpClusterRegistry = Registry<Arc<str>, HttpClusterCounters>;

/// A worker's hold on one cluster's counters, with the status counters it has met so far.
#[derive(Debug)]
pub struct HttpCluster {
    counters: Arc<HttpClusterCounters>,
    /// A handful per cluster, searched in order.
    codes: RefCell<Vec<(u16, Arc<Counter>)>>,
}

impl HttpCluster {
    pub fn new(counters: Arc<HttpClusterCounters>) -> Self {
        Self { counters, codes: RefCell::default() }
    }

    /// Counts an answer of the cluster: a status relayed from it, or the one the gateway gave
    /// for a try that failed (503 for a reset or a connect failure, 504 for a timeout), as
    /// Envoy's router charges both to `upstream_rq_<code>`.
    pub fn record_status(&self, status: u16) {
        let mut codes = self.codes.borrow_mut();
        if let Some((_, counter)) = codes.iter().find(|(code, _)| *code == status) {
            return counter.inc();
        }
        let counter = self.counters.codes.register(status);
        counter.inc();
        codes.push((status, counter));
    }
}

impl Deref for HttpCluster {
    type Target = HttpClusterCounters;

    fn deref(&self) -> &HttpClusterCounters {
        &self.counters
    }
}

/// A cluster's HTTP counters summed over workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpClusterTotals {
    pub cx_total: u64,
    pub cx_connect_fail: u64,
    pub rq_total: u64,
    pub rq_retry: u64,
    pub retry_or_shadow_abandoned: u64,
    /// Answers by status code, only the codes seen.
    pub codes: BTreeMap<u16, u64>,
}

impl HttpClusterTotals {
    /// Answers of one class (`2` for 2xx, …).
    pub fn in_class(&self, class: u16) -> u64 {
        self.codes.range(class * 100..(class + 1) * 100).map(|(_, n)| n).sum()
    }
}

/// Every worker's registry summed by cluster name.
pub fn sum<'a>(registries: impl Iterator<Item = &'a HttpClusterRegistry>) -> BTreeMap<Arc<str>, HttpClusterTotals> {
    Registry::sum(registries, |t: &mut HttpClusterTotals, c| {
        t.cx_total += c.cx_total.get();
        t.cx_connect_fail += c.cx_connect_fail.get();
        t.rq_total += c.rq_total.get();
        t.rq_retry += c.rq_retry.get();
        t.retry_or_shadow_abandoned += c.retry_or_shadow_abandoned.get();
        for (code, n) in Registry::sum(std::iter::once(&c.codes), |n: &mut u64, c: &Counter| *n += c.get()) {
            *t.codes.entry(code).or_default() += n;
        }
    })
}

#[cfg(test)]
mod tests;
