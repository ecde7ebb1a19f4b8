//! Strait: an io_uring, thread-per-core edge gateway configured by Istio YAML.
//!
//! Layers, one way: each module imports only modules listed below it (one line may hold
//! peers, which do not import each other). `tests/layers.rs` reads this block and fails on any
//! import against it, so the picture stays the code's (ARCHITECTURE.md draws the same, save
//! where `percore` and `publish` sit: both hold what `upstream` defines, so they sit above it).
//!
//! ```text
//! kit.rs       what tools built beside the gateway (strait-bench) use of it, in one place
//! cli.rs       the command line (bin/strait.rs renders errors for humans)
//! control/     load → validate → compile → publish; reload, drain, signals; starts the workers
//!              and the admin server
//! admin/       the admin server: renders what stats/, publish and the snapshot hold
//! worker/      one pinned monoio runtime per core: spawn, SO_REUSEPORT accept loops, follows
//!              what control publishes, fills in the per-core context
//! tls/         SNI routing, termination (into http/ or tcp/), passthrough
//! http/, tcp/  the HTTP exchange (session → plan → exchange) and raw TCP routes (spliced)
//! percore/     the per-core context handed down to the protocols (snapshot handle, pools,
//!              TLS configs, access-log sink, rng)
//! publish.rs   the contract between control, workers and admin: what is published, readiness
//! upstream/    the one upstream connect, per-core pools, balancers, live cluster state
//!              (outlier ejections, breaker counts) kept across reloads by cluster and endpoint
//! stats/       counters and gauges: per-core single writers, summed only when scraped
//! snapshot/    the compiled, immutable config: listeners → servers → routes → clusters
//! config/      YAML → typed Istio resources with file/document/line positions; validation
//! tls_stream.rs  one rustls stream for both ends (terminated and originated), whole or split
//! duplex.rs    a stream whose read and write halves may be used at once, soundly
//! limits.rs    client and head limits (a leaf)
//! counter.rs   single-writer counters and gauges, summed by their readers (a leaf)
//! buf.rs       the read buffer every codec fills (a leaf)
//! ```
// With `panic = "abort"` one panic ends every core: outside tests (clippy.toml) nothing unwraps.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::undocumented_unsafe_blocks)]

pub mod admin;
pub mod buf;
pub mod cli;
pub mod config;
pub mod control;
pub mod counter;
pub mod duplex;
pub mod http;
pub mod kit;
pub mod limits;
pub mod percore;
pub mod publish;
pub mod snapshot;
pub mod stats;
pub mod tcp;
pub mod tls;
pub mod tls_stream;
pub mod upstream;
pub mod worker;
