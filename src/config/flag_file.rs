//! A YAML file that a flag names (`--mesh`, `--proxy-config`): read whole, parsed, and its
//! diagnostics pointed at the file, the line and the field.

use std::path::Path;
use std::sync::Arc;

use serde_yaml::Value;

use super::source::locate;
use super::{Diagnostic, Diagnostics, Severity};

/// `path`'s text, or an error naming `flag`.
pub(super) fn read(path: &Path, flag: &str) -> Result<(Arc<Path>, String), Diagnostics> {
    let file: Arc<Path> = Arc::from(path);
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((file, text)),
        Err(e) => Err(Diagnostic { file: Some(file), ..Diagnostic::error(format!("{flag}: {e}")) }.into()),
    }
}

/// What `text` (of `file`) holds, or its YAML error at its line.
pub(super) fn yaml(text: &str, file: &Arc<Path>) -> Result<Value, Diagnostics> {
    serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        Diagnostics::from(Diagnostic { file: Some(file.clone()), line, ..Diagnostic::error(e.to_string()) })
    })
}

/// A diagnostic on `field` (`""`: the whole) of the `kind` that `text` (of `file`) holds.
pub(super) fn at(
    text: &str,
    file: &Arc<Path>,
    kind: &str,
    severity: Severity,
    field: &str,
    message: String,
) -> Diagnostic {
    Diagnostic {
        severity,
        file: Some(file.clone()),
        line: locate(text, 1, field),
        kind: Some(kind.into()),
        field: (!field.is_empty()).then(|| field.to_owned()),
        ..Diagnostic::error(message)
    }
}
