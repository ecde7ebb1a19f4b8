//! Building and swapping generations: the first at start, then one per SIGHUP or
//! `POST /reload`, and one per changed DNS answer or JWKS (the same config compiled again). A
//! reload either swaps everything (snapshot and sockets) or nothing.

use std::net::IpAddr;
use std::sync::Arc;

use tracing::{error, info, warn};

use super::dns::{Dns, DnsOptions};
use super::error::RunError;
use super::jwks::Jwks;
use super::kube::Kube;
use super::load::{compile, compile_valid, validated, validated_api, BuildOptions, Validated};
use super::ports::{BindError, Ports};
use crate::config::jwks::Jwks as KeySet;
use crate::config::{ApiObject, ConfigSet, Diagnostics, Severity};
use crate::publish::{Published, Reloaded, Shared};
use crate::snapshot::jwt::JwksSource;
use crate::snapshot::Resolve;
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
    /// The config served, compiled again when a DNS answer changes.
    set: ConfigSet,
    pub(super) dns: Dns,
    /// `--kubernetes`: the objects read from the API server, built from beside the files.
    kube: Option<Kube>,
    /// The objects the serving generation was built from.
    served: Vec<ApiObject>,
    jwks: Jwks,
}

/// What a compile reads off the network, from the control thread's live answers.
struct Fetched<'a> {
    dns: &'a mut Dns,
    jwks: &'a mut Jwks,
}

impl Fetched<'_> {
    fn begin(&mut self) {
        self.dns.begin();
        self.jwks.begin();
    }

    fn commit(&mut self) {
        self.dns.commit();
        self.jwks.commit();
    }
}

impl Resolve for Fetched<'_> {
    fn lookup(&mut self, name: &str) -> Vec<IpAddr> {
        self.dns.lookup(name)
    }

    fn jwks(&mut self, source: &JwksSource) -> Option<Arc<KeySet>> {
        self.jwks.keys(source)
    }
}

impl Reloader {
    /// Builds generation 1 and binds its ports; refuses an invalid config. `share_ports`: listen
    /// beside another process on a port it serves, instead of refusing the port. `kube`: the
    /// objects of `--kubernetes`, already listed.
    pub fn start(
        opts: BuildOptions,
        dns: DnsOptions,
        workers: usize,
        share_ports: bool,
        kube: Option<Kube>,
    ) -> Result<Self, RunError> {
        let mut dns = Dns::new(dns).map_err(RunError::Dns)?;
        let mut jwks = Jwks::new().map_err(RunError::Jwks)?;
        let (mut valid, served) = validate(&opts, kube.as_ref(), &[]).map_err(RunError::InvalidConfig)?;
        dns.set_mesh_refresh_rate(valid.set.mesh.dns_refresh_rate);
        let mut fetched = Fetched { dns: &mut dns, jwks: &mut jwks };
        fetched.begin();
        let snapshot = compile_valid(&opts, &mut valid, 1, &mut fetched).map_err(RunError::InvalidConfig)?;
        fetched.commit();
        let Validated { set, warnings, refused } = valid;
        log_warnings(&warnings, &refused);
        let mut ports = Ports::new(workers, share_ports);
        let prepared = ports.prepare(&snapshot)?;
        ports.commit(prepared);
        let mut live = LiveRegistry::default();
        let snapshot = Generation::new(snapshot, &mut live);
        let first = Published { snapshot, sockets: ports.sockets(), draining: false };
        let shared = Arc::new(Shared::new(first, workers));
        dns.count_into(&shared.control);
        Ok(Self { opts, ports, shared, live, set, dns, jwks, kube, served })
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
        let (mut valid, served) =
            validate(&self.opts, self.kube.as_ref(), &self.served).map_err(ReloadError::Invalid)?;
        // A refused reload leaves the rate with the config that serves.
        let served_rate = self.set.mesh.dns_refresh_rate;
        self.dns.set_mesh_refresh_rate(valid.set.mesh.dns_refresh_rate);
        let mut fetched = Fetched { dns: &mut self.dns, jwks: &mut self.jwks };
        fetched.begin();
        let prepared = compile_valid(&self.opts, &mut valid, generation, &mut fetched)
            .map_err(ReloadError::Invalid)
            .and_then(|mut snapshot| {
                snapshot.inherit(&current.snapshot);
                let prepared = self.ports.prepare(&snapshot)?;
                Ok((snapshot, prepared))
            });
        // Counted whether or not the config is taken: the lookups were made.
        self.dns.count_into(&self.shared.control);
        let (snapshot, prepared) = match prepared {
            Ok(ready) => ready,
            Err(e) => {
                self.dns.set_mesh_refresh_rate(served_rate);
                return Err(e);
            }
        };
        let Validated { set, warnings, refused } = valid;
        log_warnings(&warnings, &refused);
        self.ports.commit(prepared);
        Fetched { dns: &mut self.dns, jwks: &mut self.jwks }.commit();
        self.set = set;
        self.served = served;
        let listeners = snapshot.listeners.len();
        // Resolved only once the ports are bound: a refused reload leaves the registry as the
        // serving snapshot has it.
        let snapshot = Generation::new(snapshot, &mut self.live);
        let next = Published { snapshot, sockets: self.ports.sockets(), draining: false };
        self.shared.published.store(Arc::new(next));
        Ok(Reloaded { generation, listeners })
    }

    /// When a DNS answer or a key set is next due to be asked again.
    pub fn next_due(&self) -> Option<std::time::Instant> {
        [self.dns.next_due(), self.jwks.next_due()].into_iter().flatten().min()
    }

    /// Asks again the DNS answers and fetches again the key sets that are due; when one
    /// changed, publishes the served config compiled with the new addresses and keys (same
    /// listeners, same sockets), as Envoy updates a STRICT_DNS cluster's hosts without a config
    /// push and istiod pushes a changed JWKS. Pooled connections to an address that left the
    /// answer idle out; none is cut.
    pub fn refresh(&mut self) {
        let dns = self.dns.refresh(&self.shared.control);
        let jwks = self.jwks.refresh();
        if !dns && !jwks {
            return;
        }
        let current = self.shared.published.load_full();
        if current.draining {
            return;
        }
        let generation = current.snapshot.generation + 1;
        let what = if dns { "DNS answers" } else { "JWKS" };
        let mut fetched = Fetched { dns: &mut self.dns, jwks: &mut self.jwks };
        fetched.begin();
        match compile(&self.opts, &self.set, generation, &mut fetched) {
            Ok(mut snapshot) => {
                fetched.commit();
                snapshot.inherit(&current.snapshot);
                let snapshot = Generation::new(snapshot, &mut self.live);
                let next = Published { snapshot, sockets: current.sockets.clone(), draining: false };
                self.shared.published.store(Arc::new(next));
                if dns {
                    self.shared.control.dns_updates.inc();
                }
                info!("{what} changed: generation {generation}");
            }
            Err(diagnostics) => {
                // Only what is read at compile time can fail here (a certificate file gone).
                for d in diagnostics.iter() {
                    error!("{d}");
                }
                error!("{what} update not applied, generation {} keeps serving", current.snapshot.generation);
            }
        }
    }

    /// A worker met a token naming a key the set at `uri` lacks: fetch it again soon.
    pub fn refetch_jwks(&mut self, uri: &str) {
        self.jwks.refetch(uri);
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

/// The files, and with `--kubernetes` the objects read from the API server, validated; with
/// the objects they were validated from (`served`: those the serving generation was built from).
fn validate(
    opts: &BuildOptions,
    kube: Option<&Kube>,
    served: &[ApiObject],
) -> Result<(Validated, Vec<ApiObject>), Diagnostics> {
    match kube {
        Some(kube) => validated_api(opts, &kube.objects(), served),
        None => Ok((validated(opts, None)?, Vec::new())),
    }
}

/// Dangling references and fields not enforced are served, with a warning naming them; an
/// object from the API server refused alone is an error naming it, the rest served.
fn log_warnings(warnings: &Diagnostics, refused: &Diagnostics) {
    for d in warnings.iter() {
        warn!("{d}");
    }
    for d in refused.iter() {
        error!("refused, the rest applies: {d}");
    }
}
