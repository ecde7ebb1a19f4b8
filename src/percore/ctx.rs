//! Per-worker state handed to every connection on that worker: never shared across cores.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use monoio::io::{CancelHandle, Canceller};

use rustc_hash::FxHashMap;

use super::access_log::{Encoding, Sink};
use super::jwt::JwtCore;
use super::tls::CoreConfigs;
use crate::limits::ClientLimits;
use crate::snapshot::Cluster;
use crate::stats::{
    HttpCluster, IstioDestination, L4Counters, L4Kind, MessageSeries, Outcome, Protocol, RequestSeries, SeriesKey,
    WorkerStats,
};
use crate::upstream::{Generation, Upstream};

/// The downstream connection as accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The socket's peer (Envoy's direct remote address): what `ipBlocks` match.
    pub peer: SocketAddr,
    /// The client the connection speaks for: the PROXY header's source where one was read
    /// (Envoy's restored remote address), else `peer`. Appended to `x-forwarded-for`.
    pub client: SocketAddr,
    /// The gateway's address: the PROXY header's destination where one was read, as Envoy
    /// restores it.
    pub local: SocketAddr,
    /// The gateway port the connection came in on.
    pub listener_port: u16,
}

pub struct WorkerCtx {
    pub id: usize,
    /// `Rc` around the generation's `Arc`s: a request clones the `Rc` (a plain increment on
    /// this core), never an `Arc` (an atomic on a line every core reads).
    snapshot: RefCell<Rc<Generation>>,
    pub stats: Arc<WorkerStats>,
    pub upstream: Upstream,
    /// `--access-log`: this worker's side of the access log.
    pub access_log: Option<Sink>,
    /// Mirrored requests carry `HOST-shadow` (`--mirror-shadow-suffix`).
    pub mirror_shadow_suffix: bool,
    pub limits: ClientLimits,
    /// This worker's copies of the snapshot's TLS configs.
    pub tls: CoreConfigs,
    /// The tokens this worker verified, and its asks for key sets.
    pub jwt: JwtCore,
    /// This core's Redis connection for the global rate limits (`--redis`).
    pub redis: Option<crate::upstream::redis::Redis>,
    /// This worker's TCP route and cluster counters (one map per [`L4Kind`]), looked up by name
    /// without the registry's lock once seen.
    l4: RefCell<[FxHashMap<Arc<str>, Arc<L4Counters>>; 2]>,
    /// This worker's HTTP cluster counters, likewise.
    http_clusters: RefCell<FxHashMap<Arc<str>, Rc<HttpCluster>>>,
    /// This worker's Istio series by cluster name (`""`: answered by the gateway).
    istio: RefCell<FxHashMap<Arc<str>, IstioSeries>>,
    draining: Cell<bool>,
    /// Cancelled when draining starts; see [`WorkerCtx::drain_handle`].
    drain: RefCell<Option<Canceller>>,
    drain_handle: CancelHandle,
    rng: Cell<u64>,
}

impl WorkerCtx {
    /// `access_log`, `mirror_shadow_suffix` and `limits` are the command line's.
    pub fn new(
        id: usize,
        snapshot: Generation,
        stats: Arc<WorkerStats>,
        access_log: Option<Encoding>,
        mirror_shadow_suffix: bool,
        limits: ClientLimits,
    ) -> Self {
        let drain = Canceller::new();
        let drain_handle = drain.handle();
        Self {
            id,
            snapshot: RefCell::new(Rc::new(snapshot)),
            upstream: Upstream::new(stats.clone()),
            stats,
            access_log: access_log.map(Sink::new),
            mirror_shadow_suffix,
            limits,
            tls: CoreConfigs::default(),
            jwt: JwtCore::new(None),
            redis: None,
            l4: RefCell::default(),
            http_clusters: RefCell::default(),
            istio: RefCell::default(),
            draining: Cell::new(false),
            drain: RefCell::new(Some(drain)),
            drain_handle,
            rng: Cell::new(seed(id)),
        }
    }

    /// The snapshot to serve a request with; hold it for the whole request so a reload in the
    /// middle never mixes two configs.
    #[inline]
    pub fn snapshot(&self) -> Rc<Generation> {
        self.snapshot.borrow().clone()
    }

    /// The gateway is shutting down: answer the request in flight with `connection: close`
    /// and take no further request on the connection.
    #[inline]
    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    /// For reads that wait for the *next* request on a keep-alive connection (a
    /// [`super::ClientTcp`] raises its idle flag for them): they fail with `ECANCELED` when
    /// draining starts, so idle connections close at once instead of holding the drain open.
    pub fn drain_handle(&self) -> CancelHandle {
        self.drain_handle.clone()
    }

    /// A uniformly distributed number from this core's xorshift64 generator.
    #[inline]
    pub fn random(&self) -> u32 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        (x >> 32) as u32
    }

    /// The counters of TCP route or cluster `name` on this worker.
    pub fn l4_counters(&self, kind: L4Kind, name: &Arc<str>) -> Arc<L4Counters> {
        // Looked up by `&str`: cloning the snapshot's name would touch a count every core shares.
        let cache = &mut self.l4.borrow_mut()[kind as usize];
        if let Some(c) = cache.get(&**name) {
            return c.clone();
        }
        let c = self.stats.l4.register((kind, name.clone()));
        cache.insert(name.clone(), c.clone());
        c
    }

    /// The HTTP counters of cluster `name` on this worker; an `Rc`, so a request holds them
    /// with a plain increment.
    pub fn http_cluster(&self, name: &Arc<str>) -> Rc<HttpCluster> {
        let mut cache = self.http_clusters.borrow_mut();
        // Looked up by `&str`, as for the TCP counters.
        if let Some(c) = cache.get(&**name) {
            return c.clone();
        }
        let c = Rc::new(HttpCluster::new(self.stats.http_clusters.register(name.clone())));
        cache.insert(name.clone(), c.clone());
        c
    }

    /// Runs `f` on this worker's Istio series for a request to `cluster` (`None`: the gateway
    /// answered itself) that ended as `outcome`, and, for a gRPC request, on the cluster's
    /// message series.
    pub fn with_istio_series(
        &self,
        cluster: Option<&Cluster>,
        outcome: Outcome,
        f: impl FnOnce(&RequestSeries, Option<&MessageSeries>),
    ) {
        let mut cache = self.istio.borrow_mut();
        // Only a first sighting clones the snapshot's shared name (or allocates `""`).
        let owned_name = || cluster.map_or_else(|| Arc::from(""), |c| c.name.clone());
        // Looked up by `&str`, as for the TCP counters.
        let series = match cache.get_mut(cluster.map_or("", |c| &c.name)) {
            Some(series) => series,
            None => cache.entry(owned_name()).or_default(),
        };
        let grpc = matches!(outcome.protocol, Protocol::Grpc(_));
        if grpc && series.messages.is_none() {
            series.messages = Some(self.stats.istio.register_messages(owned_name(), IstioDestination::of(cluster)));
        }
        let i = match series.by_outcome.iter().position(|(k, _)| *k == outcome) {
            Some(i) => i,
            None => {
                let key = SeriesKey { cluster: owned_name(), outcome };
                series.by_outcome.push((outcome, self.stats.istio.register(key, IstioDestination::of(cluster))));
                series.by_outcome.len() - 1
            }
        };
        let messages = series.messages.as_deref().filter(|_| grpc);
        f(&series.by_outcome[i].1, messages);
    }

    pub(crate) fn set_snapshot(&self, snapshot: Generation) {
        *self.snapshot.borrow_mut() = Rc::new(snapshot);
        self.tls.clear();
    }

    pub(crate) fn start_draining(&self) {
        self.draining.set(true);
        if let Some(drain) = self.drain.borrow_mut().take() {
            drain.cancel();
        }
    }
}

/// A cluster's series on one worker.
#[derive(Default)]
struct IstioSeries {
    /// By outcome: a handful, searched in order.
    by_outcome: Vec<(Outcome, Arc<RequestSeries>)>,
    /// Once a gRPC request went to the cluster.
    messages: Option<Arc<MessageSeries>>,
}

/// Distinct per worker and per run; never 0 (xorshift would stay at 0).
fn seed(id: usize) -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1
}
