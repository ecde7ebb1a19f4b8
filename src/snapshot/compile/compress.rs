//! The compressor filters EnvoyFilters insert into this gateway's HTTP filter chains, as
//! istiod applies them: documents of the root namespace and of the gateway's own, selecting
//! its labels (or naming its Gateway API gateway), in priority order, patches whose context is
//! GATEWAY or ANY and whose listener match (port, the HTTP connection manager) fits. The
//! local rate limit patches are selected the same way (see `ratelimit`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::envoy_filter::{
    CompressorConfig, EnvoyFilter, LibraryConfig, PatchMatch, Recognised, GZIP_LEVELS, HCM,
};
use crate::config::index::{policy_attaches, ThisGateway};
use crate::config::{ConfigSet, Resource};
use crate::snapshot::compress::{DEFAULT_CONTENT_TYPES, DEFAULT_MIN_CONTENT_LENGTH};
use crate::snapshot::{Compression, Compressor, Library};

#[cfg(test)]
mod tests;

/// Every compressor patch that applies to this instance, in chain order, with the listener
/// port it is limited to.
pub(super) struct Compressors(Vec<(Option<u32>, Compressor)>);

/// The EnvoyFilters that reach this gateway, in the order istiod applies them: the root
/// namespace's first, then the workload namespace's, each by priority (the sort is stable:
/// config order within a priority).
pub(super) fn applying<'a>(
    set: &'a ConfigSet,
    labels: &BTreeMap<String, String>,
    namespace: &str,
) -> Vec<&'a Resource<EnvoyFilter>> {
    let root = set.mesh.root_namespace.as_str();
    let gateway = ThisGateway { namespace, root, labels };
    let mut filters: Vec<&Resource<EnvoyFilter>> = set
        .envoy_filters
        .iter()
        .filter(|ef| policy_attaches(&ef.spec.attachment(ef.namespace()), &gateway).is_ok())
        .collect();
    filters.sort_by_key(|ef| (ef.namespace() != root, ef.spec.priority));
    filters
}

/// The listener port a patch is limited to, or `None` when it does not reach a gateway's HTTP
/// filter chain at all (`Some(None)`: every port).
pub(super) fn http_filter_port(m: Option<&PatchMatch>) -> Option<Option<u32>> {
    let Some(m) = m else {
        return Some(None);
    };
    if !matches!(m.context.as_deref(), None | Some("ANY" | "GATEWAY")) {
        return None;
    }
    let listener = m.listener.as_ref();
    let filter = listener.and_then(|l| l.filter_chain.as_ref()).and_then(|f| f.filter.as_ref());
    if filter.and_then(|f| f.name.as_deref()).is_some_and(|n| n != HCM) {
        return None;
    }
    Some(listener.and_then(|l| l.port_number))
}

fn compressor(c: &CompressorConfig) -> Option<Compressor> {
    let library = match c.library().ok()? {
        LibraryConfig::Gzip(g) => {
            let level = match g.compression_level.as_deref() {
                None | Some("DEFAULT_COMPRESSION") => 6,
                Some("BEST_SPEED") => 1,
                Some("BEST_COMPRESSION") => 9,
                Some(name) => GZIP_LEVELS.iter().position(|l| *l == name).map_or(6, |i| i as u32 - 1),
            };
            Library::Gzip { level, window_bits: g.window_bits.unwrap_or(12) as u8 }
        }
        LibraryConfig::Brotli(b) => {
            Library::Brotli { quality: b.quality.unwrap_or(3), window_bits: b.window_bits.unwrap_or(18) }
        }
        LibraryConfig::Zstd(z) => {
            Library::Zstd { level: z.compression_level.map_or(3, |l| l as i32), checksum: z.enable_checksum }
        }
    };
    let response = c.response_direction_config.as_ref();
    let common = response.and_then(|r| r.common_config.as_ref());
    // The response direction's settings win over the deprecated top-level ones.
    let enabled = common
        .and_then(|c| c.enabled.as_ref())
        .or(c.runtime_enabled.as_ref())
        .is_none_or(|f| f.default_value != Some(false));
    let min = common.and_then(|c| c.min_content_length).or(c.content_length).filter(|&n| n > 0);
    let types = common.map(|c| &c.content_type).filter(|t| !t.is_empty()).unwrap_or(&c.content_type);
    let content_types: Box<[Box<str>]> = if types.is_empty() {
        DEFAULT_CONTENT_TYPES.iter().map(|t| Box::from(*t)).collect()
    } else {
        types.iter().map(|t| Box::from(t.to_ascii_lowercase().as_str())).collect()
    };
    Some(Compressor {
        library,
        enabled,
        min_content_length: min.map_or(DEFAULT_MIN_CONTENT_LENGTH, u64::from),
        content_types,
        disable_on_etag_header: c.disable_on_etag_header || response.is_some_and(|r| r.disable_on_etag_header),
        remove_accept_encoding_header: c.remove_accept_encoding_header
            || response.is_some_and(|r| r.remove_accept_encoding_header),
    })
}

impl Compressors {
    pub(super) fn new(set: &ConfigSet, labels: &BTreeMap<String, String>, namespace: &str) -> Self {
        let mut out = Vec::new();
        for p in applying(set, labels, namespace).iter().flat_map(|ef| &ef.spec.config_patches) {
            let Some(port) = http_filter_port(p.match_.as_ref()) else {
                continue;
            };
            if let Ok(Recognised::Compressor { config, first }) = p.recognise() {
                if let Some(c) = compressor(&config) {
                    if first {
                        out.insert(0, (port, c));
                    } else {
                        out.push((port, c));
                    }
                }
            }
        }
        Compressors(out)
    }

    /// The compressors of the HTTP filter chain on `port`, if any.
    pub(super) fn for_port(&self, port: u16) -> Option<Arc<Compression>> {
        let compressors: Box<[Compressor]> =
            self.0.iter().filter(|(p, _)| p.is_none_or(|p| p == u32::from(port))).map(|(_, c)| c.clone()).collect();
        if compressors.is_empty() {
            return None;
        }
        let remove_accept_encoding = compressors.iter().any(|c| c.enabled && c.remove_accept_encoding_header);
        Some(Arc::new(Compression { compressors, remove_accept_encoding }))
    }
}
