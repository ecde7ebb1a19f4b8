//! Building and swapping generations: the first at start, then one per SIGHUP or
//! `POST /reload`. A reload either swaps everything (snapshot and sockets) or nothing.

use std::sync::Arc;

use tracing::{error, info, warn};

use super::error::RunError;
use super::load::{build, BuildOptions};
use super::ports::{BindError, Ports};
use crate::config::{Diagnostics, Severity};
use crate::publish::{Published, Reloaded, Shared};
use crate::upstream::{Generation, LiveRegistry};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("invalid configuration: {}", join(.0))]
    Invalid(Diagnostics),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("draining: reloads are refused")]
    Draining,
}

fn join(diagnostics: &Diagnostics) -> String {
    diagnostics.iter().filter(|d| d.severity == Severity::Error).map(|d| d.to_string()).collect::<Vec<_>>().join("; ")
}

/// Owns the build inputs and the sockets; lives on the control thread.
pub struct Reloader {
    opts: BuildOptions,
    ports: Ports,
    shared: Arc<Shared>,
    /// The clusters' live state, resolved for each snapshot published.
    live: LiveRegistry,
}

impl Reloader {
    /// Builds generation 1 and binds its ports; refuses an invalid config. `share_ports`: listen
    /// beside another process on a port it serves, instead of refusing the port.
    pub fn start(opts: BuildOptions, workers: usize, share_ports: bool) -> Result<Self, RunError> {
        let built = build(&opts, 1).map_err(RunError::InvalidConfig)?;
        log_warnings(&built.warnings);
        let mut ports = Ports::new(workers, share_ports);
        let prepared = ports.prepare(&built.snapshot)?;
        ports.commit(prepared);
        let mut live = LiveRegistry::default();
        let snapshot = Generation::new(built.snapshot, &mut live);
        let first = Published { snapshot, sockets: ports.sockets(), draining: false };
        let shared = Arc::new(Shared::new(first, workers));
        Ok(Self { opts, ports, shared, live })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Re-reads every config path and swaps in the result, or logs why not and keeps serving
    /// the current generation.
    pub fn reload(&mut self) -> Result<Reloaded, ReloadError> {
        let result = self.try_reload();
        let control = &self.shared.control;
        match &result {
            // Logged before counted: whoever watches the counter finds the reason already written.
            Ok(r) => {
                info!("reloaded: generation {}, {} listeners", r.generation, r.listeners);
                self.shared.set_last_reload_error(None);
                control.reload_ok.inc();
            }
            Err(e) => {
                if let ReloadError::Invalid(diagnostics) = e {
                    for d in diagnostics.iter().filter(|d| d.severity == Severity::Error) {
                        error!("{d}");
                    }
                }
                error!("reload failed, generation {} keeps serving: {e}", self.shared.snapshot().generation);
                self.shared.set_last_reload_error(Some(e.to_string()));
                control.reload_failed.inc();
            }
        }
        result
    }

    fn try_reload(&mut self) -> Result<Reloaded, ReloadError> {
        let current = self.shared.published.load_full();
        if current.draining {
            return Err(ReloadError::Draining);
        }
        let generation = current.snapshot.generation + 1;
        let mut built = build(&self.opts, generation).map_err(ReloadError::Invalid)?;
        built.snapshot.inherit(&current.snapshot);
        let prepared = self.ports.prepare(&built.snapshot)?;
        log_warnings(&built.warnings);
        self.ports.commit(prepared);
        let listeners = built.snapshot.listeners.len();
        // Resolved only once the ports are bound: a refused reload leaves the registry as the
        // serving snapshot has it.
        let snapshot = Generation::new(built.snapshot, &mut self.live);
        let next = Published { snapshot, sockets: self.ports.sockets(), draining: false };
        self.shared.published.store(Arc::new(next));
        Ok(Reloaded { generation, listeners })
    }

    /// Publishes the current snapshot with no sockets and `draining` set: workers stop
    /// accepting and close keep-alive connections between requests.
    pub fn start_draining(&mut self) {
        let snapshot = self.shared.published.load().snapshot.clone();
        self.shared.published.store(Arc::new(Published { snapshot, sockets: Default::default(), draining: true }));
        // The workers hold duplicates of the sockets until they stop accepting; ours go now.
        self.ports.close_all();
    }
}

/// Dangling references and fields not enforced are served, with a warning naming them.
fn log_warnings(warnings: &Diagnostics) {
    for d in warnings.iter() {
        warn!("{d}");
    }
}
