//! Strait: an io_uring, thread-per-core edge gateway configured by Istio YAML.
//! (layout doc is written once the modules exist)
pub mod config;
pub mod http;
pub mod snapshot;
