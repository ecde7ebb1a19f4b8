//! Where the compiler gets what it reads off the network: the addresses of `resolution: DNS`
//! hostnames and the key sets of `jwksUri`s. The control thread hands it its live answers
//! (refreshed off the request path); `strait validate` and the tests ask the system resolver
//! once and fetch no key set.

use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;

use crate::config::jwks::Jwks;
use crate::snapshot::jwt::JwksSource;

/// Addresses for a hostname; an empty answer leaves the endpoint out (the cluster may then
/// have none, and its routes answer 503 as Envoy's do).
pub trait Resolve {
    fn lookup(&mut self, name: &str) -> Vec<IpAddr>;

    /// The last key set fetched from `source`, `None` while none ever was (its tokens then
    /// fail, as Envoy's do while a remote JWKS is missing).
    fn jwks(&mut self, source: &JwksSource) -> Option<Arc<Jwks>> {
        let _ = source;
        None
    }
}

/// The system resolver (`getaddrinfo`: `/etc/hosts`, then `/etc/resolv.conf`), asked once per
/// name; a failure is a warning and no addresses.
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(&mut self, name: &str) -> Vec<IpAddr> {
        match (name, 0).to_socket_addrs() {
            Ok(addrs) => distinct(addrs.map(|a| a.ip())),
            Err(e) => {
                tracing::warn!(name, error = %e, "DNS resolution failed; the endpoint has no addresses");
                Vec::new()
            }
        }
    }
}

/// `ips` in their first order, each once.
pub fn distinct(ips: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in ips {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}
