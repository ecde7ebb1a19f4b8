//! Per-core endpoint selection: round robin, random, least-request (power of two choices) and
//! consistent hashing.

use std::cell::RefCell;
use std::sync::Arc;

use super::hash::Table;
use crate::admin::{EndpointCounters, WorkerStats};
use crate::snapshot::{Cluster, ClusterId, LoadBalancer, Snapshot};

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
    /// The consistent-hash table, built on first use in this generation.
    table: Option<Table>,
    /// Per endpoint index, this worker's counters for `/clusters`.
    counters: Vec<Arc<EndpointCounters>>,
}

/// An endpoint picked for one request; hand it back with [`Balancer::release`].
#[derive(Debug)]
pub struct Pick {
    generation: u64,
    cluster: ClusterId,
    pub endpoint: usize,
    /// The endpoint's counters on this worker; they outlive a reload between pick and release.
    pub counters: Arc<EndpointCounters>,
}

impl Balancer {
    pub fn new(stats: Arc<WorkerStats>) -> Self {
        Self { state: RefCell::default(), stats }
    }

    /// Picks an endpoint of `cluster`, skipping the indexes in `tried` while others remain
    /// (retries go to a host not tried before). `draw` is a per-core random number; `hash` the
    /// request's affinity hash when the cluster hashes and the request carries the key.
    pub fn pick(&self, snap: &Snapshot, id: ClusterId, tried: &[usize], draw: u32, hash: Option<u64>) -> Option<Pick> {
        let cluster = snap.cluster(id);
        let n = cluster.endpoints.len();
        if n == 0 {
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
        let endpoint = match hash {
            _ if n == 1 => 0,
            Some(hash) => {
                let table = st.table.get_or_insert_with(|| Table::build(cluster).expect("a hashing cluster"));
                table.lookup(hash, |i| tried.len() < n && tried.contains(&i))
            }
            None => choose(cluster, st, tried, draw),
        };
        st.active[endpoint] += 1;
        let counters = st.counters[endpoint].clone();
        counters.rq_total.inc();
        counters.rq_active.inc();
        Some(Pick { generation: snap.generation, cluster: id, endpoint, counters })
    }

    /// The request on `pick` ended.
    pub fn release(&self, pick: Pick) {
        pick.counters.rq_active.dec();
        let mut state = self.state.borrow_mut();
        if state.generation == pick.generation {
            if let Some(active) =
                state.clusters.get_mut(pick.cluster as usize).and_then(|c| c.active.get_mut(pick.endpoint))
            {
                *active = active.saturating_sub(1);
            }
        }
    }
}

fn choose(cluster: &Cluster, st: &mut ClusterState, tried: &[usize], draw: u32) -> usize {
    let n = cluster.endpoints.len();
    let untried = |i: usize| tried.len() >= n || !tried.contains(&i);
    let mut next_rr = || loop {
        let i = st.cursor as usize % n;
        st.cursor = st.cursor.wrapping_add(1);
        if untried(i) {
            return i;
        }
    };
    match cluster.policy.load_balancer {
        LoadBalancer::Random => {
            let i = draw as usize % n;
            if untried(i) {
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
            if b != a && untried(b) && st.active[b] < st.active[a] {
                b
            } else {
                a
            }
        }
        // A hashing cluster gets here only for a request without the key: round robin.
        LoadBalancer::RoundRobin | LoadBalancer::Passthrough | LoadBalancer::ConsistentHash { .. } => next_rr(),
    }
}
