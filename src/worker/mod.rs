//! The workers: one OS thread per core, each pinned and running its own monoio runtime, with
//! its own accept loops, connections, upstream pools and counters. Nothing on a worker's
//! request path touches another core's memory.

mod accept;
pub mod driver;
mod follow;
mod proxy_protocol;

use std::io;
use std::rc::Rc;
use std::sync::{mpsc, Arc};

use tracing::{debug, info, warn};

pub use driver::{Driver, DriverChoice, UringUnavailable};

use crate::limits::ClientLimits;
use crate::percore::access_log::Encoding;
use crate::percore::jwt::JwtCore;
use crate::percore::WorkerCtx;
use crate::publish::Shared;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    pub workers: usize,
    pub driver: DriverChoice,
    /// `--access-log`, with its encoding.
    pub access_log: Option<Encoding>,
    /// `--mirror-shadow-suffix`: mirrored requests carry `HOST-shadow`, as Istio ≤ 1.27 sent.
    pub mirror_shadow_suffix: bool,
    /// Head sizes, client timeouts and connections per worker.
    pub limits: ClientLimits,
    /// `--redis`: where the global rate limits count.
    pub redis: Option<crate::upstream::redis::RedisTarget>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Uring(#[from] UringUnavailable),
    #[error("worker {id}: cannot build its runtime: {source}")]
    Runtime {
        id: usize,
        #[source]
        source: io::Error,
    },
    #[error("cannot start a worker thread: {0}")]
    Thread(#[source] io::Error),
}

/// The number of CPUs this process may run on (affinity mask and cgroup quota).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Starts `opts.workers` threads, worker i pinned to the i-th CPU this process may use. Returns
/// once every worker has built its runtime, so a failure stops `strait run` before serving.
pub fn spawn(shared: &Arc<Shared>, opts: &WorkerOptions) -> Result<(), StartError> {
    let driver = driver::resolve(opts.driver)?;
    raise_descriptor_limit();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.is_empty() {
        warn!("cannot list the CPUs this process may use: workers are not pinned");
    } else if opts.workers > cores.len() {
        warn!("{} workers on {} CPUs: some workers share a core", opts.workers, cores.len());
    }
    let (started_tx, started) = mpsc::channel();
    for id in 0..opts.workers {
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let (shared, started_tx, choice, opts) = (shared.clone(), started_tx.clone(), opts.driver, opts.clone());
        let thread = std::thread::Builder::new().name(format!("strait-worker-{id}")).spawn(move || {
            if let Some(core) = core {
                if !core_affinity::set_for_current(core) {
                    warn!("worker {id}: cannot pin to CPU {}", core.id);
                }
            }
            let (mut rt, used) = match driver::build(driver, choice) {
                Ok(built) => built,
                Err(source) => {
                    let _ = started_tx.send(Err(StartError::Runtime { id, source }));
                    return;
                }
            };
            let _ = started_tx.send(Ok(used));
            drop(started_tx);
            rt.block_on(async move {
                let stats = shared.workers[id].clone();
                let mut ctx = WorkerCtx::new(
                    id,
                    shared.snapshot(),
                    stats,
                    opts.access_log,
                    opts.mirror_shadow_suffix,
                    opts.limits,
                );
                ctx.jwt = JwtCore::new(shared.events());
                ctx.redis = opts.redis.map(crate::upstream::redis::Redis::start);
                let ctx = Rc::new(ctx);
                follow::follow(ctx, shared).await;
            });
        });
        thread.map_err(StartError::Thread)?;
    }
    drop(started_tx);
    let mut used = Vec::with_capacity(opts.workers);
    for outcome in started.iter().take(opts.workers) {
        used.push(outcome?);
    }
    log_drivers(&used);
    shared.set_drivers(used);
    Ok(())
}

/// A gateway's connections are its descriptors (a proxied TCP stream holds two sockets and
/// two pipes): take the hard limit, as nginx's `worker_rlimit_nofile` lets one do, instead of
/// the 1,024 a shell often hands down.
fn raise_descriptor_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => debug!("descriptor limit: {limit}"),
        Err(e) => warn!("cannot raise the descriptor limit: {e}"),
    }
}

fn log_drivers(used: &[Driver]) {
    let uring = used.iter().filter(|&&d| d == Driver::IoUring).count();
    match (uring, used.len() - uring) {
        (_, 0) => info!("driver: {}", Driver::IoUring),
        (0, _) => info!("driver: {}", Driver::Legacy),
        (uring, legacy) => info!("driver: {} on {uring} workers, {} on {legacy}", Driver::IoUring, Driver::Legacy),
    }
}
