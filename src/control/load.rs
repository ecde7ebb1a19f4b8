//! The build pipeline: read every `--config` path, validate, compile a snapshot. Used at start,
//! on every reload and by `strait validate`, so all three judge a config the same way; a
//! changed DNS answer compiles the validated config again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tracing::error;

use super::kube::Kube;
use crate::config::{self, ApiObject, ConfigSet, Diagnostic, Diagnostics, Severity, ValidateOptions};
use crate::snapshot::{self, CompileOptions, Resolve, Snapshot, SystemResolver};

/// What to build from: the CLI's `--config`, `--label`, `--secrets-dir`, `--namespace`,
/// `--mesh` and `--proxy-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    pub paths: Vec<PathBuf>,
    /// A ProxyConfig file (`--proxy-config`), read with the config on every reload.
    pub proxy_config: Option<PathBuf>,
    /// A MeshConfig file (`--mesh`), read with the config on every reload.
    pub mesh: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub secrets_dir: Option<PathBuf>,
    /// The gateway's own namespace (`--namespace`).
    pub namespace: String,
    /// `--kubernetes`: objects read from the API server too.
    pub kubernetes: bool,
    /// `--workers`: the workers the snapshots are compiled for.
    pub workers: usize,
}

impl BuildOptions {
    /// Every file or directory a build reads its config from (`--config` paths, then
    /// `--proxy-config`): what `--watch` watches. A new input flag is added here.
    pub fn inputs(&self) -> Vec<PathBuf> {
        self.paths.iter().chain(&self.proxy_config).cloned().collect()
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            proxy_config: None,
            mesh: None,
            labels: BTreeMap::new(),
            secrets_dir: None,
            namespace: config::DEFAULT_NAMESPACE.to_owned(),
            kubernetes: false,
            workers: 1,
        }
    }
}

/// A servable snapshot, with the diagnostics that do not stop serving (dangling references,
/// fields not enforced), to be logged as warnings.
#[derive(Debug)]
pub struct Servable {
    pub snapshot: Snapshot,
    pub warnings: Diagnostics,
}

/// Builds generation `generation`, DNS names asked of the system resolver (`strait validate`).
/// `Err` holds every diagnostic when any is an error.
/// With `--kubernetes` the objects are listed once, and one refused fails the build.
pub fn build(opts: &BuildOptions, generation: u64) -> Result<Servable, Diagnostics> {
    let kube = if opts.kubernetes {
        // Nothing follows the changes: the channel's far end goes at once.
        let kube = Kube::start(&opts.namespace, mpsc::channel().0);
        Some(kube.map_err(|e| Diagnostics::from(Diagnostic::error(e.to_string())))?)
    } else {
        None
    };
    let objects = kube.as_ref().map(Kube::objects);
    let mut valid = validated(opts, objects.as_deref().map(Vec::as_slice))?;
    let snapshot = compile_valid(opts, &mut valid, generation, &mut SystemResolver)?;
    if !valid.refused.is_empty() {
        return Err(valid.refused.into_iter().chain(valid.warnings).collect());
    }
    Ok(Servable { snapshot, warnings: valid.warnings })
}

/// A config that passed validation: what snapshots are compiled from, again whenever a DNS
/// answer changes.
pub(super) struct Validated {
    pub(super) set: ConfigSet,
    pub(super) warnings: Diagnostics,
    /// Why objects read from the API server were left out (each refused alone).
    pub(super) refused: Diagnostics,
}

/// Reads every config path, the objects read from the API server (`--kubernetes`), the
/// MeshConfig and the ProxyConfig, and validates the whole. An error in a file fails the whole, as a reload
/// always has; an object from the API with an error is left out and the rest validated again,
/// as istiod serves without the one resource it cannot use.
pub(super) fn validated(opts: &BuildOptions, objects: Option<&[ApiObject]>) -> Result<Validated, Diagnostics> {
    let (mut set, mut refused) = match objects {
        None => (config::load(&opts.paths)?, Diagnostics::new()),
        Some(objects) => config::load_with_objects(&opts.paths, objects)?,
    };
    let mut proxy_warnings = Diagnostics::new();
    if let Some(path) = &opts.mesh {
        let warnings;
        (set.mesh, warnings) = config::mesh_config::read(path, &opts.labels)?;
        proxy_warnings.extend(warnings);
    }
    let mut proxy = config::proxy_config::Settings::default();
    if let Some(path) = &opts.proxy_config {
        let warnings;
        (proxy, warnings) = config::proxy_config::read(path, &opts.labels)?;
        proxy_warnings.extend(warnings);
    }
    // The pod's ProxyConfig overrides the mesh's defaultConfig field by field, as istiod merges
    // the `proxy.istio.io/config` annotation over it.
    set.proxy = proxy.over(set.mesh.default_config).resolve();
    let validate = ValidateOptions {
        secrets_dir: opts.secrets_dir.clone(),
        labels: opts.labels.clone(),
        namespace: opts.namespace.clone(),
    };
    let mut diagnostics = loop {
        let diagnostics = config::validate(&set, &validate);
        if !refuse_objects(&mut set, &diagnostics, &mut refused) {
            break diagnostics;
        }
    };
    // The ServiceEntries Strait writes for Services are not the user's to fix.
    diagnostics.0.retain(|d| d.severity != Severity::NotEnforced || !d.file.as_deref().is_some_and(is_service));
    diagnostics.extend(proxy_warnings);
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return Err(diagnostics);
    }
    Ok(Validated { set, warnings: diagnostics, refused })
}

/// [`validated`] for objects from the API server, with one exception to refusing alone: a
/// Secret that changed since `served` (the objects the serving generation was built from) and
/// whose new version gets objects refused is put back to its served version, as Envoy keeps the
/// last certificate SDS delivered when an update is invalid, rather than dropping the Gateway
/// that names it. Returns the objects validated, the Secrets kept among them.
pub(super) fn validated_api(
    opts: &BuildOptions,
    objects: &[ApiObject],
    served: &[ApiObject],
) -> Result<(Validated, Vec<ApiObject>), Diagnostics> {
    let mut objects = objects.to_vec();
    let mut valid = validated(opts, Some(&objects))?;
    for i in 0..objects.len() {
        if valid.refused.is_empty() {
            break;
        }
        let Some(old) = served.iter().find(|o| o.name == objects[i].name && o.name.starts_with("k8s:Secret/")) else {
            continue;
        };
        if *old == objects[i] {
            continue;
        }
        let mut trial = objects.clone();
        trial[i] = old.clone();
        let Ok(better) = validated(opts, Some(&trial)) else { continue };
        if better.refused.len() >= valid.refused.len() {
            continue;
        }
        let kept: Vec<String> = better.refused.iter().map(|d| d.to_string()).collect();
        for d in valid.refused.iter().map(|d| d.to_string()).filter(|d| !kept.contains(d)) {
            error!("{}: the new version is refused and the last good one kept: {d}", objects[i].name);
        }
        (objects, valid) = (trial, better);
    }
    Ok((valid, objects))
}

/// When every error in `diagnostics` is about an object from the API server, leaves those
/// objects out of `set`, adds the errors to `refused` and says so; otherwise changes nothing.
fn refuse_objects(set: &mut ConfigSet, diagnostics: &Diagnostics, refused: &mut Diagnostics) -> bool {
    let errors: Vec<&Diagnostic> = diagnostics.errors().collect();
    if errors.is_empty() || !errors.iter().all(|d| d.file.as_deref().is_some_and(is_api_object)) {
        return false;
    }
    let files: BTreeSet<&Path> = errors.iter().filter_map(|d| d.file.as_deref()).collect();
    // Never loops: each round leaves out at least one resource.
    let mut removed = false;
    for file in files {
        removed |= set.remove_file(file);
    }
    if !removed {
        return false;
    }
    refused.extend(errors.into_iter().cloned());
    true
}

/// A diagnostic's file that names an object from the API server (`k8s:KIND/namespace/name`).
fn is_api_object(file: &Path) -> bool {
    file.to_str().is_some_and(|f| f.starts_with("k8s:"))
}

fn is_service(file: &Path) -> bool {
    file.to_str().is_some_and(|f| f.starts_with("k8s:Service/"))
}

/// Compiles `valid` as generation `generation`; an object from the API server that fails to
/// compile (a Secret whose certificate does not parse) is left out as validation leaves one out.
pub(super) fn compile_valid(
    opts: &BuildOptions,
    valid: &mut Validated,
    generation: u64,
    resolver: &mut dyn Resolve,
) -> Result<Snapshot, Diagnostics> {
    loop {
        match compile(opts, &valid.set, generation, resolver) {
            Ok(snapshot) => return Ok(snapshot),
            Err(diagnostics) if refuse_objects(&mut valid.set, &diagnostics, &mut valid.refused) => {}
            Err(diagnostics) => return Err(diagnostics),
        }
    }
}

/// Compiles a validated `set` as generation `generation`.
pub(super) fn compile(
    opts: &BuildOptions,
    set: &ConfigSet,
    generation: u64,
    resolver: &mut dyn Resolve,
) -> Result<Snapshot, Diagnostics> {
    let compile = CompileOptions {
        labels: opts.labels.clone(),
        secrets_dir: opts.secrets_dir.clone(),
        namespace: opts.namespace.clone(),
        generation,
        workers: opts.workers,
    };
    snapshot::compile_with(set, &compile, resolver)
}

/// `strait validate`'s verdict on a diagnostic: errors and dangling references fail it, as
/// `istioctl analyze` fails on IST0101; fields that are not enforced only warn.
pub fn fails_validation(severity: Severity) -> bool {
    matches!(severity, Severity::Error | Severity::Dangling)
}
