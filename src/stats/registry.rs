//! One worker's counter sets by key (a route, a cluster, an endpoint), created on first use.
//!
//! A worker registers a key once (per name, or per snapshot generation) and caches what it
//! gets back; the lock is shared only with a scrape. Keys are names and addresses, never
//! snapshot indexes, so counts carry over a reload.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct Registry<K, V> {
    by_key: Mutex<BTreeMap<K, Arc<V>>>,
}

impl<K, V> Default for Registry<K, V> {
    fn default() -> Self {
        Self { by_key: Mutex::default() }
    }
}

impl<K: Ord + Clone, V: Default> Registry<K, V> {
    /// The counters for `key`, created on first use.
    pub fn register(&self, key: K) -> Arc<V> {
        let mut by_key = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        by_key.entry(key).or_default().clone()
    }

    /// Every worker's counters added up by key, `add` folding one set into a total.
    pub fn sum<'a, T: Default>(registries: impl Iterator<Item = &'a Self>, add: impl Fn(&mut T, &V)) -> BTreeMap<K, T>
    where
        K: 'a,
        V: 'a,
    {
        let mut out: BTreeMap<K, T> = BTreeMap::new();
        for registry in registries {
            let by_key = registry.by_key.lock().unwrap_or_else(|e| e.into_inner());
            for (key, counters) in by_key.iter() {
                add(out.entry(key.clone()).or_default(), counters);
            }
        }
        out
    }
}
