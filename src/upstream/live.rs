//! Live cluster state: circuit-breaker counts and outlier detection per endpoint, shared by
//! every worker. It outlives snapshots in a [`LiveRegistry`] keyed by cluster name and endpoint
//! address, and is resolved once per published snapshot into a [`LiveTable`] indexed like the
//! snapshot, so that a request reaches it without a lock or a lookup by name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

use super::outlier::{EjectionStats, HostHealth, Hosts, Observation, Usable};
use crate::snapshot::{Cluster, ClusterId, Snapshot};

/// A count shared by every worker, touched once when a connection (or a pending request)
/// starts and once when it ends, never per byte; per request served only for a cluster that
/// sets `http2MaxRequests`.
#[derive(Debug, Default)]
pub struct ConnectionCount(AtomicU32);

impl ConnectionCount {
    /// Takes a slot unless `max` are taken; the slot is given back when the guard drops.
    pub fn try_acquire(self: &Arc<Self>, max: u32) -> Option<ConnectionSlot> {
        self.0.fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1)).ok()?;
        Some(ConnectionSlot(self.clone()))
    }

    /// Whether a slot is free now (another worker may take it before this one does).
    pub fn has_room(&self, max: u32) -> bool {
        self.0.load(Relaxed) < max
    }

    /// Takes a slot even past the limit (Envoy's one connection per pool and host).
    pub fn acquire_over(self: &Arc<Self>) -> ConnectionSlot {
        self.0.fetch_add(1, Relaxed);
        ConnectionSlot(self.clone())
    }
}

/// One connection (or pending request) counted in a [`ConnectionCount`].
#[derive(Debug)]
pub struct ConnectionSlot(Arc<ConnectionCount>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Relaxed);
    }
}

/// One cluster's live state, the same on every worker and across reloads while the cluster
/// keeps its name.
#[derive(Debug, Default)]
pub struct LiveCluster {
    /// Open upstream connections of this cluster on every worker, for `maxConnections` (Envoy
    /// counts its circuit breakers per cluster, not per worker).
    pub connections: Arc<ConnectionCount>,
    /// HTTP requests waiting for an upstream connection because `maxConnections` are open, on
    /// every worker, for `http1MaxPendingRequests`.
    pub pending: Arc<ConnectionCount>,
    /// Retries in flight on every worker, for `maxRetries`.
    pub retries: Arc<ConnectionCount>,
    /// Requests under way on every worker, for `http2MaxRequests` (Envoy's `max_requests`),
    /// counted only while the limit is set.
    pub requests: Arc<ConnectionCount>,
    /// Outlier detection state per endpoint, at the index of the snapshot cluster's endpoint;
    /// an endpoint keeps its own across reloads by address, so an ejected one stays ejected.
    pub health: Hosts,
}

impl LiveCluster {
    /// State of its own for every endpoint of `cluster`, as a cluster new to the registry gets.
    #[cfg(test)]
    pub fn fresh(cluster: &Cluster) -> Self {
        Self { health: Hosts(cluster.endpoints.iter().map(|_| Arc::default()).collect()), ..Default::default() }
    }

    /// Records what a try at endpoint `i` came to (see [`Hosts::observe`]).
    pub fn observe(&self, cluster: &Cluster, i: usize, what: Observation) {
        self.health.observe(cluster, i, what);
    }

    /// Which endpoints the balancer may pick now.
    pub fn usable(&self, cluster: &Cluster) -> Usable {
        self.health.usable(cluster)
    }

    /// Envoy's `outlier_detection` stats of this cluster.
    pub fn ejection_stats(&self) -> EjectionStats {
        self.health.ejection_stats()
    }
}

/// The live state of one snapshot's clusters, by [`ClusterId`].
#[derive(Debug, Default)]
pub struct LiveTable {
    clusters: Vec<LiveCluster>,
}

impl LiveTable {
    pub fn cluster(&self, id: ClusterId) -> &LiveCluster {
        &self.clusters[id as usize]
    }

    /// In the snapshot's order, beside `Snapshot::clusters`.
    pub fn clusters(&self) -> &[LiveCluster] {
        &self.clusters
    }
}

/// What is published and what a request is served with: a snapshot and the live state of its
/// clusters. Derefs to the snapshot; the two travel together so that cluster ids always agree.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    pub snapshot: Arc<Snapshot>,
    pub live: Arc<LiveTable>,
}

impl Generation {
    /// `snapshot` with its clusters' live state from `registry` (see [`LiveRegistry::resolve`]).
    pub fn new(snapshot: Snapshot, registry: &mut LiveRegistry) -> Self {
        let live = Arc::new(registry.resolve(&snapshot));
        Self { snapshot: Arc::new(snapshot), live }
    }

    /// Cluster `id`'s config and live state.
    #[inline]
    pub fn cluster_live(&self, id: ClusterId) -> (&Cluster, &LiveCluster) {
        (self.snapshot.cluster(id), self.live.cluster(id))
    }
}

impl Deref for Generation {
    type Target = Snapshot;

    #[inline]
    fn deref(&self) -> &Snapshot {
        &self.snapshot
    }
}

/// Where live state outlives snapshots: by cluster name, then endpoint address. The control
/// thread owns it and resolves each snapshot it publishes, never the request path.
#[derive(Debug, Default)]
pub struct LiveRegistry {
    clusters: HashMap<Arc<str>, Kept>,
}

/// A cluster's state as the registry keeps it between snapshots.
#[derive(Debug, Default)]
struct Kept {
    connections: Arc<ConnectionCount>,
    pending: Arc<ConnectionCount>,
    retries: Arc<ConnectionCount>,
    requests: Arc<ConnectionCount>,
    hosts: HashMap<SocketAddr, Arc<HostHealth>>,
}

impl LiveRegistry {
    /// The live table of `snapshot`: a cluster (and an endpoint of it) that the last snapshot
    /// resolved also had keeps its state, so a reload neither forgets the connections still
    /// open nor lets a limit be exceeded, nor readmits an ejected endpoint; one that left the
    /// config loses its state, and one that comes back starts afresh.
    pub fn resolve(&mut self, snapshot: &Snapshot) -> LiveTable {
        let mut kept = HashMap::with_capacity(snapshot.clusters.len());
        let clusters = snapshot
            .clusters
            .iter()
            .map(|cluster| {
                let mut before = self.clusters.remove(&cluster.name).unwrap_or_default();
                let mut hosts = HashMap::with_capacity(cluster.endpoints.len());
                let health = Hosts(
                    cluster
                        .endpoints
                        .iter()
                        .map(|e| {
                            let host =
                                hosts.entry(e.addr).or_insert_with(|| before.hosts.remove(&e.addr).unwrap_or_default());
                            Arc::clone(host)
                        })
                        .collect(),
                );
                let live = LiveCluster {
                    connections: before.connections.clone(),
                    pending: before.pending.clone(),
                    retries: before.retries.clone(),
                    requests: before.requests.clone(),
                    health,
                };
                let Kept { connections, pending, retries, requests, .. } = before;
                kept.insert(cluster.name.clone(), Kept { connections, pending, retries, requests, hosts });
                live
            })
            .collect();
        self.clusters = kept;
        LiveTable { clusters }
    }
}

#[cfg(test)]
mod tests;
