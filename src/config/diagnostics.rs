//! Config faults as positioned, printable diagnostics.
//!
//! One `Diagnostic` prints as
//! `{file}:{line}[:{column}]: document {document}: {kind} {resource}: {field}: {message}`,
//! parts that are `None` left out. The severity is not printed: the CLI prefixes it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// How bad a fault is, as Istio draws the line (see ARCHITECTURE.md "Two kinds of config fault").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// What Istio's validation webhook refuses: the set is not served.
    Error,
    /// What `istioctl analyze` reports as an error: a reference to nothing (IST0101, a Gateway
    /// selector this instance does not satisfy included), Gateways claiming one port and host
    /// (IST0145). `validate` fails, `run` serves the set with a warning.
    Dangling,
    /// Accepted but not enforced by Strait yet: a warning only.
    NotEnforced,
    /// Valid, but without effect here (a policy that can never apply to this gateway): a
    /// warning only.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: Option<Arc<Path>>,
    /// 1-based document index in `file`.
    pub document: Option<usize>,
    /// 1-based file line.
    pub line: Option<usize>,
    /// 1-based column; only syntax errors have one.
    pub column: Option<usize>,
    /// `Gateway`, `VirtualService`, …
    pub kind: Option<String>,
    /// `namespace/name`.
    pub resource: Option<String>,
    /// Field path such as `spec.http[0].route[0].destination.port.number`.
    pub field: Option<String>,
    pub message: String,
}

impl Diagnostic {
    /// An error with nothing but a message; fill the rest in with struct update syntax
    /// (`Diagnostic { line: Some(3), ..Diagnostic::error("…") }`).
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: None,
            document: None,
            line: None,
            column: None,
            kind: None,
            resource: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::with_capacity(5);
        let mut location = String::new();
        if let Some(file) = &self.file {
            location.push_str(&file.display().to_string());
        }
        if let Some(line) = self.line {
            if location.is_empty() {
                location.push_str("line ");
            } else {
                location.push(':');
            }
            location.push_str(&line.to_string());
            if let Some(column) = self.column {
                location.push_str(&format!(":{column}"));
            }
        }
        if !location.is_empty() {
            parts.push(location);
        }
        if let Some(document) = self.document {
            parts.push(format!("document {document}"));
        }
        let subject =
            [self.kind.as_deref(), self.resource.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
        if !subject.is_empty() {
            parts.push(subject);
        }
        if let Some(field) = &self.field {
            parts.push(field.clone());
        }
        parts.push(self.message.clone());
        f.write_str(&parts.join(": "))
    }
}

/// A list of diagnostics in file/document order; the `Err` of [`super::load`] and of validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Self {
        Diagnostics(Vec::new())
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    /// The diagnostics of severity `Error`.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    /// One diagnostic per line, no trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Extend<Diagnostic> for Diagnostics {
    fn extend<I: IntoIterator<Item = Diagnostic>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl FromIterator<Diagnostic> for Diagnostics {
    fn from_iter<I: IntoIterator<Item = Diagnostic>>(iter: I) -> Self {
        Diagnostics(iter.into_iter().collect())
    }
}
