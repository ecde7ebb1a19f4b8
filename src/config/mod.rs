//! Istio YAML → typed resources: the serde model of the kinds Strait serves, the file loader
//! with file/document/line positions, and the diagnostics every config fault is reported as.
//!
//! [`load`] reads files and directories (a directory contributes the `*.yaml` / `*.yml` files
//! directly inside it, sorted by name; subdirectories are not descended into, so that a
//! directory of configs can keep backups or other tools' files in subfolders). Each file is
//! split into `---` documents; empty ones are skipped. Documents of other API groups
//! (Deployment, Service, …) are skipped with a debug log, except core `v1` `Secret`, which
//! `credentialName` resolves to, and `v1` `List`, whose `items` are loaded as documents. Of
//! Istio's groups, the kinds Strait serves are read in full (an unknown field or a wrong type is
//! an error); the kinds it does not act on yet ([`NOT_ENFORCED_KINDS`]) are kept as
//! [`Unenforced`], for `validate` and `run` to list; any other kind or version is an error, as
//! Istio has no such resource. A set with nothing Strait reads is an error too. Every error of
//! every file is collected, in file and document order.

pub mod asm_global_rate_limiter;
pub mod asm_local_rate_limiter;
pub mod authorization_policy;
pub mod credentials;
pub mod destination_rule;
pub mod diagnostics;
pub mod envoy_filter;
mod flag_file;
pub mod gateway;
pub mod index;
pub mod jwks;
mod load;
pub mod mesh_config;
pub mod meta;
pub mod proxy_config;
pub mod registry;
pub mod request_authentication;
pub mod secret;
pub mod service_entry;
mod source;
#[cfg(test)]
mod tests;
mod validate;
pub mod virtual_service;

use std::path::Path;
use std::sync::Arc;

pub use asm_global_rate_limiter::AsmGlobalRateLimiter;
pub use asm_local_rate_limiter::AsmLocalRateLimiter;
pub use authorization_policy::AuthorizationPolicy;
pub use destination_rule::DestinationRule;
pub use diagnostics::{Diagnostic, Diagnostics, Severity};
pub use envoy_filter::EnvoyFilter;
pub use gateway::Gateway;
pub use load::{config_files, load, load_with_objects, ApiObject};
pub use meta::{Duration, ObjectMeta, Percent};
pub use request_authentication::RequestAuthentication;
pub use secret::Secret;
pub use service_entry::ServiceEntry;
pub use source::locate;
pub use validate::{validate, ValidateOptions};
pub use virtual_service::VirtualService;

/// The Kubernetes `kind` of a spec type, for messages and diagnostics.
pub trait Kind {
    const KIND: &'static str;
}

impl Kind for Gateway {
    const KIND: &'static str = "Gateway";
}
impl Kind for VirtualService {
    const KIND: &'static str = "VirtualService";
}
impl Kind for DestinationRule {
    const KIND: &'static str = "DestinationRule";
}
impl Kind for ServiceEntry {
    const KIND: &'static str = "ServiceEntry";
}
impl Kind for AuthorizationPolicy {
    const KIND: &'static str = "AuthorizationPolicy";
}
impl Kind for EnvoyFilter {
    const KIND: &'static str = "EnvoyFilter";
}
impl Kind for Secret {
    const KIND: &'static str = "Secret";
}
impl Kind for AsmLocalRateLimiter {
    const KIND: &'static str = "ASMLocalRateLimiter";
}
impl Kind for AsmGlobalRateLimiter {
    const KIND: &'static str = "ASMGlobalRateLimiter";
}
impl Kind for RequestAuthentication {
    const KIND: &'static str = "RequestAuthentication";
}

/// Where a resource came from.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: Arc<Path>,
    /// 1-based index of the document in its file, counting every `---` section.
    pub document: usize,
    /// 1-based file line where the resource starts: the document's first content line (its
    /// `---` marker excluded), or the item's first line for an item of a `kind: List`.
    pub line: usize,
    /// The whole document's text, which [`Origin::locate`] walks to put a line on a field.
    pub source: Arc<str>,
    /// File line of `source`'s first line.
    pub source_line: usize,
    /// Index in `items` when the resource came from a `kind: List` document.
    pub item: Option<usize>,
}

impl Origin {
    /// File line of `path` (`spec.http[0].route`, as diagnostics write fields) within this
    /// resource: the deepest existing node along the path (see [`locate`]), falling back to
    /// the resource's first line.
    pub fn locate(&self, path: &str) -> usize {
        let path = match self.item {
            Some(i) => source::join_path(&format!("items[{i}]"), path),
            None => path.to_owned(),
        };
        locate(&self.source, self.source_line, &path).unwrap_or(self.line)
    }
}

/// One loaded resource of kind `T`.
#[derive(Debug, Clone)]
pub struct Resource<T> {
    /// `namespace` is always `Some` (defaulted to `default`), `name` always `Some`.
    pub meta: ObjectMeta,
    pub spec: T,
    pub origin: Origin,
    pub api_version: String,
}

impl<T> Resource<T> {
    pub fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }

    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or_default()
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace(), self.name())
    }

    /// A diagnostic about `field` of this resource (`""` for the resource as a whole), with
    /// file, document, kind, name and the field's line filled in.
    pub fn diagnostic(&self, severity: Severity, field: impl Into<String>, message: impl Into<String>) -> Diagnostic
    where
        T: Kind,
    {
        let field = field.into();
        Diagnostic {
            severity,
            file: Some(self.origin.file.clone()),
            document: Some(self.origin.document),
            line: Some(self.origin.locate(&field)),
            column: None,
            kind: Some(T::KIND.to_owned()),
            resource: Some(self.key()),
            field: (!field.is_empty()).then_some(field),
            message: message.into(),
        }
    }
}

/// Every resource of every served kind, each `Vec` in load order: paths in the order given,
/// files of a directory sorted by name, documents in file order.
#[derive(Debug, Clone, Default)]
pub struct ConfigSet {
    pub gateways: Vec<Resource<Gateway>>,
    pub virtual_services: Vec<Resource<VirtualService>>,
    pub destination_rules: Vec<Resource<DestinationRule>>,
    pub service_entries: Vec<Resource<ServiceEntry>>,
    pub secrets: Vec<Resource<Secret>>,
    /// `istio.alibabacloud.com` local throttling rules.
    pub asm_local_rate_limiters: Vec<Resource<AsmLocalRateLimiter>>,
    /// `istio.alibabacloud.com` global throttling rules (counters in `--redis`).
    pub asm_global_rate_limiters: Vec<Resource<AsmGlobalRateLimiter>>,
    pub authorization_policies: Vec<Resource<AuthorizationPolicy>>,
    pub envoy_filters: Vec<Resource<EnvoyFilter>>,
    pub request_authentications: Vec<Resource<RequestAuthentication>>,
    pub not_enforced: Vec<Unenforced>,
    /// `--proxy-config`'s settings over `--mesh`'s `defaultConfig` (the defaults without them).
    pub proxy: proxy_config::ProxyConfig,
    /// `--mesh`'s MeshConfig (Istio's defaults without one).
    pub mesh: mesh_config::MeshConfig,
}

impl ConfigSet {
    /// Nothing of a kind Strait reads.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Leaves out every resource that came from `file` (an object refused alone); false when
    /// there was none.
    pub fn remove_file(&mut self, file: &Path) -> bool {
        let keep = |origin: &Origin| &*origin.file != file;
        let before = self.len();
        self.gateways.retain(|r| keep(&r.origin));
        self.virtual_services.retain(|r| keep(&r.origin));
        self.destination_rules.retain(|r| keep(&r.origin));
        self.service_entries.retain(|r| keep(&r.origin));
        self.secrets.retain(|r| keep(&r.origin));
        self.asm_local_rate_limiters.retain(|r| keep(&r.origin));
        self.asm_global_rate_limiters.retain(|r| keep(&r.origin));
        self.authorization_policies.retain(|r| keep(&r.origin));
        self.envoy_filters.retain(|r| keep(&r.origin));
        self.request_authentications.retain(|r| keep(&r.origin));
        self.not_enforced.retain(|u| keep(&u.origin));
        self.len() != before
    }

    /// How many resources of every kind it holds.
    fn len(&self) -> usize {
        self.gateways.len()
            + self.virtual_services.len()
            + self.destination_rules.len()
            + self.service_entries.len()
            + self.secrets.len()
            + self.asm_local_rate_limiters.len()
            + self.asm_global_rate_limiters.len()
            + self.authorization_policies.len()
            + self.envoy_filters.len()
            + self.request_authentications.len()
            + self.not_enforced.len()
    }
}

/// A document of an Istio kind Strait accepts but does not act on yet: kept so that `validate`
/// and `run` list it rather than drop it in silence. Its spec is not read.
#[derive(Debug, Clone)]
pub struct Unenforced {
    pub kind: String,
    /// `namespace/name`, when the document names itself.
    pub resource: Option<String>,
    pub origin: Origin,
}

/// Istio's kinds that Strait accepts but does not act on yet, with the versions Istio serves
/// each in: `(group, kind, versions)`. Delete a row when Strait starts acting on its kind.
pub const NOT_ENFORCED_KINDS: &[(&str, &str, &[&str])] = &[
    ("networking.istio.io", "Sidecar", &ISTIO_VERSIONS),
    ("networking.istio.io", "WorkloadEntry", &ISTIO_VERSIONS),
    ("networking.istio.io", "WorkloadGroup", &ISTIO_VERSIONS),
    ("networking.istio.io", "ProxyConfig", &["v1beta1"]),
    ("security.istio.io", "PeerAuthentication", &["v1", "v1beta1"]),
    ("telemetry.istio.io", "Telemetry", &["v1", "v1alpha1"]),
    ("extensions.istio.io", "WasmPlugin", &["v1alpha1"]),
    ("extensions.istio.io", "TrafficExtension", &["v1alpha1"]),
];

/// The versions Alibaba Cloud Service Mesh serves its `istio.alibabacloud.com` kinds in.
pub const ASM_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// The `networking.istio.io` kinds Strait serves.
const SERVED_KINDS: [&str; 5] = ["Gateway", "VirtualService", "DestinationRule", "ServiceEntry", "EnvoyFilter"];

/// The `security.istio.io` kinds Strait serves, with their versions.
const SERVED_SECURITY_KINDS: [(&str, &[&str]); 2] =
    [("AuthorizationPolicy", &["v1", "v1beta1"]), ("RequestAuthentication", &["v1", "v1beta1"])];

/// `metadata.namespace` when a document names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The `networking.istio.io` versions Istio serves (all three carry the same schema).
const ISTIO_VERSIONS: [&str; 3] = ["v1alpha3", "v1beta1", "v1"];
