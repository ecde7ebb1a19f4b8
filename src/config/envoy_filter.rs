//! `networking.istio.io` `EnvoyFilter` (istio/api `networking/v1alpha3/envoy_filter.proto`):
//! the document read in full, and the patches Strait recognises typed with Envoy's field names
//! and types: an HTTP filter inserted for `envoy.filters.http.compressor`,
//! `envoy.filters.http.local_ratelimit` or `envoy.filters.http.ratelimit`, and the per-route
//! and per-virtual-host local rate limits and `rate_limits` actions of Istio's "Enabling Rate
//! Limits using Envoy" task. Any other patch is kept as is.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::meta::{Duration, PolicyTargetReference};

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Gateway API references (`kind: Gateway`, `name`); istiod applies the filter to that
    /// gateway's proxies only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_patches: Vec<ConfigPatch>,
    #[serde(default)]
    pub priority: i32,
}

impl EnvoyFilter {
    /// Where the filter attaches, for [`policy_attaches`](super::index::policy_attaches).
    pub fn attachment<'a>(&'a self, namespace: &'a str) -> super::index::Attachment<'a> {
        super::index::Attachment {
            namespace,
            selector: self.workload_selector.as_ref().map(|s| &s.labels),
            target_refs: self.target_refs.iter().collect(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigPatch {
    /// `LISTENER`, `FILTER_CHAIN`, `NETWORK_FILTER`, `HTTP_FILTER`, `ROUTE_CONFIGURATION`,
    /// `VIRTUAL_HOST`, `HTTP_ROUTE`, `CLUSTER`, `EXTENSION_CONFIG`, `BOOTSTRAP`,
    /// `LISTENER_FILTER` (validation checks the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_to: Option<String>,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<PatchMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Patch>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchMatch {
    /// `ANY` (the default), `SIDECAR_INBOUND`, `SIDECAR_OUTBOUND`, `GATEWAY`, `WAYPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_configuration: Option<RouteConfigurationMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_chain: Option<FilterChainMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterChainMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_protocols: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_filter: Option<SubFilterMatch>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubFilterMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfigurationMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<VirtualHostMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualHostMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteMatch>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `ANY`, `ROUTE`, `REDIRECT`, `DIRECT_RESPONSE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Patch {
    /// `MERGE`, `ADD`, `REMOVE`, `INSERT_BEFORE`, `INSERT_AFTER`, `INSERT_FIRST`, `REPLACE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_class: Option<String>,
}

/// istiod's `ApplyTo` names.
pub const APPLY_TO: [&str; 11] = [
    "LISTENER",
    "FILTER_CHAIN",
    "NETWORK_FILTER",
    "HTTP_FILTER",
    "ROUTE_CONFIGURATION",
    "VIRTUAL_HOST",
    "HTTP_ROUTE",
    "CLUSTER",
    "EXTENSION_CONFIG",
    "BOOTSTRAP",
    "LISTENER_FILTER",
];
/// istiod's `PatchContext` names.
pub const CONTEXTS: [&str; 5] = ["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY", "WAYPOINT"];
/// istiod's `Operation` names.
pub const OPERATIONS: [&str; 8] =
    ["INVALID", "MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"];

/// The HTTP connection manager, the network filter HTTP filters are patched into.
pub const HCM: &str = "envoy.filters.network.http_connection_manager";
pub const COMPRESSOR: &str = "envoy.filters.http.compressor";
pub const LOCAL_RATELIMIT: &str = "envoy.filters.http.local_ratelimit";
pub const RATELIMIT: &str = "envoy.filters.http.ratelimit";
const COMPRESSOR_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor";
const LOCAL_RATELIMIT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
const RATELIMIT_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit";
const TYPED_STRUCTS: [&str; 2] =
    ["type.googleapis.com/udpa.type.v1.TypedStruct", "type.googleapis.com/xds.type.v3.TypedStruct"];

/// What a patch is, once read.
#[derive(Debug, Clone, PartialEq)]
pub enum Recognised {
    /// An HTTP filter inserted: `envoy.filters.http.compressor`. `first`: `INSERT_FIRST`.
    Compressor { config: Box<CompressorConfig>, first: bool },
    /// An HTTP filter inserted: `envoy.filters.http.local_ratelimit` (its default bucket).
    LocalRateLimitFilter(Box<LocalRateLimit>),
    /// An HTTP filter inserted: `envoy.filters.http.ratelimit`, asking a rate limit service.
    RateLimitFilter(Box<RateLimitFilter>),
    /// `HTTP_ROUTE` or `VIRTUAL_HOST` `MERGE` of `typed_per_filter_config` for the local rate
    /// limit and of `rate_limits` (either may be absent), as Istio's task writes them.
    RoutePatch { virtual_host: bool, config: Option<Box<LocalRateLimit>>, rate_limits: Vec<RateLimit> },
    /// Anything else: accepted, not acted on.
    Other,
}

/// Why a recognised patch is malformed: the field under `spec.configPatches[i]`, and what.
pub type PatchError = (String, String);

impl ConfigPatch {
    /// Reads the patch: a recognised one typed (or why it is malformed), any other as `Other`.
    pub fn recognise(&self) -> Result<Recognised, PatchError> {
        let op = self.patch.as_ref().and_then(|p| p.operation.as_deref()).unwrap_or("INVALID");
        let value = self.patch.as_ref().and_then(|p| p.value.as_ref());
        match (self.apply_to.as_deref(), value) {
            (Some("HTTP_FILTER"), Some(value))
                if matches!(op, "INSERT_BEFORE" | "INSERT_AFTER" | "INSERT_FIRST" | "ADD") =>
            {
                let name = value.get("name").and_then(Value::as_str).unwrap_or_default();
                let typed = value.get("typed_config").or_else(|| value.get("typedConfig"));
                let at = |f: &str| format!("patch.value.typed_config{f}");
                match name {
                    COMPRESSOR => {
                        let (config, inner): (CompressorConfig, _) =
                            typed_config(typed, COMPRESSOR_TYPE).map_err(|(f, m)| (at(&f), m))?;
                        config.check().map_err(|(f, m)| (at(&format!("{inner}{f}")), m))?;
                        Ok(Recognised::Compressor { config: Box::new(config), first: op == "INSERT_FIRST" })
                    }
                    LOCAL_RATELIMIT => {
                        let (config, inner): (LocalRateLimit, _) =
                            typed_config(typed, LOCAL_RATELIMIT_TYPE).map_err(|(f, m)| (at(&f), m))?;
                        config.check().map_err(|(f, m)| (at(&format!("{inner}{f}")), m))?;
                        Ok(Recognised::LocalRateLimitFilter(Box::new(config)))
                    }
                    RATELIMIT => {
                        let (config, inner): (RateLimitFilter, _) =
                            typed_config(typed, RATELIMIT_TYPE).map_err(|(f, m)| (at(&f), m))?;
                        config.check().map_err(|(f, m)| (at(&format!("{inner}{f}")), m))?;
                        Ok(Recognised::RateLimitFilter(Box::new(config)))
                    }
                    _ => Ok(Recognised::Other),
                }
            }
            (Some(kind @ ("HTTP_ROUTE" | "VIRTUAL_HOST")), Some(value)) if op == "MERGE" => {
                let per_filter = value.get("typed_per_filter_config").or_else(|| value.get("typedPerFilterConfig"));
                let config = match per_filter.and_then(|p| p.get(LOCAL_RATELIMIT)) {
                    None => None,
                    Some(typed) => {
                        let at = |f: &str| format!("patch.value.typed_per_filter_config.{LOCAL_RATELIMIT}{f}");
                        let (config, inner): (LocalRateLimit, _) =
                            typed_config(Some(typed), LOCAL_RATELIMIT_TYPE).map_err(|(f, m)| (at(&f), m))?;
                        config.check().map_err(|(f, m)| (at(&format!("{inner}{f}")), m))?;
                        Some(Box::new(config))
                    }
                };
                let rate_limits = match value.get("rate_limits").or_else(|| value.get("rateLimits")) {
                    None => Vec::new(),
                    Some(list) => rate_limits(list)?,
                };
                if config.is_none() && rate_limits.is_empty() {
                    return Ok(Recognised::Other);
                }
                Ok(Recognised::RoutePatch { virtual_host: kind == "VIRTUAL_HOST", config, rate_limits })
            }
            _ => Ok(Recognised::Other),
        }
    }
}

/// A route's or virtual host's `rate_limits` (`config.route.v3.RateLimit`), checked as Envoy
/// checks them: every entry has actions, every action sets one kind.
fn rate_limits(list: &Value) -> Result<Vec<RateLimit>, PatchError> {
    let fields = match list {
        Value::Array(a) => {
            a.iter().map(|v| if let Value::Object(m) = v { Value::Object(snake_keys(m.clone())) } else { v.clone() })
        }
        _ => return Err(("patch.value.rate_limits".into(), "expected a list".into())),
    };
    let list: Vec<RateLimit> = serde_path_to_error::deserialize(Value::Array(fields.collect()))
        .map_err(|e| (format!("patch.value.rate_limits{}", e.path()), e.inner().to_string()))?;
    for (i, r) in list.iter().enumerate() {
        r.check().map_err(|(f, m)| (format!("patch.value.rate_limits[{i}]{f}"), m))?;
    }
    Ok(list)
}

/// Reads an Any of type `type_url`, given directly (`@type` and its fields) or wrapped in a
/// `TypedStruct` (`type_url`, `value`), as Istio's examples write it. Field errors come back
/// with their path from the Any; the path of the fields within it (`.value` in a TypedStruct).
fn typed_config<T: DeserializeOwned>(typed: Option<&Value>, type_url: &str) -> Result<(T, &'static str), PatchError> {
    let Some(Value::Object(map)) = typed else {
        return Err((String::new(), format!("a typed_config of type {type_url} is required")));
    };
    let at_type = map.get("@type").and_then(Value::as_str).unwrap_or_default();
    let (prefix, mut fields) = if TYPED_STRUCTS.contains(&at_type) {
        let inner = map.get("type_url").or_else(|| map.get("typeUrl")).and_then(Value::as_str).unwrap_or_default();
        if inner != type_url {
            return Err((".type_url".into(), format!("expected {type_url}, found {inner:?}")));
        }
        match map.get("value") {
            Some(Value::Object(v)) => (".value", v.clone()),
            None => (".value", serde_json::Map::new()),
            Some(_) => return Err((".value".into(), "expected a mapping".into())),
        }
    } else if at_type == type_url {
        let mut fields = map.clone();
        fields.remove("@type");
        ("", fields)
    } else {
        return Err((".@type".into(), format!("expected {type_url} (or a TypedStruct of it), found {at_type:?}")));
    };
    // protojson reads both a field's proto name and its lowerCamelCase JSON name.
    fields = snake_keys(fields);
    serde_path_to_error::deserialize(Value::Object(fields))
        .map(|t| (t, prefix))
        .map_err(|e| (format!("{prefix}.{}", e.path()), e.inner().to_string()))
}

/// `lowerCamelCase` keys as proto names, all the way down (an Any's `@type` stays).
fn snake_keys(map: serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    map.into_iter()
        .map(|(k, v)| {
            let k = if k.starts_with('@') || k.contains('.') {
                k
            } else {
                k.chars().fold(String::new(), |mut s, c| {
                    if c.is_ascii_uppercase() {
                        s.push('_');
                        s.push(c.to_ascii_lowercase());
                    } else {
                        s.push(c);
                    }
                    s
                })
            };
            let v = match v {
                Value::Object(m) => Value::Object(snake_keys(m)),
                Value::Array(a) => Value::Array(
                    a.into_iter()
                        .map(|v| if let Value::Object(m) = v { Value::Object(snake_keys(m)) } else { v })
                        .collect(),
                ),
                v => v,
            };
            (k, v)
        })
        .collect()
}

/// `envoy.extensions.filters.http.compressor.v3.Compressor`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressorConfig {
    /// Deprecated: `response_direction_config.common_config.min_content_length`.
    #[serde(default)]
    pub content_length: Option<u32>,
    #[serde(default)]
    pub content_type: Vec<String>,
    #[serde(default)]
    pub disable_on_etag_header: bool,
    #[serde(default)]
    pub remove_accept_encoding_header: bool,
    #[serde(default)]
    pub runtime_enabled: Option<RuntimeFeatureFlag>,
    #[serde(default)]
    pub compressor_library: Option<TypedExtensionConfig>,
    #[serde(default)]
    pub request_direction_config: Option<RequestDirectionConfig>,
    #[serde(default)]
    pub response_direction_config: Option<ResponseDirectionConfig>,
    #[serde(default)]
    pub choose_first: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFeatureFlag {
    #[serde(default)]
    pub default_value: Option<bool>,
    #[serde(default)]
    pub runtime_key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonDirectionConfig {
    #[serde(default)]
    pub enabled: Option<RuntimeFeatureFlag>,
    #[serde(default)]
    pub min_content_length: Option<u32>,
    #[serde(default)]
    pub content_type: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDirectionConfig {
    #[serde(default)]
    pub common_config: Option<CommonDirectionConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseDirectionConfig {
    #[serde(default)]
    pub common_config: Option<CommonDirectionConfig>,
    #[serde(default)]
    pub disable_on_etag_header: bool,
    #[serde(default)]
    pub remove_accept_encoding_header: bool,
    #[serde(default)]
    pub uncompressible_response_codes: Vec<u32>,
    #[serde(default)]
    pub status_header_enabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypedExtensionConfig {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub typed_config: Option<Value>,
}

/// `envoy.extensions.compression.gzip.compressor.v3.Gzip`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gzip {
    #[serde(default)]
    pub memory_level: Option<u32>,
    /// `DEFAULT_COMPRESSION`, `BEST_SPEED`, `COMPRESSION_LEVEL_1`…`_9`, `BEST_COMPRESSION`.
    #[serde(default)]
    pub compression_level: Option<String>,
    /// `DEFAULT_STRATEGY`, `FILTERED`, `HUFFMAN_ONLY`, `RLE`, `FIXED`.
    #[serde(default)]
    pub compression_strategy: Option<String>,
    #[serde(default)]
    pub window_bits: Option<u32>,
    #[serde(default)]
    pub chunk_size: Option<u32>,
}

/// `envoy.extensions.compression.brotli.compressor.v3.Brotli`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Brotli {
    #[serde(default)]
    pub quality: Option<u32>,
    /// `DEFAULT`, `GENERIC`, `TEXT`, `FONT`.
    #[serde(default)]
    pub encoder_mode: Option<String>,
    #[serde(default)]
    pub window_bits: Option<u32>,
    #[serde(default)]
    pub input_block_bits: Option<u32>,
    #[serde(default)]
    pub chunk_size: Option<u32>,
    #[serde(default)]
    pub disable_literal_context_modeling: bool,
}

/// `envoy.extensions.compression.zstd.compressor.v3.Zstd`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zstd {
    #[serde(default)]
    pub compression_level: Option<u32>,
    #[serde(default)]
    pub enable_checksum: bool,
    /// `DEFAULT`, `FAST`, `DFAST`, `GREEDY`, `LAZY`, `LAZY2`, `BTLAZY2`, `BTOPT`, `BTULTRA`,
    /// `BTULTRA2`.
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub dictionary: Option<Value>,
    #[serde(default)]
    pub chunk_size: Option<u32>,
}

/// A compressor library, read from `compressor_library.typed_config`.
#[derive(Debug, Clone, PartialEq)]
pub enum LibraryConfig {
    Gzip(Gzip),
    Brotli(Brotli),
    Zstd(Zstd),
}

const GZIP_TYPE: &str = "type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip";
const BROTLI_TYPE: &str = "type.googleapis.com/envoy.extensions.compression.brotli.compressor.v3.Brotli";
const ZSTD_TYPE: &str = "type.googleapis.com/envoy.extensions.compression.zstd.compressor.v3.Zstd";

fn in_range(field: &str, value: Option<u32>, range: std::ops::RangeInclusive<u32>) -> Result<(), PatchError> {
    match value {
        Some(v) if !range.contains(&v) => {
            Err((format!(".{field}"), format!("{v} is out of range {}..={}", range.start(), range.end())))
        }
        _ => Ok(()),
    }
}

fn one_of(field: &str, value: Option<&str>, names: &[&str]) -> Result<(), PatchError> {
    match value {
        Some(v) if !names.contains(&v) => {
            Err((format!(".{field}"), format!("unknown value {v:?} (one of {})", names.join(", "))))
        }
        _ => Ok(()),
    }
}

/// Gzip's `compression_level` names.
pub const GZIP_LEVELS: [&str; 12] = [
    "DEFAULT_COMPRESSION",
    "BEST_SPEED",
    "COMPRESSION_LEVEL_1",
    "COMPRESSION_LEVEL_2",
    "COMPRESSION_LEVEL_3",
    "COMPRESSION_LEVEL_4",
    "COMPRESSION_LEVEL_5",
    "COMPRESSION_LEVEL_6",
    "COMPRESSION_LEVEL_7",
    "COMPRESSION_LEVEL_8",
    "COMPRESSION_LEVEL_9",
    "BEST_COMPRESSION",
];

impl CompressorConfig {
    /// The library, typed (Envoy requires one).
    pub fn library(&self) -> Result<LibraryConfig, PatchError> {
        let Some(lib) = &self.compressor_library else {
            return Err((".compressor_library".into(), "a compressor_library is required".into()));
        };
        let typed = lib.typed_config.as_ref();
        let at_type = typed.and_then(|t| t.get("@type")).and_then(Value::as_str).unwrap_or_default();
        let at = |(f, m): PatchError| (format!(".compressor_library.typed_config{f}"), m);
        Ok(match at_type {
            GZIP_TYPE => LibraryConfig::Gzip(typed_config(typed, GZIP_TYPE).map_err(at)?.0),
            BROTLI_TYPE => LibraryConfig::Brotli(typed_config(typed, BROTLI_TYPE).map_err(at)?.0),
            ZSTD_TYPE => LibraryConfig::Zstd(typed_config(typed, ZSTD_TYPE).map_err(at)?.0),
            other => {
                return Err(at((
                    ".@type".into(),
                    format!("unsupported compressor library {other:?} (gzip, brotli or zstd)"),
                )))
            }
        })
    }

    /// Envoy's proto validation of the fields Strait reads.
    fn check(&self) -> Result<(), PatchError> {
        let lib = ".compressor_library.typed_config";
        let at = |(f, m): PatchError| (format!("{lib}{f}"), m);
        match self.library()? {
            LibraryConfig::Gzip(g) => {
                in_range("memory_level", g.memory_level, 1..=9).map_err(at)?;
                in_range("window_bits", g.window_bits, 9..=15).map_err(at)?;
                in_range("chunk_size", g.chunk_size, 4096..=65536).map_err(at)?;
                one_of("compression_level", g.compression_level.as_deref(), &GZIP_LEVELS).map_err(at)?;
                let strategies = ["DEFAULT_STRATEGY", "FILTERED", "HUFFMAN_ONLY", "RLE", "FIXED"];
                one_of("compression_strategy", g.compression_strategy.as_deref(), &strategies).map_err(at)?;
            }
            LibraryConfig::Brotli(b) => {
                in_range("quality", b.quality, 0..=11).map_err(at)?;
                in_range("window_bits", b.window_bits, 10..=24).map_err(at)?;
                in_range("input_block_bits", b.input_block_bits, 16..=24).map_err(at)?;
                in_range("chunk_size", b.chunk_size, 4096..=65536).map_err(at)?;
                one_of("encoder_mode", b.encoder_mode.as_deref(), &["DEFAULT", "GENERIC", "TEXT", "FONT"])
                    .map_err(at)?;
            }
            LibraryConfig::Zstd(z) => {
                in_range("compression_level", z.compression_level, 0..=22).map_err(at)?;
                in_range("chunk_size", z.chunk_size, 4096..=65536).map_err(at)?;
                let strategies =
                    ["DEFAULT", "FAST", "DFAST", "GREEDY", "LAZY", "LAZY2", "BTLAZY2", "BTOPT", "BTULTRA", "BTULTRA2"];
                one_of("strategy", z.strategy.as_deref(), &strategies).map_err(at)?;
            }
        }
        Ok(())
    }
}

/// `envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit`, the fields Istio's and
/// ASM's examples use.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRateLimit {
    pub stat_prefix: String,
    #[serde(default)]
    pub status: Option<HttpStatus>,
    #[serde(default)]
    pub token_bucket: Option<TokenBucket>,
    #[serde(default)]
    pub filter_enabled: Option<RuntimeFractionalPercent>,
    #[serde(default)]
    pub filter_enforced: Option<RuntimeFractionalPercent>,
    #[serde(default)]
    pub request_headers_to_add_when_not_enforced: Vec<HeaderValueOption>,
    #[serde(default)]
    pub response_headers_to_add: Vec<HeaderValueOption>,
    #[serde(default)]
    pub descriptors: Vec<LocalRateLimitDescriptor>,
    #[serde(default)]
    pub stage: u32,
    #[serde(default)]
    pub local_rate_limit_per_downstream_connection: bool,
    /// `OFF`, `DRAFT_VERSION_03`.
    #[serde(default)]
    pub enable_x_ratelimit_headers: Option<String>,
    /// `OVERRIDE`, `INCLUDE`, `IGNORE`.
    #[serde(default)]
    pub vh_rate_limits: Option<String>,
    #[serde(default)]
    pub always_consume_default_token_bucket: Option<bool>,
    #[serde(default)]
    pub rate_limited_as_resource_exhausted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStatus {
    pub code: u32,
}

/// `envoy.type.v3.TokenBucket`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBucket {
    pub max_tokens: u32,
    /// Default 1.
    #[serde(default)]
    pub tokens_per_fill: Option<u32>,
    pub fill_interval: Duration,
}

/// `envoy.config.core.v3.RuntimeFractionalPercent`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFractionalPercent {
    pub default_value: FractionalPercent,
    #[serde(default)]
    pub runtime_key: String,
}

/// `envoy.type.v3.FractionalPercent`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FractionalPercent {
    #[serde(default)]
    pub numerator: u32,
    /// `HUNDRED` (the default), `TEN_THOUSAND`, `MILLION`.
    #[serde(default)]
    pub denominator: Option<String>,
}

impl FractionalPercent {
    /// The fraction, 0..=1 (capped, as Envoy caps a numerator over its denominator).
    pub fn fraction(&self) -> f64 {
        let d = match self.denominator.as_deref() {
            Some("TEN_THOUSAND") => 10_000.0,
            Some("MILLION") => 1_000_000.0,
            _ => 100.0,
        };
        (f64::from(self.numerator) / d).min(1.0)
    }
}

/// `envoy.config.core.v3.HeaderValueOption`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValueOption {
    pub header: HeaderValue,
    #[serde(default)]
    pub append: Option<bool>,
    /// `APPEND_IF_EXISTS_OR_ADD`, `ADD_IF_ABSENT`, `OVERWRITE_IF_EXISTS_OR_ADD`,
    /// `OVERWRITE_IF_EXISTS`.
    #[serde(default)]
    pub append_action: Option<String>,
    #[serde(default)]
    pub keep_empty_value: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// `envoy.extensions.common.ratelimit.v3.LocalRateLimitDescriptor`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRateLimitDescriptor {
    pub entries: Vec<DescriptorEntry>,
    pub token_bucket: TokenBucket,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptorEntry {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

impl LocalRateLimit {
    /// The fields of the config Strait does not act on, set: `validate` lists them.
    pub fn unread(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.request_headers_to_add_when_not_enforced.is_empty() {
            out.push("request_headers_to_add_when_not_enforced");
        }
        if self.enable_x_ratelimit_headers.as_deref().is_some_and(|h| h != "OFF") {
            out.push("enable_x_ratelimit_headers");
        }
        if self.rate_limited_as_resource_exhausted {
            out.push("rate_limited_as_resource_exhausted");
        }
        out
    }

    /// Envoy's proto validation of the fields read.
    fn check(&self) -> Result<(), PatchError> {
        if self.stat_prefix.is_empty() {
            return Err((".stat_prefix".into(), "stat_prefix is required".into()));
        }
        if self.stage > 10 {
            return Err((".stage".into(), "a stage is 0 to 10".into()));
        }
        let buckets = self.token_bucket.iter().map(|b| (".token_bucket".to_owned(), b));
        let described = self
            .descriptors
            .iter()
            .enumerate()
            .map(|(i, d)| (format!(".descriptors[{i}].token_bucket"), &d.token_bucket));
        for (at, b) in buckets.chain(described) {
            if b.max_tokens == 0 {
                return Err((format!("{at}.max_tokens"), "must be greater than 0".into()));
            }
            if b.tokens_per_fill == Some(0) {
                return Err((format!("{at}.tokens_per_fill"), "must be greater than 0".into()));
            }
            if b.fill_interval.get().is_zero() {
                return Err((format!("{at}.fill_interval"), "must be greater than 0".into()));
            }
        }
        for p in [&self.filter_enabled, &self.filter_enforced].into_iter().flatten() {
            one_of("denominator", p.default_value.denominator.as_deref(), &["HUNDRED", "TEN_THOUSAND", "MILLION"])?;
        }
        for (i, h) in self.response_headers_to_add.iter().enumerate() {
            let actions =
                ["APPEND_IF_EXISTS_OR_ADD", "ADD_IF_ABSENT", "OVERWRITE_IF_EXISTS_OR_ADD", "OVERWRITE_IF_EXISTS"];
            one_of("append_action", h.append_action.as_deref(), &actions)
                .map_err(|(f, m)| (format!(".response_headers_to_add[{i}]{f}"), m))?;
            if h.header.key.is_empty() {
                return Err((format!(".response_headers_to_add[{i}].header.key"), "a key is required".into()));
            }
        }
        Ok(())
    }
}

/// `config.route.v3.RateLimit`: a descriptor made of its actions' entries, for the rate limit
/// filters of the same `stage`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(default)]
    pub stage: u32,
    #[serde(default)]
    pub disable_key: String,
    #[serde(default)]
    pub actions: Vec<RateLimitAction>,
    #[serde(default)]
    pub limit: Option<Value>,
    #[serde(default)]
    pub hits_addend: Option<Value>,
    #[serde(default)]
    pub apply_on_stream_done: bool,
}

/// `config.route.v3.RateLimit.Action`: one of its kinds is set. Those Strait does not produce
/// (metadata, extensions, masked addresses, query parameter matches) are kept as they are.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitAction {
    #[serde(default)]
    pub source_cluster: Option<Value>,
    #[serde(default)]
    pub destination_cluster: Option<Value>,
    #[serde(default)]
    pub request_headers: Option<RequestHeadersAction>,
    #[serde(default)]
    pub remote_address: Option<Value>,
    #[serde(default)]
    pub generic_key: Option<GenericKeyAction>,
    #[serde(default)]
    pub header_value_match: Option<HeaderValueMatchAction>,
    #[serde(default)]
    pub query_parameters: Option<QueryParametersAction>,
    #[serde(default)]
    pub dynamic_metadata: Option<Value>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub extension: Option<Value>,
    #[serde(default)]
    pub masked_remote_address: Option<Value>,
    #[serde(default)]
    pub query_parameter_value_match: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestHeadersAction {
    pub header_name: String,
    pub descriptor_key: String,
    #[serde(default)]
    pub skip_if_absent: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericKeyAction {
    pub descriptor_value: String,
    #[serde(default)]
    pub descriptor_key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValueMatchAction {
    #[serde(default)]
    pub descriptor_key: Option<String>,
    pub descriptor_value: String,
    /// Default true.
    #[serde(default)]
    pub expect_match: Option<bool>,
    #[serde(default)]
    pub headers: Vec<RouteHeaderMatcher>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParametersAction {
    pub query_parameter_name: String,
    pub descriptor_key: String,
    #[serde(default)]
    pub skip_if_absent: bool,
}

/// `config.route.v3.HeaderMatcher`, the value matchers Strait reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteHeaderMatcher {
    pub name: String,
    #[serde(default)]
    pub exact_match: Option<String>,
    #[serde(default)]
    pub prefix_match: Option<String>,
    #[serde(default)]
    pub suffix_match: Option<String>,
    #[serde(default)]
    pub safe_regex_match: Option<RegexMatcher>,
    #[serde(default)]
    pub present_match: Option<bool>,
    #[serde(default)]
    pub string_match: Option<StringMatch>,
    #[serde(default)]
    pub invert_match: bool,
}

/// `type.matcher.v3.StringMatcher`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub safe_regex: Option<RegexMatcher>,
}

/// `type.matcher.v3.RegexMatcher`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexMatcher {
    pub regex: String,
    #[serde(default)]
    pub google_re2: Option<Value>,
}

impl RateLimitAction {
    /// The kinds set, by their field names.
    fn kinds(&self) -> Vec<&'static str> {
        let set = [
            ("source_cluster", self.source_cluster.is_some()),
            ("destination_cluster", self.destination_cluster.is_some()),
            ("request_headers", self.request_headers.is_some()),
            ("remote_address", self.remote_address.is_some()),
            ("generic_key", self.generic_key.is_some()),
            ("header_value_match", self.header_value_match.is_some()),
            ("query_parameters", self.query_parameters.is_some()),
            ("dynamic_metadata", self.dynamic_metadata.is_some()),
            ("metadata", self.metadata.is_some()),
            ("extension", self.extension.is_some()),
            ("masked_remote_address", self.masked_remote_address.is_some()),
            ("query_parameter_value_match", self.query_parameter_value_match.is_some()),
        ];
        set.into_iter().filter(|(_, s)| *s).map(|(k, _)| k).collect()
    }

    /// The kind set when Strait does not produce its entry.
    pub fn unread(&self) -> Option<&'static str> {
        let unread =
            ["dynamic_metadata", "metadata", "extension", "masked_remote_address", "query_parameter_value_match"];
        self.kinds().into_iter().find(|k| unread.contains(k))
    }
}

impl RateLimit {
    /// The parts of the entry Strait does not act on: `validate` lists them.
    pub fn unread(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.actions.iter().filter_map(|a| a.unread()).map(|k| format!("action {k}")).collect();
        for (set, what) in [
            (!self.disable_key.is_empty(), "disable_key"),
            (self.limit.is_some(), "limit"),
            (self.hits_addend.is_some(), "hits_addend"),
            (self.apply_on_stream_done, "apply_on_stream_done"),
        ] {
            if set {
                out.push(what.into());
            }
        }
        out
    }

    /// Envoy's proto validation: at least one action, each setting one kind.
    fn check(&self) -> Result<(), PatchError> {
        if self.actions.is_empty() {
            return Err((".actions".into(), "at least one action is required".into()));
        }
        if self.stage > 10 {
            return Err((".stage".into(), "a stage is 0 to 10".into()));
        }
        for (i, a) in self.actions.iter().enumerate() {
            if a.kinds().len() != 1 {
                return Err((format!(".actions[{i}]"), "an action sets exactly one kind".into()));
            }
            let empty =
                |f: &str, s: &str| (s.is_empty()).then(|| (format!(".actions[{i}].{f}"), format!("{f} is required")));
            let missing = match a {
                RateLimitAction { request_headers: Some(h), .. } => {
                    empty("request_headers.header_name", &h.header_name)
                        .or_else(|| empty("request_headers.descriptor_key", &h.descriptor_key))
                }
                RateLimitAction { generic_key: Some(g), .. } => {
                    empty("generic_key.descriptor_value", &g.descriptor_value)
                }
                RateLimitAction { header_value_match: Some(h), .. } => {
                    empty("header_value_match.descriptor_value", &h.descriptor_value)
                }
                RateLimitAction { query_parameters: Some(q), .. } => {
                    empty("query_parameters.query_parameter_name", &q.query_parameter_name)
                        .or_else(|| empty("query_parameters.descriptor_key", &q.descriptor_key))
                }
                _ => None,
            };
            if let Some(e) = missing {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// `envoy.extensions.filters.http.ratelimit.v3.RateLimit`: the filter that asks a rate limit
/// service (envoy.service.ratelimit.v3) about a request's descriptors.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFilter {
    pub domain: String,
    #[serde(default)]
    pub stage: u32,
    /// `internal`, `external` or `both` (the default).
    #[serde(default)]
    pub request_type: Option<String>,
    /// Default 20ms.
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub failure_mode_deny: bool,
    #[serde(default)]
    pub rate_limited_as_resource_exhausted: bool,
    #[serde(default)]
    pub rate_limit_service: Option<RateLimitServiceConfig>,
    /// `OFF`, `DRAFT_VERSION_03`.
    #[serde(default)]
    pub enable_x_ratelimit_headers: Option<String>,
    #[serde(default)]
    pub disable_x_envoy_ratelimited_header: bool,
    #[serde(default)]
    pub rate_limited_status: Option<HttpStatus>,
    #[serde(default)]
    pub response_headers_to_add: Vec<HeaderValueOption>,
    #[serde(default)]
    pub status_on_error: Option<HttpStatus>,
    #[serde(default)]
    pub stat_prefix: String,
    #[serde(default)]
    pub failure_mode_deny_percent: Option<Value>,
    #[serde(default)]
    pub rate_limits: Vec<Value>,
    #[serde(default)]
    pub filter_enabled: Option<Value>,
    #[serde(default)]
    pub filter_enforced: Option<Value>,
}

/// `config.ratelimit.v3.RateLimitServiceConfig`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitServiceConfig {
    pub grpc_service: GrpcService,
    /// `V3` (the only one Envoy still speaks).
    #[serde(default)]
    pub transport_api_version: Option<String>,
}

/// `config.core.v3.GrpcService`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcService {
    #[serde(default)]
    pub envoy_grpc: Option<EnvoyGrpc>,
    #[serde(default)]
    pub google_grpc: Option<Value>,
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub initial_metadata: Vec<Value>,
    #[serde(default)]
    pub retry_policy: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvoyGrpc {
    pub cluster_name: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub retry_policy: Option<Value>,
    #[serde(default)]
    pub max_receive_message_length: Option<u32>,
    #[serde(default)]
    pub skip_envoy_headers: bool,
}

impl RateLimitFilter {
    /// The fields of the filter Strait does not act on, set: `validate` lists them.
    pub fn unread(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let grpc = self.rate_limit_service.as_ref().map(|s| &s.grpc_service);
        for (set, what) in [
            (self.request_type.as_deref().is_some_and(|t| t != "both"), "request_type"),
            (self.rate_limited_as_resource_exhausted, "rate_limited_as_resource_exhausted"),
            (self.enable_x_ratelimit_headers.as_deref().is_some_and(|h| h != "OFF"), "enable_x_ratelimit_headers"),
            (self.failure_mode_deny_percent.is_some(), "failure_mode_deny_percent"),
            (!self.rate_limits.is_empty(), "rate_limits (the filter's own; the route's are read)"),
            (self.filter_enabled.is_some() || self.filter_enforced.is_some(), "filter_enabled/filter_enforced"),
            (grpc.is_some_and(|g| !g.initial_metadata.is_empty()), "rate_limit_service.grpc_service.initial_metadata"),
            (grpc.is_some_and(|g| g.retry_policy.is_some()), "rate_limit_service.grpc_service.retry_policy"),
        ] {
            if set {
                out.push(what);
            }
        }
        out
    }

    /// Envoy's proto validation of the fields read.
    fn check(&self) -> Result<(), PatchError> {
        if self.domain.is_empty() {
            return Err((".domain".into(), "domain is required".into()));
        }
        if self.stage > 10 {
            return Err((".stage".into(), "a stage is 0 to 10".into()));
        }
        let Some(service) = &self.rate_limit_service else {
            return Err((".rate_limit_service".into(), "rate_limit_service is required".into()));
        };
        if service.transport_api_version.as_deref().is_some_and(|v| v != "V3") {
            return Err((".rate_limit_service.transport_api_version".into(), "only V3 is spoken".into()));
        }
        match &service.grpc_service.envoy_grpc {
            Some(g) if !g.cluster_name.is_empty() => Ok(()),
            Some(_) => Err((
                ".rate_limit_service.grpc_service.envoy_grpc.cluster_name".into(),
                "cluster_name is required".into(),
            )),
            None => Err((
                ".rate_limit_service.grpc_service.envoy_grpc".into(),
                "an envoy_grpc service is required (google_grpc is not supported)".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests;
