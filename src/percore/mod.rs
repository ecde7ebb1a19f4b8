//! The per-core context handed down to the protocols (snapshot handle, upstream pools, TLS
//! config copies, access-log sink, client limits, rng): defined below them, filled in by
//! `worker`.

pub mod access_log;
mod client;
mod ctx;
pub mod jwt;
mod tls;

pub use client::ClientTcp;
pub use ctx::{ConnInfo, WorkerCtx};
pub use tls::CoreConfigs;
