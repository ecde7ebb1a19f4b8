//! Per-core pools of multiplexed (HTTP/2) upstream connections: a connection carries new
//! streams while it has room under the cluster's `maxConcurrentStreams` and the server's
//! SETTINGS_MAX_CONCURRENT_STREAMS, and until `maxRequestsPerConnection`; one that closed
//! (GOAWAY, error, idle timeout) leaves its pool. The connection itself is driven by a task on
//! this core, which ends it as it idles out (see `http/exchange/h2.rs`).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use h2::client::SendRequest;
use rustc_hash::FxHashMap;

use super::PoolKey;

/// What a connection's streams and its driver task share.
#[derive(Debug)]
pub struct MuxState {
    /// Streams under way.
    pub active: Cell<u32>,
    /// Streams it has carried, for `maxRequestsPerConnection`.
    pub requests: Cell<u32>,
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS as the driver last saw it.
    pub server_max: Cell<u32>,
    /// When its last stream ended, for the idle timeout.
    pub idle_since: Cell<Instant>,
    /// The connection ended (or is ending): no new stream goes on it.
    pub closed: Cell<bool>,
    /// Our side's address, for the access log.
    pub local: Option<SocketAddr>,
}

impl MuxState {
    pub fn new(local: Option<SocketAddr>) -> Rc<Self> {
        Rc::new(Self {
            active: Cell::new(0),
            requests: Cell::new(0),
            server_max: Cell::new(u32::MAX),
            idle_since: Cell::new(Instant::now()),
            closed: Cell::new(false),
            local,
        })
    }

    /// Whether it may take another stream under these limits (`max_requests` 0: no quota).
    fn has_room(&self, max_streams: u32, max_requests: u32) -> bool {
        !self.closed.get()
            && self.active.get() < max_streams.min(self.server_max.get())
            && (max_requests == 0 || self.requests.get() < max_requests)
    }

    /// Whether its quota of requests is spent: it takes no new stream and closes once idle.
    pub fn spent(&self, max_requests: u32) -> bool {
        max_requests != 0 && self.requests.get() >= max_requests
    }
}

/// One pooled connection: the handle new streams are opened with.
struct Pooled {
    send: SendRequest<Bytes>,
    state: Rc<MuxState>,
}

/// One stream's hold on its connection: counted in its `active` streams until dropped.
pub struct MuxStream {
    pub send: SendRequest<Bytes>,
    pub state: Rc<MuxState>,
}

impl MuxStream {
    /// Opens a stream's hold on a connection, counting it as under way and as a request.
    pub fn new(send: SendRequest<Bytes>, state: Rc<MuxState>) -> Self {
        state.active.set(state.active.get() + 1);
        state.requests.set(state.requests.get() + 1);
        Self { send, state }
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        let active = self.state.active.get() - 1;
        self.state.active.set(active);
        if active == 0 {
            self.state.idle_since.set(Instant::now());
        }
    }
}

/// A worker's multiplexed connections by endpoint (and TLS settings), never shared across cores.
#[derive(Default)]
pub struct MuxPools {
    conns: RefCell<FxHashMap<PoolKey, Vec<Pooled>>>,
    /// Per endpoint: connections being opened, and the streams waiting for them.
    opening: Rc<RefCell<FxHashMap<PoolKey, (u32, u32)>>>,
}

/// A connection being opened, counted until dropped.
pub struct Opening {
    key: PoolKey,
    opening: Rc<RefCell<FxHashMap<PoolKey, (u32, u32)>>>,
}

impl Drop for Opening {
    fn drop(&mut self) {
        let mut opening = self.opening.borrow_mut();
        if let Some(n) = opening.get_mut(&self.key) {
            n.0 -= 1;
            if *n == (0, 0) {
                opening.remove(&self.key);
            }
        }
    }
}

/// A stream waiting for a connection being opened, counted until dropped.
pub struct Waiting {
    key: PoolKey,
    opening: Rc<RefCell<FxHashMap<PoolKey, (u32, u32)>>>,
}

impl Waiting {
    /// Whether a connection to its endpoint is still being opened.
    pub fn still_opening(&self) -> bool {
        self.opening.borrow().get(&self.key).is_some_and(|n| n.0 > 0)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut opening = self.opening.borrow_mut();
        if let Some(n) = opening.get_mut(&self.key) {
            n.1 -= 1;
            if *n == (0, 0) {
                opening.remove(&self.key);
            }
        }
    }
}

impl MuxPools {
    /// A stream on a connection to `key` that has room, if one has; closed connections found
    /// on the way leave the pool.
    pub fn take(&self, key: PoolKey, max_streams: u32, max_requests: u32) -> Option<MuxStream> {
        let mut conns = self.conns.borrow_mut();
        let list = conns.get_mut(&key)?;
        list.retain(|p| !p.state.closed.get());
        let found = list.iter().find(|p| p.state.has_room(max_streams, max_requests))?;
        Some(MuxStream::new(found.send.clone(), found.state.clone()))
    }

    /// Counts a connection to `key` as being opened, until the guard drops.
    pub fn opening(&self, key: PoolKey) -> Opening {
        self.opening.borrow_mut().entry(key).or_default().0 += 1;
        Opening { key, opening: self.opening.clone() }
    }

    /// A place among the streams waiting for the connections being opened to `key`, while
    /// those have room for one more (`max_streams` each), as Envoy's pool attaches a new
    /// stream to a connecting client before it opens another.
    pub fn wait_for_opening(&self, key: PoolKey, max_streams: u32) -> Option<Waiting> {
        let mut opening = self.opening.borrow_mut();
        let n = opening.get_mut(&key)?;
        if n.0 == 0 || n.1 >= n.0.saturating_mul(max_streams) {
            return None;
        }
        n.1 += 1;
        Some(Waiting { key, opening: self.opening.clone() })
    }

    /// Pools a new connection, whose driver task sets `state.closed` as it ends.
    pub fn put(&self, key: PoolKey, send: SendRequest<Bytes>, state: Rc<MuxState>) {
        self.conns.borrow_mut().entry(key).or_default().push(Pooled { send, state });
    }

    /// Forgets closed connections; run periodically beside the keep-alive pools' sweep.
    pub fn sweep(&self) {
        let mut conns = self.conns.borrow_mut();
        for list in conns.values_mut() {
            list.retain(|p| !p.state.closed.get());
        }
        conns.retain(|_, list| !list.is_empty());
    }
}
