//! The upstream side: endpoint selection and keep-alive connection pools, per core, and the
//! live cluster state (breaker counts, outlier detection) every core shares.

use std::sync::Arc;

use crate::stats::WorkerStats;

mod balancer;
mod connect;
pub mod keepalive;
mod live;
mod multiplex;
mod outlier;
mod pool;
pub mod redis;
mod stream;

pub use balancer::{Balancer, Pick};
pub use connect::{connect, ConnectError};
pub use live::{ConnectionSlot, Generation, LiveCluster, LiveRegistry, LiveTable};
pub use multiplex::{MuxPools, MuxState, MuxStream, Opening, Waiting};
pub use outlier::{clock_ms, EjectionStats, HostHealth, Observation, Usable};
pub use pool::{PoolKey, Pools, UpstreamConn, UPSTREAM_BUF};
pub use stream::UpstreamStream;

/// Idle connections kept per endpoint and worker. Enough for keep-alive benchmarks at a few
/// hundred client connections per core; beyond it connections are closed after use.
pub const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// A worker's upstream state; lives in its `WorkerCtx`, never shared across cores.
pub struct Upstream {
    pub pools: Pools,
    /// HTTP/2 connections, each carrying many streams.
    pub mux: MuxPools,
    pub balancer: Balancer,
}

impl Upstream {
    /// Counts each endpoint's requests and connections in `stats` (see `/clusters`).
    pub fn new(stats: Arc<WorkerStats>) -> Self {
        Self { pools: Pools::new(MAX_IDLE_PER_ENDPOINT), mux: MuxPools::default(), balancer: Balancer::new(stats) }
    }
}
