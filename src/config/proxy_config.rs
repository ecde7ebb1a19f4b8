//! `--proxy-config FILE`: the gateway proxy's own settings, as Istio's ProxyConfig names them.
//!
//! The file holds one document: an Istio `ProxyConfig` resource (`networking.istio.io/v1beta1`,
//! its fields under `spec`), or a bare ProxyConfig mapping as the `proxy.istio.io/config` pod
//! annotation carries it (the form ASM's docs give). Strait acts on `httpsHttp2Disabled`; every
//! other field is listed as not enforced, and a field of the wrong type is refused, naming file
//! and field.

use std::path::Path;
use std::sync::Arc;

use serde_yaml::Value;

use super::source::locate;
use super::{Diagnostic, Diagnostics, Severity};

/// What Strait acts on of a ProxyConfig.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// ASM's `httpsHttp2Disabled`: HTTPS servers offer ALPN `http/1.1` only. Plain HTTP ports
    /// keep h2c, as ASM documents ("plaintext HTTP listeners are not affected").
    pub https_http2_disabled: bool,
}

/// Reads `path`: the settings and the fields not enforced (warnings), or every error.
pub fn read(path: &Path) -> Result<(ProxyConfig, Diagnostics), Diagnostics> {
    let file: Arc<Path> = Arc::from(path);
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics::from(Diagnostic { file: Some(file.clone()), ..Diagnostic::error(format!("--proxy-config: {e}")) })
    })?;
    parse(&text, &file)
}

fn parse(text: &str, file: &Arc<Path>) -> Result<(ProxyConfig, Diagnostics), Diagnostics> {
    let at = |severity: Severity, field: &str, message: String| Diagnostic {
        severity,
        file: Some(file.clone()),
        line: locate(text, 1, field),
        kind: Some("ProxyConfig".into()),
        field: (!field.is_empty()).then(|| field.to_owned()),
        ..Diagnostic::error(message)
    };
    let root: Value = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        Diagnostics::from(Diagnostic { file: Some(file.clone()), line, ..Diagnostic::error(e.to_string()) })
    })?;
    let Value::Mapping(root) = root else {
        return Err(at(Severity::Error, "", "expected a ProxyConfig mapping".into()).into());
    };
    // A resource carries its fields under `spec`; the annotation's form is the fields alone.
    let (prefix, fields) = match root.get("kind") {
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
    let mut config = ProxyConfig::default();
    let mut warnings = Diagnostics::new();
    let mut errors = Diagnostics::new();
    for (key, value) in &fields {
        let Some(key) = key.as_str() else {
            errors.push(at(Severity::Error, prefix.trim_end_matches('.'), "field names are strings".into()));
            continue;
        };
        let field = format!("{prefix}{key}");
        match key {
            "httpsHttp2Disabled" => match value {
                Value::Bool(b) => config.https_http2_disabled = *b,
                Value::Null => {}
                _ => errors.push(at(Severity::Error, &field, "expected true or false".into())),
            },
            // The resource's workload selector: this instance is the workload it configures.
            "selector" if !prefix.is_empty() => {}
            _ => warnings.push(at(Severity::NotEnforced, &field, "accepted, not enforced yet".into())),
        }
    }
    if errors.is_empty() {
        Ok((config, warnings))
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<(ProxyConfig, Diagnostics), Diagnostics> {
        parse(text, &Arc::from(Path::new("proxy.yaml")))
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
