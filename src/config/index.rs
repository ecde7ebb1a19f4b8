//! Istio's name rules (exportTo, selectors, gateway names, short host names, host patterns) and a
//! host-pattern index that finds covering and covered patterns by probing, never by scanning
//! every pattern. Shared by validation and the snapshot compiler, so both resolve alike.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::meta::PolicyTargetReference;

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

/// The label istiod puts on a gateway it deploys for a Kubernetes Gateway, which a policy's
/// `targetRefs` entry selects it by.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// What a policy says about where it attaches: AuthorizationPolicy, RequestAuthentication
/// (`selector`) and EnvoyFilter (`workloadSelector`) alike.
pub struct Attachment<'a> {
    pub namespace: &'a str,
    /// The selector's labels; `None`: no selector.
    pub selector: Option<&'a BTreeMap<String, String>>,
    /// `targetRef` and `targetRefs` together.
    pub target_refs: Vec<&'a PolicyTargetReference>,
}

/// This gateway as a policy may attach to it.
pub struct ThisGateway<'a> {
    /// `--namespace`.
    pub namespace: &'a str,
    /// MeshConfig's `rootNamespace`.
    pub root: &'a str,
    /// `--label`s.
    pub labels: &'a BTreeMap<String, String>,
}

/// Why a policy does not attach to this gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAttached {
    /// Neither the root namespace nor the gateway's.
    OtherNamespace,
    /// Its selector asks for labels this gateway does not have.
    SelectorMismatch,
    /// Its `targetRefs` name no Gateway this one is.
    OtherTarget,
}

/// Whether a policy attaches to this gateway, as istiod decides for every kind that selects
/// workloads (`PolicyMatcherForProxy`): with `targetRefs`, one must name a
/// `gateway.networking.k8s.io` Gateway of the gateway's namespace (the policy's own: istiod
/// allows no other) whose name the gateway carries as the [`GATEWAY_NAME_LABEL`] label;
/// without, the policy is of the root namespace or the gateway's, with no selector or one the
/// gateway's labels satisfy (a root-namespace policy with a selector selects across
/// namespaces).
pub fn policy_attaches(policy: &Attachment<'_>, gateway: &ThisGateway<'_>) -> Result<(), NotAttached> {
    if !policy.target_refs.is_empty() {
        let name = gateway.labels.get(GATEWAY_NAME_LABEL);
        let fits = |r: &&PolicyTargetReference| {
            r.kind == "Gateway"
                && r.group == "gateway.networking.k8s.io"
                && r.namespace.as_deref().unwrap_or(policy.namespace) == gateway.namespace
                && policy.namespace == gateway.namespace
                && name == Some(&r.name)
        };
        return if policy.target_refs.iter().any(fits) { Ok(()) } else { Err(NotAttached::OtherTarget) };
    }
    if policy.namespace != gateway.root && policy.namespace != gateway.namespace {
        return Err(NotAttached::OtherNamespace);
    }
    match policy.selector {
        Some(s) if !labels_subset(s, gateway.labels) => Err(NotAttached::SelectorMismatch),
        _ => Ok(()),
    }
}

impl NotAttached {
    /// Why, in words, for `validate`'s warning.
    pub fn explain(self, policy: &Attachment<'_>, gateway: &ThisGateway<'_>) -> String {
        let show =
            |l: &BTreeMap<String, String>| l.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let (ns, root) = (gateway.namespace, gateway.root);
        match self {
            NotAttached::OtherNamespace => format!(
                "namespace {} is neither the root namespace ({root}) nor the gateway's (--namespace {ns})",
                policy.namespace
            ),
            NotAttached::SelectorMismatch => format!(
                "selects other workloads: \"{}\"; this instance's labels (--label) are {}",
                policy.selector.map(show).unwrap_or_default(),
                show(gateway.labels)
            ),
            NotAttached::OtherTarget => {
                let named = policy.target_refs.iter().map(|r| format!("{} {}", r.kind, r.name)).collect::<Vec<_>>();
                format!(
                    "targets {}, not this gateway (a Gateway of namespace {ns} named by the label \
                     {GATEWAY_NAME_LABEL}, --label)",
                    named.join(", ")
                )
            }
        }
    }
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
    fn a_policy_attaches_by_namespace_and_selector_or_by_target_alone() {
        let labels: BTreeMap<String, String> =
            [("istio", "ingressgateway"), (GATEWAY_NAME_LABEL, "edge")].map(|(k, v)| (k.into(), v.into())).into();
        let gw = ThisGateway { namespace: "gw-ns", root: "istio-system", labels: &labels };
        let selector = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        let (ours, theirs) = (selector("istio", "ingressgateway"), selector("app", "web"));
        let target = |name: &str, namespace: Option<&str>| PolicyTargetReference {
            group: "gateway.networking.k8s.io".into(),
            kind: "Gateway".into(),
            name: name.into(),
            namespace: namespace.map(Into::into),
        };
        let (edge, other, elsewhere) = (target("edge", None), target("other", None), target("edge", Some("x")));
        let at =
            |namespace, selector, target_refs| policy_attaches(&Attachment { namespace, selector, target_refs }, &gw);
        assert_eq!(at("istio-system", None, vec![]), Ok(()));
        assert_eq!(at("gw-ns", Some(&ours), vec![]), Ok(()));
        assert_eq!(at("apps", None, vec![]), Err(NotAttached::OtherNamespace));
        assert_eq!(at("istio-system", Some(&theirs), vec![]), Err(NotAttached::SelectorMismatch));
        assert_eq!(at("gw-ns", None, vec![&edge]), Ok(()));
        assert_eq!(at("gw-ns", None, vec![&other, &edge]), Ok(()));
        assert_eq!(at("gw-ns", None, vec![&other]), Err(NotAttached::OtherTarget));
        // A target is in the policy's namespace, which must be the gateway's: the root's does
        // not reach across, nor a reference to another namespace.
        assert_eq!(at("istio-system", None, vec![&edge]), Err(NotAttached::OtherTarget));
        assert_eq!(at("gw-ns", None, vec![&elsewhere]), Err(NotAttached::OtherTarget));
    }

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
