//! Strait: an io_uring, thread-per-core edge gateway configured by Istio YAML.
//!
//! Layers, one way, each importing only those after it (ARCHITECTURE.md; `modgraph.py` finds
//! no circle): `control` (the control thread: builds, publishes, reloads, drains; starts the
//! workers and the admin server) → `admin` (the admin server: renders `stats`, `publish` and
//! the snapshot) → `worker` (one pinned monoio runtime per core: spawn, accept loops, follows
//! what control publishes) → `tls` (SNI routing, termination, passthrough) → `http` (the
//! per-connection HTTP proxy) and `tcp` (raw TCP routes, spliced) → `percore` (the per-core
//! context handed to the protocols, filled in by `worker`; it holds the upstream pools, so it
//! sits above `upstream`) → `upstream` (per-core pools, balancers, TLS origination) →
//! `publish` (the contract between control, workers and admin) → `stats` (counters and
//! gauges) → `snapshot` (the compiled, immutable routing snapshot) → `config` (YAML → typed
//! resources, validation). Leaves anyone may use: `buf`, `limits`. `cli` parses the command
//! line, above them all.
pub mod admin;
pub mod buf;
pub mod cli;
pub mod config;
pub mod control;
pub mod http;
pub mod limits;
pub mod percore;
pub mod publish;
pub mod snapshot;
pub mod stats;
pub mod tcp;
pub mod tls;
pub mod upstream;
pub mod worker;
