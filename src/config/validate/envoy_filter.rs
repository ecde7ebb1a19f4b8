//! EnvoyFilter: istiod's webhook checks of the patch's names, Envoy's checks of the patches
//! Strait recognises (a malformed one is invalid), and every patch or field Strait does not
//! act on listed as not enforced, naming its file.

use super::At;
use crate::config::envoy_filter::{
    CompressorConfig, LibraryConfig, Recognised, APPLY_TO, CONTEXTS, LOCAL_RATELIMIT, OPERATIONS,
};
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
                    for (f, what) in unread(&config) {
                        let f = format!("patch.value.typed_config.{f}");
                        at.push(Severity::NotEnforced, field(&f), format!("{what} is not enforced"));
                    }
                }
                Ok(Recognised::LocalRateLimitFilter(config)) => {
                    for what in config.unread() {
                        at.push(Severity::NotEnforced, field("patch.value.typed_config"), format!("{what} is not enforced"));
                    }
                }
                Ok(Recognised::RateLimitFilter(config)) => {
                    for what in config.unread() {
                        at.push(Severity::NotEnforced, field("patch.value.typed_config"), format!("{what} is not enforced"));
                    }
                }
                Ok(Recognised::RoutePatch { config, rate_limits, .. }) => {
                    let f = format!("patch.value.typed_per_filter_config.{LOCAL_RATELIMIT}");
                    for what in config.iter().flat_map(|c| c.unread()) {
                        at.push(Severity::NotEnforced, field(&f), format!("{what} is not enforced"));
                    }
                    for (j, r) in rate_limits.iter().enumerate() {
                        for what in r.unread() {
                            let f = format!("patch.value.rate_limits[{j}]");
                            at.push(Severity::NotEnforced, field(&f), format!("{what} is not enforced"));
                        }
                    }
                    // Strait matches a gateway's route configuration by port and virtual host.
                    let rc = p.match_.as_ref().and_then(|m| m.route_configuration.as_ref());
                    for (name, set) in rc.map(|rc| [("name", rc.name.is_some()), ("portName", rc.port_name.is_some()), ("gateway", rc.gateway.is_some())]).into_iter().flatten() {
                        if set {
                            let f = format!("match.routeConfiguration.{name}");
                            at.push(Severity::NotEnforced, field(&f), "this match is not read: the patch does not apply");
                        }
                    }
                }
                Ok(Recognised::Other) => at.push(
                    Severity::NotEnforced,
                    field(""),
                    format!(
                        "{} patch is accepted, not enforced (Strait acts on the compressor, local_ratelimit and ratelimit HTTP filters and routes' rate_limits)",
                        p.apply_to.as_deref().unwrap_or("this")
                    ),
                ),
            }
        }
    }
}

/// The fields of a compressor Strait does not act on, set to other than their defaults: request
/// compression, and library tuning zlib-rs, brotli and zstd's streaming APIs leave out (their
/// `chunk_size` too: Strait compresses one chunk per upstream read).
fn unread(c: &CompressorConfig) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let request = c.request_direction_config.as_ref().and_then(|r| r.common_config.as_ref());
    if request.is_some_and(|c| c.enabled.as_ref().is_none_or(|e| e.default_value != Some(false))) {
        out.push(("request_direction_config", "request compression"));
    }
    if c.choose_first {
        out.push(("choose_first", "choose_first"));
    }
    if let Some(r) = &c.response_direction_config {
        if !r.uncompressible_response_codes.is_empty() {
            out.push(("response_direction_config.uncompressible_response_codes", "uncompressible_response_codes"));
        }
        if r.status_header_enabled {
            out.push(("response_direction_config.status_header_enabled", "status_header_enabled"));
        }
    }
    let lib = "compressor_library.typed_config";
    match c.library() {
        Ok(LibraryConfig::Gzip(g)) => {
            if g.memory_level.is_some_and(|m| m != 8) {
                out.push((lib, "gzip memory_level (zlib's default 8 is used)"));
            }
            if g.compression_strategy.as_deref().is_some_and(|s| s != "DEFAULT_STRATEGY") {
                out.push((lib, "gzip compression_strategy"));
            }
            if g.chunk_size.is_some() {
                out.push((lib, "gzip chunk_size"));
            }
        }
        Ok(LibraryConfig::Brotli(b)) => {
            if b.encoder_mode.as_deref().is_some_and(|m| m != "DEFAULT")
                || b.input_block_bits.is_some()
                || b.chunk_size.is_some()
                || b.disable_literal_context_modeling
            {
                out.push((
                    lib,
                    "brotli encoder_mode, input_block_bits, chunk_size and disable_literal_context_modeling",
                ));
            }
        }
        Ok(LibraryConfig::Zstd(z)) => {
            if z.strategy.as_deref().is_some_and(|s| s != "DEFAULT") || z.dictionary.is_some() || z.chunk_size.is_some()
            {
                out.push((lib, "zstd strategy, dictionary and chunk_size"));
            }
        }
        Err(_) => {}
    }
    out
}
