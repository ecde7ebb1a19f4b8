//! Strait: an io_uring, thread-per-core edge gateway configured by Istio YAML.
//! (layout doc is written once the modules exist)
pub mod admin;
pub mod config;
pub mod snapshot;
pub mod upstream;
