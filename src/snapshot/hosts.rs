//! Virtual-host selection by Host/SNI: exact, then longest `*.suffix`, then `*`, in O(labels).

use std::collections::HashMap;

/// Maps Istio host patterns to values. Lookup never scans the patterns: exact names are one
/// hash probe, wildcards one probe per dot in the request's host, so the cost does not grow
/// with the number of virtual hosts.
#[derive(Debug, Clone)]
pub struct HostTable<T> {
    /// Lower-cased exact hosts.
    exact: HashMap<Box<str>, T>,
    /// `*.example.com` stored as `.example.com` (lower-cased), matched as a suffix.
    suffix: HashMap<Box<str>, T>,
    /// The `*` pattern.
    any: Option<T>,
}

impl<T> Default for HostTable<T> {
    fn default() -> Self {
        Self { exact: HashMap::new(), suffix: HashMap::new(), any: None }
    }
}

impl<T> HostTable<T> {
    /// Inserts `pattern` (an exact host, `*.suffix` or `*`); returns the previous value.
    pub fn insert(&mut self, pattern: &str, value: T) -> Option<T> {
        let pattern = pattern.to_ascii_lowercase();
        if pattern == "*" {
            self.any.replace(value)
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            self.suffix.insert(suffix.into(), value)
        } else {
            self.exact.insert(pattern.into(), value)
        }
    }

    /// The value stored for exactly this pattern, for building the table.
    pub fn get_pattern_mut(&mut self, pattern: &str) -> Option<&mut T> {
        let pattern = pattern.to_ascii_lowercase();
        if pattern == "*" {
            self.any.as_mut()
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            self.suffix.get_mut(suffix)
        } else {
            self.exact.get_mut(pattern.as_str())
        }
    }

    /// Selects the value for a request's Host or SNI. The port is stripped and case ignored.
    pub fn lookup(&self, host: &str) -> Option<&T> {
        let host = strip_port(host);
        // Hosts are short: lower-case on the stack when the client sent upper case.
        let mut buf = [0u8; 256];
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) && host.len() <= buf.len() {
            let lower = &mut buf[..host.len()];
            lower.copy_from_slice(host.as_bytes());
            lower.make_ascii_lowercase();
            // ASCII lower-casing keeps UTF-8 valid.
            std::str::from_utf8(lower).unwrap_or(host)
        } else {
            host
        };
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        if !self.suffix.is_empty() {
            // Leftmost dot first = longest suffix first; `*` must match at least one byte.
            for (i, b) in host.bytes().enumerate().skip(1) {
                if b == b'.' {
                    if let Some(v) = self.suffix.get(&host[i..]) {
                        return Some(v);
                    }
                }
            }
        }
        self.any.as_ref()
    }

    /// Every (pattern, value), for /config_dump.
    pub fn iter(&self) -> impl Iterator<Item = (String, &T)> {
        let exact = self.exact.iter().map(|(k, v)| (k.to_string(), v));
        let suffix = self.suffix.iter().map(|(k, v)| (format!("*{k}"), v));
        exact.chain(suffix).chain(self.any.iter().map(|v| ("*".to_string(), v)))
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.suffix.len() + usize::from(self.any.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `host:port` → `host`; IPv6 literals keep their brackets (`[::1]:80` → `[::1]`).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

pub use crate::config::index::pattern_covers;

/// The more specific of two overlapping host patterns (their intersection), if they overlap:
/// server `*.example.com` ∩ VirtualService `foo.example.com` = `foo.example.com`.
pub fn intersect(a: &str, b: &str) -> Option<String> {
    if pattern_covers(a, b) {
        Some(b.to_ascii_lowercase())
    } else if pattern_covers(b, a) {
        Some(a.to_ascii_lowercase())
    } else {
        None
    }
}
