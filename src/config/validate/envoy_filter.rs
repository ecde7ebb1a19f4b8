//! EnvoyFilter: istiod's webhook checks of the patch's names, Envoy's checks of the patches
//! Strait recognises (a malformed one is invalid), and every patch Strait does not act on
//! listed as not enforced, naming its file.

use super::At;
use crate::config::envoy_filter::{Recognised, APPLY_TO, CONTEXTS, OPERATIONS};
use crate::config::{ConfigSet, Diagnostics, Severity};

pub(super) fn check(set: &ConfigSet, out: &mut Diagnostics) {
    for resource in &set.envoy_filters {
        let mut at = At { resource, out: &mut *out };
        for (i, p) in resource.spec.config_patches.iter().enumerate() {
            let field = |f: &str| format!("spec.configPatches[{i}]{}{f}", if f.is_empty() { "" } else { "." });
            match p.apply_to.as_deref() {
                None => at.error(field("applyTo"), "applyTo is required"),
                Some(a) if !APPLY_TO.contains(&a) => at.error(field("applyTo"), format!("unknown applyTo {a}")),
                Some(_) => {}
            }
            if let Some(c) = p.match_.as_ref().and_then(|m| m.context.as_deref()).filter(|c| !CONTEXTS.contains(c)) {
                at.error(field("match.context"), format!("unknown context {c}"));
            }
            match p.patch.as_ref().map(|p| p.operation.as_deref()) {
                None => at.error(field("patch"), "patch is required"),
                Some(None | Some("INVALID")) => at.error(field("patch.operation"), "an operation is required"),
                Some(Some(op)) if !OPERATIONS.contains(&op) => {
                    at.error(field("patch.operation"), format!("unknown operation {op}"))
                }
                Some(_) => {}
            }
            match p.recognise() {
                Err((f, message)) => at.error(field(&f), message),
                Ok(Recognised::Compressor { config, .. }) => {
                    let request = config.request_direction_config.as_ref().and_then(|r| r.common_config.as_ref());
                    if request.is_some_and(|c| c.enabled.as_ref().is_none_or(|e| e.default_value != Some(false))) {
                        let f = "patch.value.typed_config.request_direction_config";
                        at.push(Severity::NotEnforced, field(f), "request compression is not enforced");
                    }
                }
                Ok(Recognised::LocalRateLimitFilter(_) | Recognised::LocalRateLimitPerRoute { .. }) => {
                    at.push(Severity::NotEnforced, field("patch"), "the local rate limit patch is accepted, not enforced yet")
                }
                Ok(Recognised::Other) => at.push(
                    Severity::NotEnforced,
                    field(""),
                    format!(
                        "{} patch is accepted, not enforced (Strait acts on compressor and local rate limit HTTP filters)",
                        p.apply_to.as_deref().unwrap_or("this")
                    ),
                ),
            }
        }
    }
}
