//! STAND-IN for the config layer, written by the runtime branch only so that it builds: the
//! lead drops this file at merge and keeps the real `config` module. Nothing else lives here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Default)]
pub struct ConfigSet;

#[derive(Debug, Clone, Default)]
pub struct ValidateOptions {
    pub secrets_dir: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Dangling,
    NotEnforced,
}

#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

pub fn load(paths: &[PathBuf]) -> Result<ConfigSet, Diagnostics> {
    let missing: Vec<Diagnostic> = paths
        .iter()
        .filter(|p| !p.exists())
        .map(|p| Diagnostic { severity: Severity::Error, message: format!("{}: not found", p.display()) })
        .collect();
    if missing.is_empty() {
        Ok(ConfigSet)
    } else {
        Err(Diagnostics(missing))
    }
}

pub fn validate(_set: &ConfigSet, _opts: &ValidateOptions) -> Diagnostics {
    Diagnostics::default()
}
