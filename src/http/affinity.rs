//! Session affinity: the hash key a DestinationRule's `consistentHash` takes from a request.

use std::net::SocketAddr;
use std::time::Duration;

use crate::snapshot::{hash_bytes, ip_hash};
use crate::snapshot::{Cluster, HashKey, LoadBalancer, RequestInfo};

/// What session affinity decided for one request.
#[derive(Default)]
pub struct Affinity {
    /// The hash the balancer maps to an endpoint; `None` when the cluster does not hash or the
    /// request lacks the key (Envoy then balances as if no hash policy were set).
    pub hash: Option<u64>,
    /// A `Set-Cookie` value for the response, when the affinity cookie was absent and the
    /// policy has a `ttl` (Envoy generates the cookie only then).
    pub set_cookie: Option<String>,
}

/// The request's affinity for `cluster`; `client` is the client's address as Envoy's
/// connection manager derives it (the downstream remote address its router hashes: the PROXY
/// header's source, or an address of `x-forwarded-for` behind trusted proxies). Reads the
/// request as routing sees it, whatever codec parsed it.
pub fn request_affinity(cluster: &Cluster, req: &RequestInfo<'_>, client: SocketAddr) -> Affinity {
    let LoadBalancer::ConsistentHash { key, .. } = &cluster.policy.load_balancer else {
        return Affinity::default();
    };
    let hash = match key {
        HashKey::Header(name) => req.header(name).map(|v| hash_bytes(&[v])),
        HashKey::SourceIp => Some(ip_hash(client.ip())),
        HashKey::QueryParameter(name) => req.query_param(name).map(|v| hash_bytes(&[v.as_bytes()])),
        HashKey::Cookie { name, path, ttl } => {
            let lines = req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("cookie"));
            match lines.map(|h| h.value).find_map(|line| cookie_value(line, name)) {
                Some(value) => Some(hash_bytes(&[value])),
                None => {
                    let Some(ttl) = ttl else { return Affinity::default() };
                    // As Envoy: the value is a hash of the client's address, the routing hash
                    // that of the value, so the next request carrying it hashes the same.
                    let value = format!("{:016x}", hash_bytes(&[client.to_string().as_bytes()]));
                    let hash = hash_bytes(&[value.as_bytes()]);
                    return Affinity {
                        hash: Some(hash),
                        set_cookie: Some(set_cookie(name, &value, path.as_deref(), *ttl)),
                    };
                }
            }
        }
    };
    Affinity { hash, set_cookie: None }
}

/// Envoy's generated cookie: `name="value"; Max-Age=N; Path=P; HttpOnly`, with no `Max-Age`
/// for a zero ttl (a session cookie).
fn set_cookie(name: &str, value: &str, path: Option<&str>, ttl: Duration) -> String {
    let mut line = format!("{name}=\"{value}\"");
    if !ttl.is_zero() {
        line.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        line.push_str(&format!("; Path={path}"));
    }
    line.push_str("; HttpOnly");
    line
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// The value of cookie `name` in one `Cookie:` line (`a=1; b=2`).
fn cookie_value<'c>(line: &'c [u8], name: &str) -> Option<&'c [u8]> {
    line.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii_start();
        let eq = pair.iter().position(|&b| b == b'=')?;
        // A quoted value (as generated cookies are) hashes as its content.
        (&pair[..eq] == name.as_bytes()).then(|| unquote(pair[eq + 1..].trim_ascii()))
    })
}

#[cfg(test)]
mod tests;
