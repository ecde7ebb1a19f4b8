//! `--mesh FILE`: Istio's MeshConfig, the YAML under the `mesh` key of the `istio` ConfigMap
//! (istio/api `mesh/v1alpha1/config.proto`).
//!
//! Strait acts on `rootNamespace` (where AuthorizationPolicies apply mesh-wide),
//! `defaultConfig` (a ProxyConfig, which `--proxy-config` overrides field by field),
//! `dnsRefreshRate` (`--dns-refresh-rate` wins over it) and `h2UpgradePolicy` (the default of
//! a DestinationRule's `connectionPool.http.h2UpgradePolicy`), `pathNormalization`, and
//! `extensionProviders` of the `envoyExtAuthzHttp` and `envoyExtAuthzGrpc` kinds (CUSTOM
//! AuthorizationPolicies). The other providers are read and checked as istiod checks them, and
//! listed as not enforced with every other field. A field of the wrong type is refused, naming
//! file and field.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use super::flag_file;
use super::meta::{string_enum, Duration as IstioDuration};
use super::proxy_config::{self, Settings};
use super::{Diagnostic, Diagnostics, Severity};

/// What Strait reads of a MeshConfig.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshConfig {
    pub root_namespace: String,
    /// `defaultConfig`'s ProxyConfig settings.
    pub default_config: Settings,
    pub dns_refresh_rate: Option<Duration>,
    /// `UPGRADE` → `Some(true)`, `DO_NOT_UPGRADE` → `Some(false)`; `DEFAULT` or unset → `None`.
    pub h2_upgrade: Option<bool>,
    pub path_normalization: Option<PathNormalization>,
    pub extension_providers: Vec<ExtensionProvider>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            root_namespace: super::index::ROOT_NAMESPACE.to_owned(),
            default_config: Settings::default(),
            dns_refresh_rate: None,
            h2_upgrade: None,
            path_normalization: None,
            extension_providers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathNormalization {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<NormalizationType>,
}

string_enum! {
    pub enum NormalizationType {
        Default = "DEFAULT",
        None = "NONE",
        Base = "BASE",
        MergeSlashes = "MERGE_SLASHES",
        DecodeAndMergeSlashes = "DECODE_AND_MERGE_SLASHES",
    }
}

string_enum! {
    pub enum H2UpgradePolicy {
        Default = "DEFAULT",
        DoNotUpgrade = "DO_NOT_UPGRADE",
        Upgrade = "UPGRADE",
    }
}

/// One `extensionProviders` entry: the external authorization kinds typed, the others (tracing,
/// access logs, metrics) kept as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProvider {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_ext_authz_http: Option<ExtAuthzHttp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_ext_authz_grpc: Option<ExtAuthzGrpc>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthzHttp {
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub port: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<IstioDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub fail_open: bool,
    #[serde(default)]
    pub clear_route_cache: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_on_error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_headers_in_check: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_request_headers_in_check: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_request_body_in_check: Option<BodyInCheck>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_upstream_on_allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_downstream_on_deny: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_downstream_on_allow: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthzGrpc {
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub port: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<IstioDuration>,
    #[serde(default)]
    pub fail_open: bool,
    #[serde(default)]
    pub clear_route_cache: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_on_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_request_body_in_check: Option<BodyInCheck>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BodyInCheck {
    #[serde(default)]
    pub max_request_bytes: u32,
    #[serde(default)]
    pub allow_partial_message: bool,
    #[serde(default)]
    pub pack_as_bytes: bool,
}

/// Reads `path` for the instance labelled `labels`: the settings and the fields not enforced
/// (warnings), or every error.
pub fn read(path: &Path, labels: &BTreeMap<String, String>) -> Result<(MeshConfig, Diagnostics), Diagnostics> {
    let (file, text) = flag_file::read(path, "--mesh")?;
    parse(&text, &file, labels)
}

fn parse(
    text: &str,
    file: &Arc<Path>,
    labels: &BTreeMap<String, String>,
) -> Result<(MeshConfig, Diagnostics), Diagnostics> {
    let at = |severity: Severity, field: &str, message: String| {
        flag_file::at(text, file, "MeshConfig", severity, field, message)
    };
    let root = flag_file::yaml(text, file)?;
    let root = match root {
        Value::Mapping(m) => m,
        Value::Null => Default::default(),
        _ => return Err(at(Severity::Error, "", "expected a MeshConfig mapping".into()).into()),
    };
    let mut mesh = MeshConfig::default();
    let mut warnings = Diagnostics::new();
    let mut errors = Diagnostics::new();
    for (key, value) in &root {
        let Some(key) = key.as_str() else {
            errors.push(at(Severity::Error, "", "field names are strings".into()));
            continue;
        };
        if value.is_null() {
            continue;
        }
        match key {
            "rootNamespace" => {
                if let Some(ns) = typed::<String>(value, key, &at, &mut errors) {
                    if ns.is_empty() {
                        errors.push(at(Severity::Error, key, "must not be empty".into()));
                    } else {
                        mesh.root_namespace = ns;
                    }
                }
            }
            "dnsRefreshRate" => {
                if let Some(d) = typed::<IstioDuration>(value, key, &at, &mut errors) {
                    // istiod's ValidateMeshConfig: a positive duration.
                    if d.get().is_zero() {
                        errors.push(at(Severity::Error, key, "must be greater than 0".into()));
                    } else {
                        mesh.dns_refresh_rate = Some(d.get());
                    }
                }
            }
            "h2UpgradePolicy" => {
                mesh.h2_upgrade = typed::<H2UpgradePolicy>(value, key, &at, &mut errors).and_then(|p| match p {
                    H2UpgradePolicy::Upgrade => Some(true),
                    H2UpgradePolicy::DoNotUpgrade => Some(false),
                    H2UpgradePolicy::Default => None,
                });
            }
            "defaultConfig" => match value {
                Value::Mapping(fields) => {
                    let (settings, w, e) = proxy_config::fields(fields, "defaultConfig.", false, labels, &at);
                    mesh.default_config = settings;
                    warnings.extend(w);
                    errors.extend(e);
                }
                _ => errors.push(at(Severity::Error, key, "expected a ProxyConfig mapping".into())),
            },
            "pathNormalization" => {
                mesh.path_normalization = typed::<PathNormalization>(value, key, &at, &mut errors);
            }
            "extensionProviders" => {
                if let Some(providers) = typed::<Vec<ExtensionProvider>>(value, key, &at, &mut errors) {
                    for (i, p) in providers.iter().enumerate() {
                        let field = format!("{key}[{i}]");
                        errors.extend(provider(p, &field, &providers[..i], &at));
                        let not_enforced = match (&p.envoy_ext_authz_http, &p.envoy_ext_authz_grpc) {
                            (Some(h), _) => http_not_enforced(h),
                            (None, Some(g)) => grpc_not_enforced(g),
                            (None, None) => vec![String::new()],
                        };
                        for sub in not_enforced {
                            let field = super::source::join_path(&field, &sub);
                            warnings.push(at(Severity::NotEnforced, &field, "accepted, not enforced yet".into()));
                        }
                    }
                    mesh.extension_providers = providers;
                }
            }
            _ => warnings.push(at(Severity::NotEnforced, key, "accepted, not enforced yet".into())),
        }
    }
    if errors.is_empty() {
        Ok((mesh, warnings))
    } else {
        Err(errors)
    }
}

/// One field deserialized, or `None` with its error (naming the field, and the nested path
/// serde found) added to `errors`.
fn typed<T: DeserializeOwned>(
    value: &Value,
    field: &str,
    at: &dyn Fn(Severity, &str, String) -> Diagnostic,
    errors: &mut Diagnostics,
) -> Option<T> {
    serde_path_to_error::deserialize(value.clone())
        .map_err(|e| {
            let field = super::source::join_path(field, &super::load::render_path(e.path()));
            errors.push(at(Severity::Error, &field, e.into_inner().to_string()));
        })
        .ok()
}

/// The fields of an `envoyExtAuthzHttp` provider Strait does not act on yet, relative to the
/// provider's entry.
fn http_not_enforced(h: &ExtAuthzHttp) -> Vec<String> {
    let set = [("envoyExtAuthzHttp.clearRouteCache", h.clear_route_cache)];
    set.iter().filter(|(_, on)| *on).map(|(f, _)| (*f).to_owned()).collect()
}

/// The same for an `envoyExtAuthzGrpc` provider.
fn grpc_not_enforced(g: &ExtAuthzGrpc) -> Vec<String> {
    let set = [("envoyExtAuthzGrpc.clearRouteCache", g.clear_route_cache)];
    set.iter().filter(|(_, on)| *on).map(|(f, _)| (*f).to_owned()).collect()
}

/// istiod's `ValidateExtensionProvider` for the external authorization kinds: a unique name,
/// a service and a port; a path prefix starting with `/`; a status an HTTP code.
fn provider(
    p: &ExtensionProvider,
    field: &str,
    before: &[ExtensionProvider],
    at: &dyn Fn(Severity, &str, String) -> Diagnostic,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if p.name.is_empty() {
        out.push(at(Severity::Error, &format!("{field}.name"), "empty extension provider name".into()));
    } else if before.iter().any(|b| b.name == p.name) {
        out.push(at(
            Severity::Error,
            &format!("{field}.name"),
            format!("duplicate extension provider name {}", p.name),
        ));
    }
    let kinds =
        usize::from(p.envoy_ext_authz_http.is_some()) + usize::from(p.envoy_ext_authz_grpc.is_some()) + p.other.len();
    if kinds != 1 {
        out.push(at(Severity::Error, field, format!("expected one provider kind beside name, found {kinds}")));
    }
    let common = |kind: &str, service: &str, port: u32, status: Option<&str>, out: &mut Vec<Diagnostic>| {
        let f = format!("{field}.{kind}");
        if service.is_empty() {
            out.push(at(Severity::Error, &format!("{f}.service"), "service must not be empty".into()));
        }
        if !(1..=65535).contains(&port) {
            out.push(at(
                Severity::Error,
                &format!("{f}.port"),
                format!("port number {port} must be in the range 1..65535"),
            ));
        }
        if let Some(s) = status {
            if !s.parse::<u16>().is_ok_and(|c| (100..600).contains(&c)) {
                out.push(at(
                    Severity::Error,
                    &format!("{f}.statusOnError"),
                    format!("invalid statusOnError value {s}"),
                ));
            }
        }
    };
    if let Some(h) = &p.envoy_ext_authz_http {
        common("envoyExtAuthzHttp", &h.service, h.port, h.status_on_error.as_deref(), &mut out);
        if h.path_prefix.as_deref().is_some_and(|pp| !pp.starts_with('/')) {
            out.push(at(
                Severity::Error,
                &format!("{field}.envoyExtAuthzHttp.pathPrefix"),
                "pathPrefix should begin with `/`".into(),
            ));
        }
    }
    if let Some(g) = &p.envoy_ext_authz_grpc {
        common("envoyExtAuthzGrpc", &g.service, g.port, g.status_on_error.as_deref(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests;
