//! Why `strait run` could not start; rendered once, by the binary.

use std::io;
use std::net::SocketAddr;

use super::kube::KubeError;
use super::ports::BindError;
use crate::config::Diagnostics;
use crate::worker::StartError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The first config is invalid: every diagnostic, for the binary to print.
    #[error("invalid configuration")]
    InvalidConfig(Diagnostics),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot serve the admin interface on {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] io::Error),
    #[error("cannot start the file watcher: {0}")]
    Watcher(#[source] io::Error),
    #[error("cannot start the DNS resolver's runtime: {0}")]
    Dns(#[source] io::Error),
    #[error("cannot start the JWKS fetcher's runtime: {0}")]
    Jwks(#[source] io::Error),
    #[error(transparent)]
    Workers(#[from] StartError),
    #[error("cannot read the config from Kubernetes: {0}")]
    Kube(#[source] KubeError),
}
