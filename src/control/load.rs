//! The build pipeline: read every `--config` path, validate, compile a snapshot. Used at start,
//! on every reload and by `strait validate`, so all three judge a config the same way.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::{self, Diagnostics, Severity, ValidateOptions};
use crate::snapshot::{self, CompileOptions, Snapshot};

/// What to build from: the CLI's `--config`, `--label`, `--secrets-dir` and `--namespace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    pub paths: Vec<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub secrets_dir: Option<PathBuf>,
    /// The gateway's own namespace (`--namespace`).
    pub namespace: String,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
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

/// Builds generation `generation`. `Err` holds every diagnostic when any is an error.
pub fn build(opts: &BuildOptions, generation: u64) -> Result<Servable, Diagnostics> {
    let set = config::load(&opts.paths)?;
    let validate = ValidateOptions {
        secrets_dir: opts.secrets_dir.clone(),
        labels: opts.labels.clone(),
        namespace: opts.namespace.clone(),
    };
    let diagnostics = config::validate(&set, &validate);
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return Err(diagnostics);
    }
    let compile = CompileOptions {
        labels: opts.labels.clone(),
        secrets_dir: opts.secrets_dir.clone(),
        namespace: opts.namespace.clone(),
        generation,
    };
    let snapshot = snapshot::compile(&set, &compile)?;
    Ok(Servable { snapshot, warnings: diagnostics })
}

/// `strait validate`'s verdict on a diagnostic: errors and dangling references fail it, as
/// `istioctl analyze` fails on IST0101; fields that are not enforced only warn.
pub fn fails_validation(severity: Severity) -> bool {
    matches!(severity, Severity::Error | Severity::Dangling)
}
