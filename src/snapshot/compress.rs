//! Response compression as EnvoyFilter's `envoy.filters.http.compressor` patches configure it:
//! the compressors of one listener's filter chain, in filter order, with Envoy's defaults
//! filled in. The HTTP side (`http/compress.rs`) negotiates and compresses with them.

/// Envoy's content types compressed when a compressor names none (`compressor.cc`).
pub const DEFAULT_CONTENT_TYPES: [&str; 18] = [
    "text/html",
    "text/plain",
    "text/css",
    "application/javascript",
    "application/x-javascript",
    "text/javascript",
    "text/x-javascript",
    "text/ecmascript",
    "text/js",
    "text/jscript",
    "text/x-js",
    "application/ecmascript",
    "application/x-json",
    "application/xml",
    "application/json",
    "image/svg+xml",
    "text/xml",
    "application/xhtml+xml",
];

/// Envoy's `min_content_length` (and the deprecated `content_length`) when unset or 0.
pub const DEFAULT_MIN_CONTENT_LENGTH: u64 = 30;

/// The compressor filters of one listener's HTTP filter chain, in the chain's order: the
/// order breaks ties between encodings (`*` takes the first registered).
#[derive(Debug, Clone, PartialEq)]
pub struct Compression {
    pub compressors: Box<[Compressor]>,
    /// Some compressor removes `accept-encoding` before the request goes upstream.
    pub remove_accept_encoding: bool,
}

/// One `envoy.filters.http.compressor` filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Compressor {
    pub library: Library,
    /// Response direction `enabled` (its runtime flag's `default_value`).
    pub enabled: bool,
    pub min_content_length: u64,
    /// Lower-case media types (never empty: Envoy's defaults fill an empty list).
    pub content_types: Box<[Box<str>]>,
    pub disable_on_etag_header: bool,
    pub remove_accept_encoding_header: bool,
}

/// A compressor library with its parameters, Envoy's defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    /// zlib's level (1..=9, 6 for `DEFAULT_COMPRESSION`) and window bits (9..=15, Envoy's
    /// default 12). `memory_level` has no counterpart in zlib-rs's streaming API.
    Gzip { level: u32, window_bits: u8 },
    /// Quality 0..=11 (Envoy's default 3), window bits 10..=24 (default 18).
    Brotli { quality: u32, window_bits: u32 },
    /// Level (Envoy's default 3, zstd's own default) and the frame checksum.
    Zstd { level: i32, checksum: bool },
}

impl Library {
    /// The `content-encoding` the library writes, which `accept-encoding` names.
    pub fn encoding(&self) -> &'static str {
        match self {
            Library::Gzip { .. } => "gzip",
            Library::Brotli { .. } => "br",
            Library::Zstd { .. } => "zstd",
        }
    }
}
