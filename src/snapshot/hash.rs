//! Consistent hashing for session affinity: ring-hash and Maglev tables that map a request's
//! hash (see `http::affinity`) to an endpoint.
//!
//! A cluster's table is built once when the snapshot is compiled (it is immutable config, as
//! the endpoints it maps) and read by every core; the hash is deterministic, so the requests
//! of a key land on the same endpoint whichever core serves them.

use std::hash::{DefaultHasher, Hasher};
use std::net::IpAddr;

use super::{Endpoint, HashAlgorithm, LoadBalancer};

/// A deterministic 64-bit hash: `DefaultHasher::new()` uses fixed keys, so all workers (one
/// binary) agree.
pub fn hash_bytes(parts: &[&[u8]]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in parts {
        h.write(p);
    }
    h.finish()
}

/// The hash of a client address (`useSourceIp`), for HTTP and TCP routes alike.
pub fn ip_hash(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(ip) => hash_bytes(&[&ip.octets()]),
        IpAddr::V6(ip) => hash_bytes(&[&ip.octets()]),
    }
}

/// A consistent-hashing cluster's table, built when the snapshot is compiled.
#[derive(Clone)]
pub enum HashTable {
    /// Points on the ring, sorted by hash, each naming an endpoint index.
    Ring(Vec<(u64, u32)>),
    /// Maglev's lookup table: slot → endpoint index.
    Maglev(Vec<u32>),
}

/// Tells the kind and size only: a table holds up to millions of entries.
impl std::fmt::Debug for HashTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashTable::Ring(points) => write!(f, "Ring({} points)", points.len()),
            HashTable::Maglev(slots) => write!(f, "Maglev({} slots)", slots.len()),
        }
    }
}

/// Envoy's ring-hash bounds: the ring has at least `minimum_ring_size` points, at most 8M.
const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

impl HashTable {
    /// The table of a cluster balanced by `lb` over `endpoints`, or `None` when it does not
    /// use consistent hashing or has no endpoints.
    pub fn build(lb: &LoadBalancer, endpoints: &[Endpoint]) -> Option<HashTable> {
        let LoadBalancer::ConsistentHash { algorithm, .. } = lb else {
            return None;
        };
        if endpoints.is_empty() {
            return None;
        }
        let names: Vec<Vec<u8>> = endpoints.iter().map(|e| e.addr.to_string().into_bytes()).collect();
        let weights: Vec<u64> = endpoints.iter().map(|e| u64::from(e.weight.max(1))).collect();
        Some(match *algorithm {
            HashAlgorithm::RingHash { minimum_ring_size } => ring(&names, &weights, minimum_ring_size),
            HashAlgorithm::Maglev { table_size } => maglev(&names, &weights, table_size),
        })
    }

    /// The endpoint for `hash`; with `skip`, walks on to the first endpoint it allows
    /// (retries go to another host), falling back to the first pick when all are skipped.
    pub fn lookup(&self, hash: u64, skip: impl Fn(usize) -> bool) -> usize {
        match self {
            HashTable::Ring(points) => {
                let start = points.partition_point(|(h, _)| *h < hash) % points.len();
                let first = points[start].1 as usize;
                (0..points.len())
                    .map(|i| points[(start + i) % points.len()].1 as usize)
                    .find(|&e| !skip(e))
                    .unwrap_or(first)
            }
            HashTable::Maglev(slots) => {
                let start = (hash % slots.len() as u64) as usize;
                let first = slots[start] as usize;
                (0..slots.len()).map(|i| slots[(start + i) % slots.len()] as usize).find(|&e| !skip(e)).unwrap_or(first)
            }
        }
    }
}

/// Each endpoint gets points in proportion to its weight, at least `minimum` in all.
fn ring(names: &[Vec<u8>], weights: &[u64], minimum: u64) -> HashTable {
    let total: u64 = weights.iter().sum();
    let size = minimum.clamp(1, MAX_RING_SIZE);
    let mut points = Vec::with_capacity(size as usize + names.len());
    for (i, (name, w)) in names.iter().zip(weights).enumerate() {
        let count = (size * w).div_ceil(total).max(1);
        for n in 0..count {
            points.push((hash_bytes(&[name, b"_", n.to_string().as_bytes()]), i as u32));
        }
    }
    points.sort_unstable();
    HashTable::Ring(points)
}

/// Maglev (Eisenbud et al., 2016) with weights: each round an endpoint earns its weight in
/// credit and fills one preferred free slot per `max_weight` of credit, so slots split in
/// proportion to weight.
fn maglev(names: &[Vec<u8>], weights: &[u64], table_size: u64) -> HashTable {
    let m = table_size.max(1);
    let perms: Vec<(u64, u64)> = names
        .iter()
        .map(|name| (hash_bytes(&[name, b"offset"]) % m, hash_bytes(&[name, b"skip"]) % (m - 1).max(1) + 1))
        .collect();
    let max_weight = *weights.iter().max().unwrap_or(&1);
    let mut next = vec![0u64; names.len()];
    let mut credit = vec![0u64; names.len()];
    let mut slots = vec![u32::MAX; m as usize];
    let mut filled = 0u64;
    'fill: while filled < m {
        for (i, &(offset, skip)) in perms.iter().enumerate() {
            credit[i] += weights[i];
            while credit[i] >= max_weight && filled < m {
                credit[i] -= max_weight;
                // None only once every slot is taken, which `filled < m` rules out.
                let Some(slot) = preferred_free(&slots, offset, skip, &mut next[i]) else { break 'fill };
                slots[slot] = i as u32;
                filled += 1;
            }
        }
    }
    HashTable::Maglev(slots)
}

/// The endpoint's next preferred slot that is still free. A prime table size (Istio's default
/// 65537) makes the permutation visit every slot; for any other size a linear probe finishes.
fn preferred_free(slots: &[u32], offset: u64, skip: u64, next: &mut u64) -> Option<usize> {
    let m = slots.len() as u64;
    while *next < m {
        let slot = ((offset + *next * skip) % m) as usize;
        *next += 1;
        if slots[slot] == u32::MAX {
            return Some(slot);
        }
    }
    slots.iter().position(|&s| s == u32::MAX)
}

#[cfg(test)]
mod tests;
