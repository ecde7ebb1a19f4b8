//! Strait: an io_uring, thread-per-core edge gateway configured by Istio YAML.
//!
//! Layers, one way (ARCHITECTURE.md): `config` (YAML → typed resources, validation) →
//! `snapshot` (the compiled, immutable routing snapshot) → `control` (the control thread:
//! builds, publishes, reloads, drains) → `worker` (one pinned monoio runtime per core, accept
//! loops) → `tls` (SNI routing, termination, passthrough) → `http` (the per-connection HTTP
//! proxy) and `tcp` (raw TCP routes, spliced) → `upstream` (per-core pools, TLS
//! origination). `admin` serves the admin port and holds the per-worker counters; `cli` parses
//! the command line.
// With `panic = "abort"` one panic ends every core: outside tests (clippy.toml) nothing unwraps.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::undocumented_unsafe_blocks)]

pub mod admin;
pub mod buf;
pub mod cli;
pub mod config;
pub mod control;
pub mod duplex;
pub mod error;
pub mod http;
pub mod snapshot;
pub mod tcp;
pub mod tls;
pub mod tls_stream;
pub mod upstream;
pub mod worker;
