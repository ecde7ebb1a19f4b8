//! The control thread: builds generations off the request path, owns the listening sockets,
//! publishes each generation to the workers, and runs reloads and the shutdown drain.
//!
//! `run` is `strait run`: start (refusing an invalid config), serve, reload on SIGHUP,
//! `POST /reload` or a certificate file changing on disk, drain on SIGTERM/SIGINT, return
//! when drained.

mod drain;
mod error;
mod load;
mod ports;
mod reconcile;
mod reload;
mod shared;
mod signals;
mod watch;

/// `strait-bench serve` listens as the workers do.
pub use ports::listen;

use std::net::SocketAddr;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use tracing::info;

pub use error::RunError;
pub use load::{build, fails_validation, BuildOptions, Servable};
pub use ports::{BindError, PortSockets};
pub use reload::{ReloadError, Reloaded, Reloader};
pub use shared::{Published, Readiness, Shared};

use crate::admin::{Admin, LogControl};
use crate::worker::{self, WorkerOptions};

/// Envoy's default drain time is 600 s, but an Istio gateway pod is given
/// `terminationDrainDuration` = 5 s: Strait follows the gateway.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub build: BuildOptions,
    pub workers: WorkerOptions,
    pub admin: SocketAddr,
    pub drain_timeout: Duration,
    /// Listen on ports another process serves, sharing their connections (a hand-over).
    pub share_ports: bool,
}

/// What the control loop acts on; sent by the signal thread and the admin server.
#[derive(Debug)]
pub enum ControlEvent {
    /// Reload; the admin server passes a sender for the outcome (`Err`: the error text).
    Reload(Option<Sender<Result<Reloaded, String>>>),
    /// Drain and exit; names the signal, for the log.
    Shutdown(&'static str),
}

/// `strait run`. Returns `Ok` once drained: the process then exits 0. `logging` is the installed
/// log filter, which `POST /logging` changes.
pub fn run(opts: RunOptions, logging: LogControl) -> Result<(), RunError> {
    let mut reloader = Reloader::start(opts.build.clone(), opts.workers.workers, opts.share_ports)?;
    let shared = reloader.shared().clone();
    let (events_tx, events) = mpsc::channel();
    signals::forward(events_tx.clone()).map_err(RunError::Signals)?;
    watch::spawn(shared.clone(), events_tx.clone()).map_err(RunError::Watcher)?;
    let admin = Admin::bind(opts.admin).map_err(|source| RunError::Admin { addr: opts.admin, source })?;
    worker::spawn(&shared, &opts.workers)?;
    let admin_addr = admin.local_addr();
    admin
        .spawn(shared.clone(), events_tx, logging, &opts)
        .map_err(|source| RunError::Admin { addr: admin_addr, source })?;
    let (generation, listeners) = {
        let snapshot = shared.snapshot();
        (snapshot.generation, snapshot.listeners.len())
    };
    info!(
        "serving generation {generation}: {listeners} listeners, {} workers, admin on {admin_addr}",
        opts.workers.workers
    );

    let signal = loop {
        match events.recv() {
            Ok(ControlEvent::Reload(reply)) => {
                let outcome = reloader.reload().map_err(|e| e.to_string());
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
            Ok(ControlEvent::Shutdown(signal)) => break signal,
            // Unreachable while the signal thread lives; treat it as a shutdown.
            Err(_) => break "lost signal handler",
        }
    };
    info!("{signal}: draining for up to {:?}", opts.drain_timeout);
    reloader.start_draining();
    drain::wait(&shared, opts.drain_timeout, &events);
    Ok(())
}

#[cfg(test)]
mod tests;
