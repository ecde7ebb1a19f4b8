//! The listening sockets, owned by the control thread: one SO_REUSEPORT socket per worker per
//! port, bound here so that a bind failure is known in one place, before anything is swapped.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::info;

use super::reconcile::{self, Plan};
use crate::snapshot::Snapshot;

/// Backlog per socket: the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// The sockets of one port, index = worker id.
pub type PortSockets = Arc<[TcpListener]>;

#[derive(Debug)]
struct Bound {
    bind: IpAddr,
    sockets: PortSockets,
}

#[derive(Debug)]
pub struct Ports {
    workers: usize,
    bound: BTreeMap<u16, Bound>,
}

/// The sockets for a snapshot, bound but not yet in use; [`Ports::commit`] makes them current.
#[derive(Debug)]
pub struct Prepared {
    plan: Plan,
    bound: BTreeMap<u16, Bound>,
}

impl Ports {
    pub fn new(workers: usize) -> Self {
        Self { workers, bound: BTreeMap::new() }
    }

    /// Binds the ports `snapshot` adds and keeps the sockets of unchanged ones. Nothing changes
    /// until `commit`: on error the new sockets are dropped and the current ones serve on.
    pub fn prepare(&self, snapshot: &Snapshot) -> Result<Prepared, BindError> {
        let current = self.bound.iter().map(|(&port, b)| (port, b.bind)).collect();
        let plan = reconcile::plan(&current, &reconcile::served(snapshot));
        let mut bound = BTreeMap::new();
        for &port in &plan.keep {
            let b = &self.bound[&port];
            bound.insert(port, Bound { bind: b.bind, sockets: b.sockets.clone() });
        }
        for &(port, bind) in &plan.open {
            let addr = SocketAddr::new(bind, port);
            let sockets = (0..self.workers)
                .map(|_| listen(addr))
                .collect::<io::Result<Vec<_>>>()
                .map_err(|source| BindError { addr, source })?;
            bound.insert(port, Bound { bind, sockets: sockets.into() });
        }
        Ok(Prepared { plan, bound })
    }

    /// Makes `prepared` current; sockets of closed ports are released here and by the workers.
    pub fn commit(&mut self, prepared: Prepared) {
        for (port, bind) in &prepared.plan.open {
            info!("listening on {}", SocketAddr::new(*bind, *port));
        }
        for port in &prepared.plan.close {
            if !prepared.bound.contains_key(port) {
                info!("closing port {port}");
            }
        }
        self.bound = prepared.bound;
    }

    /// Releases every socket (shutdown); workers close their duplicates as they stop.
    pub fn close_all(&mut self) {
        self.bound.clear();
    }

    /// What workers are handed: port → one socket per worker.
    pub fn sockets(&self) -> BTreeMap<u16, PortSockets> {
        self.bound.iter().map(|(&port, b)| (port, b.sockets.clone())).collect()
    }
}

/// One listening socket of a SO_REUSEPORT group: the kernel spreads connections over the
/// workers' sockets, so no worker ever accepts for another.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
