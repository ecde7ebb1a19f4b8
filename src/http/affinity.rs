//! Session affinity: the hash key a DestinationRule's `consistentHash` takes from a request.

use std::net::IpAddr;

use super::codec::RequestHead;
use crate::snapshot::{Cluster, HashKey, LoadBalancer};
use crate::upstream::{hash_bytes, ip_hash};

/// The request's affinity hash for `cluster`, or `None` when the cluster does not hash or the
/// request lacks the key (Envoy then balances as if no hash policy were set).
pub fn request_hash(cluster: &Cluster, head: &RequestHead<'_>, source: IpAddr) -> Option<u64> {
    let LoadBalancer::ConsistentHash { key, .. } = &cluster.policy.load_balancer else {
        return None;
    };
    match key {
        HashKey::Header(name) => head.header(name).map(|v| hash_bytes(&[v])),
        HashKey::SourceIp => Some(ip_hash(source)),
        HashKey::QueryParameter(name) => query_value(head.query()?, name).map(|v| hash_bytes(&[v.as_bytes()])),
        HashKey::Cookie { name, .. } => {
            head.header_values("cookie").find_map(|line| cookie_value(line, name)).map(|v| hash_bytes(&[v]))
        }
    }
}

/// The first value of `name` in a query string (`a=1&b=2`).
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// The value of cookie `name` in one `Cookie:` line (`a=1; b=2`).
fn cookie_value<'c>(line: &'c [u8], name: &str) -> Option<&'c [u8]> {
    line.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii_start();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests;
