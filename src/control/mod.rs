//! The control thread: builds generations off the request path, owns the listening sockets,
//! publishes each generation to the workers, and runs reloads and the shutdown drain.
//!
//! `run` is `strait run`: start (refusing an invalid config), serve, reload on SIGHUP,
//! `POST /reload`, a certificate file or (`--watch`) a config input changing on disk or
//! (`--kubernetes`) the API server's objects changing, drain on SIGTERM/SIGINT, return
//! when drained.

mod dns;
mod drain;
mod error;
mod jwks;
mod kube;
mod load;
mod ports;
mod reconcile;
mod reload;
mod signals;
mod watch;

/// `strait-bench serve` listens as the workers do.
pub use ports::listen;

use std::net::SocketAddr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde_json::json;
use tracing::info;

pub use dns::DnsOptions;
pub use error::RunError;
use kube::Kube;
pub use load::{build, fails_validation, BuildOptions, Servable};
pub use ports::BindError;
pub use reload::{ReloadError, Reloader};

use crate::admin::{protobuf_duration, Admin, LogControl};
use crate::publish::ControlEvent;
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
    /// Where and how often `resolution: DNS` names are asked.
    pub dns: DnsOptions,
    /// `--watch`: a config input changing on disk reloads, as SIGHUP does.
    pub watch: bool,
}

/// `strait run`. Returns `Ok` once drained: the process then exits 0. `logging` is the installed
/// log filter, which `POST /logging` changes.
pub fn run(opts: RunOptions, logging: LogControl) -> Result<(), RunError> {
    let config_inputs = opts.watch.then(|| watch::ConfigInputs::before_load(opts.build.inputs()));
    let (events_tx, events) = mpsc::channel();
    let kube = match opts.build.kubernetes {
        true => Some(Kube::start(&opts.build.namespace, events_tx.clone()).map_err(RunError::Kube)?),
        false => None,
    };
    let build = opts.build.clone();
    let mut reloader = Reloader::start(build, opts.dns.clone(), opts.workers.workers, opts.share_ports, kube)?;
    let shared = reloader.shared().clone();
    shared.set_events(events_tx.clone());
    signals::forward(events_tx.clone()).map_err(RunError::Signals)?;
    watch::spawn(shared.clone(), events_tx.clone(), config_inputs).map_err(RunError::Watcher)?;
    let admin = Admin::bind(opts.admin).map_err(|source| RunError::Admin { addr: opts.admin, source })?;
    worker::spawn(&shared, &opts.workers)?;
    let admin_addr = admin.local_addr();
    admin
        .spawn(shared.clone(), events_tx, logging, command_line(&opts))
        .map_err(|source| RunError::Admin { addr: admin_addr, source })?;
    let (generation, listeners) = {
        let snapshot = shared.snapshot();
        // Fail-open, as Envoy is with no rate limit service to ask: the gateway serves, and
        // says which limits count nothing.
        if opts.workers.redis.is_none() {
            for limit in &snapshot.global_rate_limits {
                tracing::warn!("{}: ASMGlobalRateLimiter limits nothing without --redis", limit.key);
            }
        }
        (snapshot.generation, snapshot.listeners.len())
    };
    info!(
        "serving generation {generation}: {listeners} listeners, {} workers, admin on {admin_addr}",
        opts.workers.workers
    );

    let signal = loop {
        // Between events, DNS answers and key sets are asked again as they come due.
        let event = match reloader.next_due() {
            Some(due) => events.recv_timeout(due.saturating_duration_since(Instant::now())),
            None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match event {
            Err(RecvTimeoutError::Timeout) => reloader.refresh(),
            Ok(ControlEvent::JwksRefetch(uri)) => reloader.refetch_jwks(&uri),
            Ok(ControlEvent::Reload(reply)) => {
                let outcome = reloader.reload().map_err(|e| e.to_string());
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
            Ok(ControlEvent::Shutdown(signal)) => break signal,
            // Unreachable while the signal thread lives; treat it as a shutdown.
            Err(RecvTimeoutError::Disconnected) => break "lost signal handler",
        }
    };
    info!("{signal}: draining for up to {:?}", opts.drain_timeout);
    reloader.start_draining();
    drain::wait(&shared, opts.drain_timeout, &events);
    Ok(())
}

/// `/server_info`'s `command_line_options`: what `strait run` was started with, under Envoy's
/// field names where Envoy has the option (`concurrency`, `drain_time`).
pub fn command_line(opts: &RunOptions) -> serde_json::Value {
    json!({
        "concurrency": opts.workers.workers,
        "config_paths": opts.build.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "labels": opts.build.labels,
        "secrets_dir": opts.build.secrets_dir.as_ref().map(|p| p.display().to_string()),
        "proxy_config": opts.build.proxy_config.as_ref().map(|p| p.display().to_string()),
        "kubernetes": opts.build.kubernetes,
        "mesh": opts.build.mesh.as_ref().map(|p| p.display().to_string()),
        "admin_address": opts.admin.to_string(),
        "driver": opts.workers.driver.to_possible_value().map(|v| v.get_name().to_string()),
        "drain_time": protobuf_duration(opts.drain_timeout),
        "access_log": opts.workers.access_log.is_some(),
        "access_log_encoding": opts.workers.access_log.and_then(|e| e.to_possible_value()).map(|v| v.get_name().to_string()),
        "mirror_shadow_suffix": opts.workers.mirror_shadow_suffix,
        "dns_servers": opts.dns.servers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "dns_refresh_rate": opts.dns.refresh_rate.map(protobuf_duration),
        "watch": opts.watch,
    })
}

#[cfg(test)]
mod tests;
