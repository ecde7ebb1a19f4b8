//! Single-writer counts, read by others: [`Counter`] and [`Gauge`] (a leaf). `stats/` keeps
//! its per-worker sets in them, and the snapshot's live rate limits their per-worker stats.
//!
//! A value has exactly one writer, so an update is a relaxed load and store: no lock and no
//! `lock`-prefixed read-modify-write. A reader may see a value a moment old, which is all a
//! scrape needs.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// A monotonically increasing count with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Only the owning thread may call this: two writers would lose updates.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Only the owning thread may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down (active connections, the applied generation), single writer.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub fn inc(&self) {
        self.0.store(self.0.load(Relaxed) + 1, Relaxed);
    }

    #[inline]
    pub fn dec(&self) {
        self.0.store(self.0.load(Relaxed) - 1, Relaxed);
    }

    pub fn set(&self, value: i64) {
        self.0.store(value, Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}
