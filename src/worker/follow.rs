//! A worker following the control thread's publications: it polls the shared pointer (one
//! uncontended load every 50 ms, never on the request path), and on a new publication swaps its
//! local snapshot and starts or stops accept loops to match.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::Canceller;
use monoio::task::JoinHandle;
use tracing::{debug, error};

use super::accept::accept_loop;
use crate::percore::WorkerCtx;
use crate::publish::{PortSockets, Published, Shared};

/// How soon a worker notices a reload or a shutdown.
const POLL: Duration = Duration::from_millis(50);
/// How often idle upstream connections are checked for a close by the upstream: one syscall
/// per idle connection, so not on every poll.
const SWEEP: Duration = Duration::from_secs(1);

/// A running accept loop and what stops it.
struct Acceptor {
    /// The socket group it was started for: a rebind publishes a new group for the same port.
    sockets: PortSockets,
    stop: Canceller,
    done: JoinHandle<()>,
}

/// Runs for the life of the worker: connection tasks live on this runtime, so it must not end.
pub async fn follow(ctx: Rc<WorkerCtx>, shared: Arc<Shared>) {
    let mut acceptors: BTreeMap<u16, Acceptor> = BTreeMap::new();
    let mut current: Option<Arc<Published>> = None;
    let mut swept = Instant::now();
    loop {
        let latest = shared.published.load();
        if !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &latest)) {
            let published = arc_swap::Guard::into_inner(latest);
            apply(&ctx, &published, &mut acceptors).await;
            current = Some(published);
        } else {
            // Never across the sleep: arc-swap lends each thread only a few guard slots.
            drop(latest);
        }
        if let Some(log) = &ctx.access_log {
            log.flush();
        }
        if swept.elapsed() >= SWEEP {
            ctx.upstream.pools.sweep();
            ctx.upstream.mux.sweep();
            swept = Instant::now();
        }
        monoio::time::sleep(POLL).await;
    }
}

async fn apply(ctx: &Rc<WorkerCtx>, p: &Published, acceptors: &mut BTreeMap<u16, Acceptor>) {
    ctx.set_snapshot(p.snapshot.clone());
    if p.draining {
        ctx.start_draining();
    }
    let (kept, stale): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(acceptors)
        .into_iter()
        .partition(|(port, a)| p.sockets.get(port).is_some_and(|s| Arc::ptr_eq(s, &a.sockets)));
    *acceptors = kept;
    for (port, a) in stale {
        a.stop.cancel();
        // The loop drops its socket as it returns; established connections are separate tasks
        // and keep running.
        a.done.await;
        debug!("worker {}: stopped accepting on port {port}", ctx.id);
    }
    for (&port, sockets) in &p.sockets {
        if acceptors.contains_key(&port) {
            continue;
        }
        match start(ctx, port, sockets) {
            Ok(a) => {
                acceptors.insert(port, a);
            }
            Err(e) => error!("worker {}: cannot accept on port {port}: {e}", ctx.id),
        }
    }
    ctx.stats.generation.set(p.snapshot.generation as i64);
    if p.draining {
        ctx.stats.draining.set(1);
    }
}

fn start(ctx: &Rc<WorkerCtx>, port: u16, sockets: &PortSockets) -> std::io::Result<Acceptor> {
    // A duplicate of the control thread's socket: the same kernel socket and queue, closed for
    // good only when every duplicate is.
    let listener = monoio::net::TcpListener::from_std(sockets[ctx.id].try_clone()?)?;
    let stop = Canceller::new();
    let done = monoio::spawn(accept_loop(listener, port, stop.handle(), ctx.clone()));
    Ok(Acceptor { sockets: sockets.clone(), stop, done })
}
