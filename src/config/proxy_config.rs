//! `--proxy-config FILE`: the gateway proxy's own settings, as Istio's ProxyConfig names them.
//! They override MeshConfig's `defaultConfig` (`--mesh`, read with [`fields`]) field by field,
//! as the `proxy.istio.io/config` annotation does.
//!
//! The file holds one document: an Istio `ProxyConfig` resource (`networking.istio.io/v1beta1`,
//! its fields under `spec`), or a bare ProxyConfig mapping as the `proxy.istio.io/config` pod
//! annotation carries it (the form ASM's docs give). Strait acts on `httpsHttp2Disabled`,
//! `gatewayTopology`'s `numTrustedProxies`, `proxyProtocol` and `forwardClientCertDetails` (and a resource's
//! `selector`, matched against `--label`); every other field is listed as not enforced, and a
//! field of the wrong type is refused, naming file and field.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_yaml::Value;

use super::flag_file;
use super::index::labels_subset;
use super::{Diagnostic, Diagnostics, Severity};

/// What Strait acts on of a ProxyConfig.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// ASM's `httpsHttp2Disabled`: HTTPS servers offer ALPN `http/1.1` only. Plain HTTP ports
    /// keep h2c, as ASM documents ("plaintext HTTP listeners are not affected").
    pub https_http2_disabled: bool,
    /// `gatewayTopology.numTrustedProxies`: istiod's `xff_num_trusted_hops`; the client is the
    /// Nth address from the right of `x-forwarded-for` (see `snapshot::authz::remote_ip`).
    pub num_trusted_proxies: u32,
    /// `gatewayTopology.proxyProtocol` set: every listener reads a PROXY v1 or v2 header first
    /// and refuses a connection without one, as istiod's `proxy_protocol` listener filter does.
    pub proxy_protocol: bool,
    /// `gatewayTopology.forwardClientCertDetails`: SANITIZE_SET at a gateway when unset.
    pub forward_client_cert: ForwardClientCert,
}

/// What happens to `x-forwarded-client-cert`, as Envoy's `forward_client_cert_details` modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardClientCert {
    /// Dropped.
    Sanitize,
    /// The client's passed on when the connection is mTLS, else dropped.
    ForwardOnly,
    /// The gateway's appended to the client's when mTLS, else dropped.
    AppendForward,
    /// The gateway's replaces the client's when mTLS, else dropped (istiod's gateway default).
    #[default]
    SanitizeSet,
    /// The client's passed on whatever the connection.
    AlwaysForwardOnly,
}

/// The fields one ProxyConfig source sets, each `None` where it leaves the field to the next
/// source (`--proxy-config` over MeshConfig's `defaultConfig` over the defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    pub https_http2_disabled: Option<bool>,
    pub num_trusted_proxies: Option<u32>,
    pub proxy_protocol: Option<bool>,
    pub forward_client_cert: Option<ForwardClientCert>,
}

impl Settings {
    /// These settings, `under`'s where these leave a field unset.
    pub fn over(self, under: Settings) -> Settings {
        Settings {
            https_http2_disabled: self.https_http2_disabled.or(under.https_http2_disabled),
            num_trusted_proxies: self.num_trusted_proxies.or(under.num_trusted_proxies),
            proxy_protocol: self.proxy_protocol.or(under.proxy_protocol),
            forward_client_cert: self.forward_client_cert.or(under.forward_client_cert),
        }
    }

    pub fn resolve(self) -> ProxyConfig {
        ProxyConfig {
            https_http2_disabled: self.https_http2_disabled.unwrap_or(false),
            num_trusted_proxies: self.num_trusted_proxies.unwrap_or(0),
            proxy_protocol: self.proxy_protocol.unwrap_or(false),
            forward_client_cert: self.forward_client_cert.unwrap_or_default(),
        }
    }
}

/// Reads `path` for the instance labelled `labels`: the settings and the fields not enforced
/// (warnings), or every error. A resource whose `selector` picks other workloads applies to
/// none of this instance's settings: reported as a reference to nothing, as a Gateway's is.
pub fn read(path: &Path, labels: &BTreeMap<String, String>) -> Result<(Settings, Diagnostics), Diagnostics> {
    let (file, text) = flag_file::read(path, "--proxy-config")?;
    parse(&text, &file, labels)
}

fn parse(
    text: &str,
    file: &Arc<Path>,
    labels: &BTreeMap<String, String>,
) -> Result<(Settings, Diagnostics), Diagnostics> {
    let at = |severity: Severity, field: &str, message: String| {
        flag_file::at(text, file, "ProxyConfig", severity, field, message)
    };
    let root = flag_file::yaml(text, file)?;
    let Value::Mapping(root) = root else {
        return Err(at(Severity::Error, "", "expected a ProxyConfig mapping".into()).into());
    };
    // A resource carries its fields under `spec`; the annotation's form is the fields alone.
    let (prefix, map) = match root.get("kind") {
        Some(Value::String(kind)) if kind == "ProxyConfig" => {
            let api_version = root.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            if api_version != "networking.istio.io/v1beta1" {
                let message =
                    format!("apiVersion {api_version} is not served for ProxyConfig (networking.istio.io/v1beta1)");
                return Err(at(Severity::Error, "apiVersion", message).into());
            }
            match root.get("spec") {
                Some(Value::Mapping(spec)) => ("spec.", spec.clone()),
                None | Some(Value::Null) => ("spec.", Default::default()),
                Some(_) => return Err(at(Severity::Error, "spec", "expected a mapping".into()).into()),
            }
        }
        Some(other) => {
            let message =
                format!("kind {}: expected ProxyConfig", serde_yaml::to_string(other).unwrap_or_default().trim());
            return Err(at(Severity::Error, "kind", message).into());
        }
        None => ("", root),
    };
    let (settings, warnings, errors) = fields(&map, prefix, !prefix.is_empty(), labels, &at);
    if errors.is_empty() {
        Ok((settings, warnings))
    } else {
        Err(errors)
    }
}

/// A ProxyConfig's fields (`prefix` names where they sit: `spec.`, `defaultConfig.`, or
/// nothing), with `selector` read when `resource`: (settings, warnings, errors). A selector of
/// other workloads sets nothing.
pub(crate) fn fields(
    fields: &serde_yaml::Mapping,
    prefix: &str,
    resource: bool,
    labels: &BTreeMap<String, String>,
    at: &dyn Fn(Severity, &str, String) -> Diagnostic,
) -> (Settings, Diagnostics, Diagnostics) {
    let mut config = Settings::default();
    let mut warnings = Diagnostics::new();
    let mut errors = Diagnostics::new();
    let mut selected = true;
    for (key, value) in fields {
        let Some(key) = key.as_str() else {
            errors.push(at(Severity::Error, prefix.trim_end_matches('.'), "field names are strings".into()));
            continue;
        };
        let field = format!("{prefix}{key}");
        match key {
            "httpsHttp2Disabled" => match value {
                Value::Bool(b) => config.https_http2_disabled = Some(*b),
                Value::Null => {}
                _ => errors.push(at(Severity::Error, &field, "expected true or false".into())),
            },
            "gatewayTopology" => match value {
                Value::Mapping(topology) => {
                    gateway_topology(topology, &field, &mut config, &mut warnings, &mut errors, at)
                }
                Value::Null => {}
                _ => errors.push(at(Severity::Error, &field, "expected a mapping".into())),
            },
            "selector" if resource => match match_labels(value) {
                Some(selector) if !labels_subset(&selector, labels) => {
                    let show = |l: &BTreeMap<String, String>| {
                        l.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
                    };
                    let message = format!(
                        "selects other workloads: \"{}\"; this instance's labels (--label) are {}, so none of \
                         this ProxyConfig applies",
                        show(&selector),
                        show(labels)
                    );
                    warnings.push(at(Severity::Dangling, &field, message));
                    selected = false;
                }
                Some(_) => {}
                None => errors.push(at(Severity::Error, &field, "expected matchLabels, a map of strings".into())),
            },
            _ => warnings.push(at(Severity::NotEnforced, &field, "accepted, not enforced yet".into())),
        }
    }
    if !selected {
        config = Settings::default();
    }
    (config, warnings, errors)
}

/// `gatewayTopology`'s fields into `config` (`prefix` is its own field name).
fn gateway_topology(
    topology: &serde_yaml::Mapping,
    prefix: &str,
    config: &mut Settings,
    warnings: &mut Diagnostics,
    errors: &mut Diagnostics,
    at: &dyn Fn(Severity, &str, String) -> Diagnostic,
) {
    for (key, value) in topology {
        let key = key.as_str().unwrap_or_default();
        let field = format!("{prefix}.{key}");
        match key {
            "numTrustedProxies" => match value.as_u64().map(u32::try_from) {
                Some(Ok(n)) => config.num_trusted_proxies = Some(n),
                _ => errors.push(at(Severity::Error, &field, "expected a non-negative integer".into())),
            },
            // A message with no fields: present (even `{}`) turns the listener filter on.
            "proxyProtocol" => match value {
                Value::Mapping(_) | Value::Null => config.proxy_protocol = Some(true),
                _ => errors.push(at(Severity::Error, &field, "expected a mapping ({})".into())),
            },
            "forwardClientCertDetails" => {
                let mode = match value.as_str() {
                    // istiod reads UNDEFINED as unset: SANITIZE_SET at a gateway.
                    Some("UNDEFINED") => Some(None),
                    Some("SANITIZE") => Some(Some(ForwardClientCert::Sanitize)),
                    Some("FORWARD_ONLY") => Some(Some(ForwardClientCert::ForwardOnly)),
                    Some("APPEND_FORWARD") => Some(Some(ForwardClientCert::AppendForward)),
                    Some("SANITIZE_SET") => Some(Some(ForwardClientCert::SanitizeSet)),
                    Some("ALWAYS_FORWARD_ONLY") => Some(Some(ForwardClientCert::AlwaysForwardOnly)),
                    _ => None,
                };
                match mode {
                    Some(mode) => config.forward_client_cert = mode,
                    None => errors.push(at(
                        Severity::Error,
                        &field,
                        "expected SANITIZE, FORWARD_ONLY, APPEND_FORWARD, SANITIZE_SET or ALWAYS_FORWARD_ONLY".into(),
                    )),
                }
            }
            _ => warnings.push(at(Severity::NotEnforced, &field, "accepted, not enforced yet".into())),
        }
    }
}

/// A WorkloadSelector's `matchLabels` (an empty selector selects every workload).
fn match_labels(selector: &Value) -> Option<BTreeMap<String, String>> {
    let Value::Mapping(selector) = selector else {
        return selector.is_null().then(BTreeMap::new);
    };
    let mut labels = BTreeMap::new();
    for (key, value) in selector {
        match (key.as_str()?, value) {
            ("matchLabels", Value::Mapping(m)) => {
                for (k, v) in m {
                    labels.insert(k.as_str()?.to_owned(), v.as_str()?.to_owned());
                }
            }
            ("matchLabels", Value::Null) => {}
            _ => return None,
        }
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<(ProxyConfig, Diagnostics), Diagnostics> {
        parse_settings(text).map(|(s, w)| (s.resolve(), w))
    }

    fn parse_settings(text: &str) -> Result<(Settings, Diagnostics), Diagnostics> {
        let labels = BTreeMap::from([("istio".to_owned(), "ingressgateway".to_owned())]);
        parse(text, &Arc::from(Path::new("proxy.yaml")), &labels)
    }

    #[test]
    fn the_resource_and_the_annotation_form_both_disable_http2() {
        let resource = "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata:\n  name: gw\n\
                        spec:\n  selector:\n    matchLabels:\n      istio: ingressgateway\n  httpsHttp2Disabled: true\n";
        let (config, warnings) = parsed(resource).unwrap();
        assert!(config.https_http2_disabled);
        assert!(warnings.is_empty(), "{warnings}");
        let (config, _) = parsed("httpsHttp2Disabled: true\n").unwrap();
        assert!(config.https_http2_disabled);
        let (config, _) = parsed("httpsHttp2Disabled: false\n").unwrap();
        assert!(!config.https_http2_disabled);
    }

    #[test]
    fn gateway_topology_sets_the_trusted_proxies_and_proxy_protocol() {
        let (config, warnings) = parsed(
            "gatewayTopology:\n  numTrustedProxies: 2\n  proxyProtocol: {}\n  forwardClientCertDetails: SANITIZE\n  x: 1\n",
        )
        .unwrap();
        assert_eq!((config.num_trusted_proxies, config.proxy_protocol), (2, true));
        assert_eq!(config.forward_client_cert, ForwardClientCert::Sanitize);
        assert!(parsed("gatewayTopology:\n  forwardClientCertDetails: SOMETIMES\n").is_err());
        let listed: Vec<_> = warnings.iter().map(|d| d.field.clone().unwrap()).collect();
        assert_eq!(listed, ["gatewayTopology.x"]);
        let (config, _) = parsed("httpsHttp2Disabled: true\n").unwrap();
        assert_eq!((config.num_trusted_proxies, config.proxy_protocol), (0, false));
        assert_eq!(config.forward_client_cert, ForwardClientCert::SanitizeSet);
        let errors = parsed("gatewayTopology:\n  numTrustedProxies: -1\n").unwrap_err();
        assert_eq!(errors.iter().next().unwrap().field.as_deref(), Some("gatewayTopology.numTrustedProxies"));
        assert!(parsed("gatewayTopology:\n  proxyProtocol: true\n").is_err());
    }

    #[test]
    fn a_selector_of_other_workloads_applies_nothing() {
        let text =
            "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nspec:\n  selector:\n    matchLabels:\n      \
                    app: other\n  httpsHttp2Disabled: true\n";
        let (config, warnings) = parsed(text).unwrap();
        assert!(!config.https_http2_disabled);
        let d = warnings.iter().next().unwrap();
        assert_eq!((d.severity, d.field.as_deref(), d.line), (Severity::Dangling, Some("spec.selector"), Some(4)));
        assert!(parsed("apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nspec:\n  selector: 3\n").is_err());
    }

    #[test]
    fn other_fields_are_listed_as_not_enforced() {
        let (config, warnings) =
            parsed("concurrency: 2\nhttpsHttp2Disabled: true\nimage:\n  imageType: distroless\n").unwrap();
        assert!(config.https_http2_disabled);
        let listed: Vec<_> = warnings.iter().map(|d| (d.severity, d.field.clone().unwrap(), d.line)).collect();
        assert_eq!(
            listed,
            [
                (Severity::NotEnforced, "concurrency".to_owned(), Some(1)),
                (Severity::NotEnforced, "image".to_owned(), Some(3))
            ]
        );
    }

    #[test]
    fn bad_values_are_refused_with_file_and_field() {
        let text =
            "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nspec:\n  httpsHttp2Disabled: yes please\n";
        let errors = parsed(text).unwrap_err();
        let d = errors.iter().next().unwrap();
        assert_eq!(d.field.as_deref(), Some("spec.httpsHttp2Disabled"));
        assert_eq!(d.line, Some(4));
        assert!(d.to_string().starts_with("proxy.yaml:4"), "{d}");
        assert!(parsed("kind: Gateway\n").is_err());
        assert!(parsed("apiVersion: v1\nkind: ProxyConfig\n").is_err());
        assert!(parsed("httpsHttp2Disabled: [\n").unwrap_err().iter().next().unwrap().line.is_some());
        assert!(parsed("- a\n").is_err());
    }
}
