//! The listening sockets, owned by the control thread: one SO_REUSEPORT socket per worker per
//! port, bound here so that a bind failure is known in one place, before anything is swapped.
//!
//! SO_REUSEPORT would as gladly join the sockets of another process of the same user, which
//! then takes half the connections: a port this process does not hold yet is refused when
//! someone else listens there, unless sharing it is asked for (`--share-ports`, a hand-over).

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Weak};

use socket2::{Domain, Protocol, Socket, Type};
use tracing::info;

use super::reconcile::{self, Plan};
use crate::publish::PortSockets;
use crate::snapshot::Snapshot;

/// Backlog per socket: the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot listen on {addr}: another process already listens on port {}; \
         --share-ports shares it on purpose (a hand-over)",
        addr.port()
    )]
    Served { addr: SocketAddr },
}

impl BindError {
    pub fn addr(&self) -> SocketAddr {
        match self {
            BindError::Io { addr, .. } | BindError::Served { addr } => *addr,
        }
    }
}

#[derive(Debug)]
struct Bound {
    bind: IpAddr,
    sockets: PortSockets,
}

#[derive(Debug)]
pub struct Ports {
    workers: usize,
    /// Listen beside another process's sockets instead of refusing the port.
    share: bool,
    bound: BTreeMap<u16, Bound>,
    /// Socket groups a commit let go of, alive until the last worker drops its duplicates (it
    /// notices within its poll): until then a listener on that port may be our own.
    released: BTreeMap<u16, Weak<[TcpListener]>>,
}

/// The sockets for a snapshot, bound but not yet in use; [`Ports::commit`] makes them current.
#[derive(Debug)]
pub struct Prepared {
    plan: Plan,
    bound: BTreeMap<u16, Bound>,
}

impl Ports {
    pub fn new(workers: usize, share: bool) -> Self {
        Self { workers, share, bound: BTreeMap::new(), released: BTreeMap::new() }
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
            if !self.share && !self.holds(port) && listened_on(addr).map_err(|source| BindError::Io { addr, source })? {
                return Err(BindError::Served { addr });
            }
            let sockets = (0..self.workers)
                .map(|_| listen(addr))
                .collect::<io::Result<Vec<_>>>()
                .map_err(|source| BindError::Io { addr, source })?;
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
        let old = std::mem::replace(&mut self.bound, prepared.bound);
        self.released.retain(|_, group| group.strong_count() > 0);
        for (port, b) in old {
            if !self.bound.get(&port).is_some_and(|kept| Arc::ptr_eq(&kept.sockets, &b.sockets)) {
                self.released.insert(port, Arc::downgrade(&b.sockets));
            }
        }
    }

    /// Whether a listener on `port` may be this process's: a port served now (a new bind
    /// address binds beside it until the commit), or one whose released sockets some worker
    /// still accepts on.
    fn holds(&self, port: u16) -> bool {
        self.bound.contains_key(&port) || self.released.get(&port).is_some_and(|group| group.strong_count() > 0)
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

/// Whether a socket already listens on `addr`'s port at an overlapping address (the same one,
/// or a wildcard on either side), whoever's it is. A bind without SO_REUSEPORT conflicts with
/// every such listener, SO_REUSEPORT or not; SO_REUSEADDR lets it past the port's connections
/// in TIME_WAIT, which a previous instance may have left.
fn listened_on(addr: SocketAddr) -> io::Result<bool> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(true),
        Err(e) => Err(e),
    }
}
