//! The contract between control, workers and admin: what the control thread publishes (the
//! current snapshot with its sockets, one pointer swapped whole), the counters they all read,
//! what each worker reports back (its driver), and how the admin server asks for a reload.

use std::collections::BTreeMap;
use std::fmt;
use std::net::TcpListener;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::stats::{served_generation, ControlStats, WorkerStats};
use crate::upstream::Generation;

/// The sockets of one port, index = worker id.
pub type PortSockets = Arc<[TcpListener]>;

/// One publication. Workers poll for a new one; a request keeps the snapshot it started with.
#[derive(Debug)]
pub struct Published {
    /// The snapshot with the live state of its clusters.
    pub snapshot: Generation,
    /// Port → one listening socket per worker (index = worker id). Empty while draining.
    pub sockets: BTreeMap<u16, PortSockets>,
    /// Shutting down: stop accepting, close keep-alive connections between requests.
    pub draining: bool,
}

/// What `/ready` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Some worker has not started accepting on the first snapshot yet.
    PreInitializing,
    Live,
    Draining,
}

impl Readiness {
    /// Envoy's name for the state (`admin.v3.ServerInfo.State`).
    pub fn name(self) -> &'static str {
        match self {
            Readiness::PreInitializing => "PRE_INITIALIZING",
            Readiness::Live => "LIVE",
            Readiness::Draining => "DRAINING",
        }
    }
}

#[derive(Debug)]
pub struct Shared {
    pub published: ArcSwap<Published>,
    /// Index = worker id.
    pub workers: Vec<Arc<WorkerStats>>,
    pub control: ControlStats,
    last_reload_error: Mutex<Option<String>>,
    /// When the first generation was built: `/server_info`'s uptime counts from here.
    started: Instant,
    /// The driver each worker's runtime was built on, once `worker::spawn` has built them all.
    drivers: OnceLock<Vec<Driver>>,
    /// Where workers send what the control thread acts on (asks for a key set), once it runs.
    events: OnceLock<Sender<ControlEvent>>,
}

impl Shared {
    pub fn new(first: Published, workers: usize) -> Self {
        Self {
            published: ArcSwap::from_pointee(first),
            workers: (0..workers).map(|_| Arc::default()).collect(),
            control: ControlStats::default(),
            last_reload_error: Mutex::new(None),
            started: Instant::now(),
            drivers: OnceLock::new(),
            events: OnceLock::new(),
        }
    }

    pub fn snapshot(&self) -> Generation {
        self.published.load().snapshot.clone()
    }

    pub fn readiness(&self) -> Readiness {
        if self.published.load().draining {
            Readiness::Draining
        } else if self.served_generation() > 0 {
            Readiness::Live
        } else {
            Readiness::PreInitializing
        }
    }

    /// The generation every worker serves (see [`crate::stats::Totals::generation`]).
    pub fn served_generation(&self) -> u64 {
        served_generation(&self.workers) as u64
    }

    /// Every worker has stopped accepting and holds no downstream connection.
    pub fn drained(&self) -> bool {
        self.workers.iter().all(|w| w.draining.get() == 1 && w.downstream_cx_active.get() <= 0)
    }

    pub fn active_connections(&self) -> i64 {
        self.workers.iter().map(|w| w.downstream_cx_active.get()).sum()
    }

    /// Why the most recent reload failed; `None` once a later one succeeded (as Envoy drops a
    /// resource's error state when an update is accepted), or before any failed.
    pub fn last_reload_error(&self) -> Option<String> {
        self.last_reload_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// One entry per worker (in start order, not by id); empty until the workers run.
    pub fn drivers(&self) -> &[Driver] {
        self.drivers.get().map_or(&[], Vec::as_slice)
    }

    /// Workers are spawned once per `Shared`: a second call is ignored.
    pub(crate) fn set_drivers(&self, used: Vec<Driver>) {
        let _ = self.drivers.set(used);
    }

    /// The control loop's inbox, for the workers; set once, before they start.
    pub fn set_events(&self, events: Sender<ControlEvent>) {
        let _ = self.events.set(events);
    }

    pub fn events(&self) -> Option<Sender<ControlEvent>> {
        self.events.get().cloned()
    }

    pub(crate) fn set_last_reload_error(&self, error: Option<String>) {
        *self.last_reload_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }
}

/// The driver a worker's runtime was built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Legacy,
}

impl Driver {
    /// The short name `/server_info` reports.
    pub fn name(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Legacy => "legacy",
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::IoUring => "io_uring",
            Driver::Legacy => "legacy (epoll)",
        })
    }
}

/// What the control loop acts on; sent by the signal thread and the admin server.
#[derive(Debug)]
pub enum ControlEvent {
    /// Reload; the admin server passes a sender for the outcome (`Err`: the error text).
    Reload(Option<Sender<Result<Reloaded, String>>>),
    /// Drain and exit; names the signal, for the log.
    Shutdown(&'static str),
    /// A worker met a token whose `kid` the key set of this `jwksUri` lacks: fetch it again
    /// (the control thread bounds how often).
    JwksRefetch(Arc<str>),
}

/// A reload that was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    pub generation: u64,
    /// Listeners in the snapshot, served or not.
    pub listeners: usize,
}
