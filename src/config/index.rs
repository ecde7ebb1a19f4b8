//! Istio's name rules (exportTo, selectors, gateway names, short host names, host patterns) and a
//! host-pattern index that finds covering and covered patterns by probing, never by scanning
//! every pattern. Shared by validation and the snapshot compiler, so both resolve alike.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Istio's root config namespace: DestinationRules there apply mesh-wide when exported.
pub(crate) const ROOT_NAMESPACE: &str = "istio-system";

/// Does the Istio host pattern `pattern` admit `host` (both may be wildcards)? Used to
/// intersect a Gateway server's hosts with a VirtualService's hosts.
pub fn pattern_covers(pattern: &str, host: &str) -> bool {
    let (p, h) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    if p == "*" || p == h {
        return true;
    }
    match p.strip_prefix('*') {
        Some(suffix) => h.len() > suffix.len() && h.ends_with(suffix),
        None => false,
    }
}

/// Is a resource of namespace `owner` with this `exportTo` visible from namespace `consumer`?
/// Absent or `*`: everywhere; `.`: its own namespace; `~`: nowhere; else the named namespaces.
pub(crate) fn exported_to(export_to: &[String], owner: &str, consumer: &str) -> bool {
    export_to.is_empty()
        || export_to.iter().any(|e| match e.as_str() {
            "*" => true,
            "." => owner == consumer,
            "~" => false,
            ns => ns == consumer,
        })
}

/// `selector ⊆ labels`: an empty selector selects everything.
pub(crate) fn labels_subset(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// istiod's `resolveGatewayName`: `name` → `ns/name` (the VirtualService's namespace), `./name` →
/// `ns/name`, the legacy `name.ns.svc.cluster.local` → `ns/name`; `mesh` stays `mesh`.
pub(crate) fn resolve_gateway_name(name: &str, namespace: &str) -> String {
    if name == "mesh" {
        return name.to_string();
    }
    match name.split_once('/') {
        Some((".", rest)) => format!("{namespace}/{rest}"),
        Some(_) => name.to_string(),
        None => match name.split_once('.') {
            Some((short, rest)) => {
                let ns = rest.split('.').next().unwrap_or(rest);
                format!("{ns}/{short}")
            }
            None => format!("{namespace}/{name}"),
        },
    }
}

/// istiod's `ResolveShortnameToFQDN`: a name without a dot is a Kubernetes short name in
/// `namespace`. `*` and IP literals are left alone. Lower-cased: Istio host names are.
pub(crate) fn expand_host(host: &str, namespace: &str) -> String {
    if host == "*" || host.contains('.') || host.parse::<IpAddr>().is_ok() {
        host.to_ascii_lowercase()
    } else {
        format!("{}.{namespace}.svc.cluster.local", host.to_ascii_lowercase())
    }
}

/// The patterns that admit `host`, most specific first: `host` itself, `*.suffix` from the
/// longest suffix down, then `*`. `host` may itself be a wildcard (`*.a.b` yields `*.a.b`,
/// `*.b`, `*`).
pub(crate) fn covering_patterns(host: &str) -> impl Iterator<Item = String> + '_ {
    let suffixes = host
        .char_indices()
        .skip(1)
        .filter(|&(_, c)| c == '.')
        .map(move |(i, _)| format!("*{}", &host[i..]))
        .filter(move |p| p != host);
    std::iter::once(host.to_string()).chain(suffixes).chain((host != "*").then(|| "*".to_string()))
}

/// Host patterns (lower-case) → values, answering in O(labels) + O(hits) which patterns cover a
/// host and which patterns a wildcard covers.
#[derive(Debug)]
pub(crate) struct HostIndex<T> {
    by_pattern: HashMap<String, Vec<T>>,
    /// (pattern without its leading `*`, reversed; pattern), sorted: the patterns ending in a
    /// given suffix form one contiguous range.
    reversed: Vec<(String, String)>,
}

impl<T> HostIndex<T> {
    pub(crate) fn new(entries: impl IntoIterator<Item = (String, T)>) -> Self {
        let mut by_pattern: HashMap<String, Vec<T>> = HashMap::new();
        for (pattern, value) in entries {
            by_pattern.entry(pattern.to_ascii_lowercase()).or_default().push(value);
        }
        let mut reversed: Vec<(String, String)> =
            by_pattern.keys().map(|p| (p.trim_start_matches('*').chars().rev().collect(), p.clone())).collect();
        reversed.sort();
        Self { by_pattern, reversed }
    }

    /// Stored patterns admitting `host`, most specific first, with their values.
    pub(crate) fn covering<'s>(&'s self, host: &'s str) -> impl Iterator<Item = (&'s str, &'s [T])> + 's {
        covering_patterns(host)
            .filter_map(move |p| self.by_pattern.get_key_value(&p).map(|(k, v)| (k.as_str(), v.as_slice())))
    }

    /// Stored patterns strictly narrower than the wildcard `host` (`*.b` covers `a.b`, `*.a.b`);
    /// nothing when `host` is not a wildcard.
    pub(crate) fn covered_by<'s>(&'s self, host: &'s str) -> Box<dyn Iterator<Item = (&'s str, &'s [T])> + 's> {
        let Some(suffix) = host.strip_prefix('*') else {
            return Box::new(std::iter::empty());
        };
        let key: String = suffix.chars().rev().collect();
        let start = self.reversed.partition_point(|(r, _)| r.as_str() < key.as_str());
        Box::new(
            self.reversed[start..]
                .iter()
                .take_while(move |(r, _)| r.starts_with(key.as_str()))
                .filter(move |(_, p)| p != host && pattern_covers(host, p))
                .map(|(_, p)| (p.as_str(), self.by_pattern[p].as_slice())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_names_resolve_like_istiod() {
        assert_eq!(resolve_gateway_name("gw", "ns"), "ns/gw");
        assert_eq!(resolve_gateway_name("./gw", "ns"), "ns/gw");
        assert_eq!(resolve_gateway_name("other/gw", "ns"), "other/gw");
        assert_eq!(resolve_gateway_name("gw.other.svc.cluster.local", "ns"), "other/gw");
        assert_eq!(resolve_gateway_name("gw.other", "ns"), "other/gw");
        assert_eq!(resolve_gateway_name("mesh", "ns"), "mesh");
    }

    #[test]
    fn short_names_expand_in_the_namespace() {
        assert_eq!(expand_host("reviews", "ns"), "reviews.ns.svc.cluster.local");
        assert_eq!(expand_host("Reviews.Prod", "ns"), "reviews.prod");
        assert_eq!(expand_host("*", "ns"), "*");
        assert_eq!(expand_host("::1", "ns"), "::1");
    }

    #[test]
    fn covering_and_covered_patterns() {
        let got: Vec<_> = covering_patterns("a.b.c").collect();
        assert_eq!(got, ["a.b.c", "*.b.c", "*.c", "*"]);
        let got: Vec<_> = covering_patterns("*.b.c").collect();
        assert_eq!(got, ["*.b.c", "*.c", "*"]);
        let got: Vec<_> = covering_patterns("*").collect();
        assert_eq!(got, ["*"]);

        let index = HostIndex::new(
            ["a.b.c", "*.b.c", "x.c", "*.z.b.c", "b.c", "*"].iter().enumerate().map(|(i, p)| (p.to_string(), i)),
        );
        let mut covered: Vec<_> = index.covered_by("*.b.c").map(|(p, _)| p).collect();
        covered.sort();
        assert_eq!(covered, ["*.z.b.c", "a.b.c"]);
        let mut all: Vec<_> = index.covered_by("*").map(|(p, _)| p).collect();
        all.sort();
        assert_eq!(all, ["*.b.c", "*.z.b.c", "a.b.c", "b.c", "x.c"]);
        let covering: Vec<_> = index.covering("q.z.b.c").map(|(p, _)| p).collect();
        assert_eq!(covering, ["*.z.b.c", "*.b.c", "*"]);
        assert!(index.covered_by("a.b.c").next().is_none());
    }
}
