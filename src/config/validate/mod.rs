//! Semantic checks on a loaded [`ConfigSet`], as Istio draws the lines (ARCHITECTURE.md "Two
//! kinds of config fault"): what its validation webhook refuses ([`Severity::Error`]), what
//! `istioctl analyze` reports as an error, such as IST0101 ([`Severity::Dangling`]), and what
//! Strait accepts but does not enforce yet ([`Severity::NotEnforced`]).
//!
//! One file per concern: each kind's own rules, cross-resource references, and the table of
//! fields not enforced yet.

mod authorization_policy;
mod destination_rule;
mod envoy_filter;
mod gateway;
mod not_enforced;
mod references;
mod request_authentication;
mod service_entry;
#[cfg(test)]
mod tests;
mod virtual_service;

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{ConfigSet, Diagnostics, Kind, Resource, Severity};

/// What the set is validated for: the same inputs `strait run` compiles with.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// Where `credentialName` falls back to when no Secret in the set has the name.
    pub secrets_dir: Option<PathBuf>,
    /// The instance's labels, matched against Gateway selectors; empty means Istio's default
    /// ingress labels (`istio=ingressgateway`), as `strait` uses with no `--label`.
    pub labels: BTreeMap<String, String>,
    /// The gateway's own namespace (`--namespace`), where `credentialName` Secrets are found.
    pub namespace: String,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        Self { secrets_dir: None, labels: BTreeMap::new(), namespace: super::DEFAULT_NAMESPACE.to_owned() }
    }
}

impl ValidateOptions {
    fn instance_labels(&self) -> BTreeMap<String, String> {
        if self.labels.is_empty() {
            BTreeMap::from([("istio".to_owned(), "ingressgateway".to_owned())])
        } else {
            self.labels.clone()
        }
    }
}

/// Every fault of `set`, in file, document and line order. `Error`s make the set unservable;
/// `Dangling` references are served as Istio serves them (503, or unbound); `NotEnforced` are
/// warnings.
pub fn validate(set: &ConfigSet, opts: &ValidateOptions) -> Diagnostics {
    let labels = opts.instance_labels();
    let mut out = Diagnostics::new();
    gateway::check(set, opts, &labels, &mut out);
    virtual_service::check(set, &mut out);
    destination_rule::check(set, &mut out);
    service_entry::check(set, &mut out);
    references::check(set, &labels, &opts.namespace, &mut out);
    authorization_policy::check(set, &labels, &opts.namespace, &mut out);
    envoy_filter::check(set, &mut out);
    request_authentication::check(set, &labels, &opts.namespace, &mut out);
    not_enforced::check(set, &mut out);
    out.0.sort_by(|a, b| (&a.file, a.document, a.line).cmp(&(&b.file, b.document, b.line)));
    out
}

/// Where a check reports: the resource and the diagnostics list.
struct At<'a, T> {
    resource: &'a Resource<T>,
    out: &'a mut Diagnostics,
}

impl<T: Kind> At<'_, T> {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, field, message);
    }

    fn push(&mut self, severity: Severity, field: impl Into<String>, message: impl Into<String>) {
        let d = self.resource.diagnostic(severity, field, message);
        self.out.push(d);
    }

    /// Istio's `ValidatePort`.
    fn port(&mut self, field: impl Into<String>, number: u32) {
        if !(1..=65535).contains(&number) {
            self.error(field, format!("port number {number} must be in the range 1..65535"));
        }
    }

    /// Istio's `ValidatePercent` / `validatePercentage`.
    fn percent(&mut self, field: impl Into<String>, value: f64) {
        if !(0.0..=100.0).contains(&value) {
            self.error(field, format!("percentage {value} is not in range 0..100"));
        }
    }

    /// Istio's `ValidateWildcardDomain`, as far as wildcards go: `*` only as the whole host or
    /// its leftmost character.
    fn host(&mut self, field: impl Into<String>, host: &str) {
        if host.is_empty() {
            self.error(field, "host is required");
        } else if host.chars().skip(1).any(|c| c == '*') {
            self.error(field, format!("invalid host {host}: a wildcard is only allowed as the leftmost character"));
        }
    }

    /// Istio's `validateStringMatchRegexp`: RE2 syntax, which the `regex` crate implements.
    fn regex(&mut self, field: impl Into<String>, pattern: &str) {
        if let Err(e) = regex::Regex::new(pattern) {
            // The crate's syntax errors draw a caret diagram; its last line is the reason.
            let text = e.to_string();
            let reason = text.lines().last().unwrap_or_default();
            let reason = reason.strip_prefix("error: ").unwrap_or(reason);
            self.error(field, format!("invalid regex {pattern:?}: {reason} (RE2 syntax)"));
        }
    }
}

/// A DNS-1123 label (a namespace or resource name): lower-case alphanumerics and `-`, at most
/// 63, alphanumeric at both ends.
fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}
