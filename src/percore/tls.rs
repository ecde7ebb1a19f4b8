//! Each worker's own copies of the snapshot's rustls configs, so that a handshake does not
//! count references on a line every core writes: the configs' shared parts are read-only. A
//! server's session keys and cache stay shared by its workers, so that its sessions resume on
//! any of them; the sessions the client side keeps are this core's own.

use std::cell::RefCell;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use rustls::client::Resumption;
use rustls::{ClientConfig, ServerConfig};

use crate::snapshot::TlsConfig;

/// Sessions a core remembers per upstream config: a few hundred KiB at most.
const SESSIONS: usize = 1024;

/// Keyed by the address of the snapshot's config, whose `Arc` the entry holds so that the
/// address cannot be reused by another config while the entry lives.
type Copies<T> = RefCell<FxHashMap<usize, (Arc<T>, Arc<T>)>>;

#[derive(Default)]
pub struct CoreConfigs {
    server: Copies<ServerConfig>,
    client: Copies<ClientConfig>,
}

impl CoreConfigs {
    pub fn server(&self, built: &TlsConfig<ServerConfig>) -> Arc<ServerConfig> {
        copy(&self.server, built, |_| {})
    }

    pub fn client(&self, built: &TlsConfig<ClientConfig>) -> Arc<ClientConfig> {
        copy(&self.client, built, |c| c.resumption = Resumption::in_memory_sessions(SESSIONS))
    }

    /// Forgets every copy: a new snapshot brings new configs (connections of the old one
    /// make their copies again, once).
    pub fn clear(&self) {
        self.server.borrow_mut().clear();
        self.client.borrow_mut().clear();
    }
}

fn copy<T: Clone>(copies: &Copies<T>, built: &TlsConfig<T>, own_caches: impl FnOnce(&mut T)) -> Arc<T> {
    let key = Arc::as_ptr(&built.0) as usize;
    if let Some((_, mine)) = copies.borrow().get(&key) {
        return mine.clone();
    }
    let mut mine = T::clone(&built.0);
    own_caches(&mut mine);
    let mine = Arc::new(mine);
    copies.borrow_mut().insert(key, (built.0.clone(), mine.clone()));
    mine
}
