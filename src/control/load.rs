//! The build pipeline: read every `--config` path, validate, compile a snapshot. Used at start,
//! on every reload and by `strait validate`, so all three judge a config the same way; a
//! changed DNS answer compiles the validated config again.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::{self, ConfigSet, Diagnostics, Severity, ValidateOptions};
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
pub fn build(opts: &BuildOptions, generation: u64) -> Result<Servable, Diagnostics> {
    let valid = validated(opts)?;
    let snapshot = compile(opts, &valid.set, generation, &mut SystemResolver)?;
    Ok(Servable { snapshot, warnings: valid.warnings })
}

/// A config that passed validation: what snapshots are compiled from, again whenever a DNS
/// answer changes.
pub(super) struct Validated {
    pub(super) set: ConfigSet,
    pub(super) warnings: Diagnostics,
}

/// Reads every config path, the MeshConfig and the ProxyConfig, and validates the whole.
pub(super) fn validated(opts: &BuildOptions) -> Result<Validated, Diagnostics> {
    let mut set = config::load(&opts.paths)?;
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
    let mut diagnostics = config::validate(&set, &validate);
    diagnostics.extend(proxy_warnings);
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return Err(diagnostics);
    }
    Ok(Validated { set, warnings: diagnostics })
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
    };
    snapshot::compile_with(set, &compile, resolver)
}

/// `strait validate`'s verdict on a diagnostic: errors and dangling references fail it, as
/// `istioctl analyze` fails on IST0101; fields that are not enforced only warn.
pub fn fails_validation(severity: Severity) -> bool {
    matches!(severity, Severity::Error | Severity::Dangling)
}
