//! Per-core endpoint selection: round robin, random, least-request (power of two choices) and
//! consistent hashing.

use std::cell::RefCell;
use std::sync::Arc;

use super::{Generation, LiveCluster, Observation, Usable};
use crate::snapshot::{Cluster, ClusterId, LoadBalancer};
use crate::stats::{EndpointCounters, WorkerStats};

/// Per-cluster cursors and in-flight counts of one worker, valid for one snapshot generation
/// (cluster ids are only meaningful within a snapshot, so a reload starts them afresh).
pub struct Balancer {
    state: RefCell<State>,
    /// Where each endpoint's counters are registered, once per generation.
    stats: Arc<WorkerStats>,
}

#[derive(Default)]
struct State {
    generation: u64,
    clusters: Vec<ClusterState>,
}

#[derive(Default, Clone)]
struct ClusterState {
    cursor: u32,
    /// In-flight requests per endpoint index, on this worker.
    active: Vec<u32>,
    /// Per endpoint index, this worker's counters for `/clusters`.
    counters: Vec<Arc<EndpointCounters>>,
}

/// An endpoint picked for one request (or TCP connection), in use until dropped. Settle it
/// with what the try came to; dropped unsettled, the try was cut short by the route's
/// timeout, which outlier detection counts as a timeout.
pub struct Pick<'a> {
    balancer: &'a Balancer,
    cluster: &'a Cluster,
    live: &'a LiveCluster,
    generation: u64,
    id: ClusterId,
    pub endpoint: usize,
    /// The endpoint's counters on this worker; they outlive a reload between pick and drop.
    pub counters: Arc<EndpointCounters>,
    settled: bool,
}

impl Pick<'_> {
    /// Tells outlier detection what the try came to (`None`: nothing about the upstream).
    pub fn settle(&mut self, what: Option<Observation>) {
        self.settled = true;
        if let Some(what) = what {
            self.live.observe(self.cluster, self.endpoint, what);
        }
    }
}

impl Drop for Pick<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.live.observe(self.cluster, self.endpoint, Observation::Timeout);
        }
        self.balancer.release(self);
    }
}

impl Balancer {
    pub fn new(stats: Arc<WorkerStats>) -> Self {
        Self { state: RefCell::default(), stats }
    }

    /// Picks an endpoint of `cluster` that outlier detection has not ejected (any, in panic
    /// mode), skipping the indexes in `tried` while others remain (retries go to a host not
    /// tried before). `draw` is a per-core random number; `hash` the request's affinity hash
    /// when the cluster hashes and the request carries the key. `None`: no healthy endpoint.
    pub fn pick<'a>(
        &'a self,
        snap: &'a Generation,
        id: ClusterId,
        tried: &[usize],
        draw: u32,
        hash: Option<u64>,
    ) -> Option<Pick<'a>> {
        let (cluster, live) = snap.cluster_live(id);
        let n = cluster.endpoints.len();
        let usable = live.usable(cluster);
        if n == 0 || usable == Usable::None {
            return None;
        }
        let mut state = self.state.borrow_mut();
        if state.generation != snap.generation || state.clusters.len() != snap.clusters.len() {
            state.generation = snap.generation;
            state.clusters = snap
                .clusters
                .iter()
                .map(|c| ClusterState {
                    active: vec![0; c.endpoints.len()],
                    counters: c
                        .endpoints
                        .iter()
                        .map(|e| self.stats.endpoints.register((c.name.clone(), e.addr)))
                        .collect(),
                    ..Default::default()
                })
                .collect();
        }
        let st = &mut state.clusters[id as usize];
        // Retries avoid the endpoints tried already, unless no other is left.
        let fresh = (0..n).any(|i| usable.allows(&live.health, i) && !tried.contains(&i));
        let eligible = |i: usize| usable.allows(&live.health, i) && !(fresh && tried.contains(&i));
        let endpoint = match (hash, &cluster.hash_table) {
            _ if n == 1 => 0,
            (Some(hash), Some(table)) => table.lookup(hash, |i| !eligible(i)),
            _ => choose(cluster, st, eligible, draw),
        };
        st.active[endpoint] += 1;
        let counters = st.counters[endpoint].clone();
        counters.rq_total.inc();
        counters.rq_active.inc();
        Some(Pick {
            balancer: self,
            cluster,
            live,
            generation: snap.generation,
            id,
            endpoint,
            counters,
            settled: false,
        })
    }

    /// The request on `pick` ended.
    fn release(&self, pick: &Pick) {
        pick.counters.rq_active.dec();
        let mut state = self.state.borrow_mut();
        if state.generation == pick.generation {
            if let Some(active) = state.clusters.get_mut(pick.id as usize).and_then(|c| c.active.get_mut(pick.endpoint))
            {
                *active = active.saturating_sub(1);
            }
        }
    }
}

/// One of the `eligible` endpoints (there is at least one) by the cluster's load balancer.
fn choose(cluster: &Cluster, st: &mut ClusterState, eligible: impl Fn(usize) -> bool, draw: u32) -> usize {
    let n = cluster.endpoints.len();
    let mut next_rr = || loop {
        let i = st.cursor as usize % n;
        st.cursor = st.cursor.wrapping_add(1);
        if eligible(i) {
            return i;
        }
    };
    match cluster.policy.load_balancer {
        LoadBalancer::Random => {
            let i = draw as usize % n;
            if eligible(i) {
                i
            } else {
                next_rr()
            }
        }
        // Power of two choices with the round-robin candidate first: with equal load (e.g.
        // sequential requests) it degrades to plain round robin rather than to random.
        LoadBalancer::LeastRequest => {
            let a = next_rr();
            let b = draw as usize % n;
            if b != a && eligible(b) && st.active[b] < st.active[a] {
                b
            } else {
                a
            }
        }
        // A hashing cluster gets here only for a request without the key: round robin.
        LoadBalancer::RoundRobin | LoadBalancer::Passthrough | LoadBalancer::ConsistentHash { .. } => next_rr(),
    }
}
