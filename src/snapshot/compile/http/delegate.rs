//! VirtualService delegation: short names resolved per namespace, and delegate routes merged
//! under their root route as istiod's `mergeHTTPRoute` does.

use std::collections::BTreeMap;

use crate::config::index::{expand_host, resolve_gateway_name};
use crate::config::virtual_service::{Destination as ConfigDestination, HttpMatchRequest, HttpRoute, StringMatch};

/// A copy of `route` with short names resolved in `namespace`, as istiod resolves every
/// VirtualService before merging delegates: each keeps its own namespace.
pub(in crate::snapshot::compile) fn resolved(route: &HttpRoute, namespace: &str) -> HttpRoute {
    let mut route = route.clone();
    let fix = |d: &mut ConfigDestination| d.host = expand_host(&d.host, namespace);
    route.route.iter_mut().for_each(|r| fix(&mut r.destination));
    route.mirror.iter_mut().for_each(fix);
    route.mirrors.iter_mut().for_each(|m| fix(&mut m.destination));
    for m in &mut route.matches {
        m.gateways.iter_mut().for_each(|g| *g = resolve_gateway_name(g, namespace));
    }
    route
}

/// istiod's `mergeHTTPRoute`: a delegate route under its root. Each delegate block must fit in
/// some root block (no conflicting condition); `None` when one does not, and the delegate route
/// is dropped. Fields the delegate leaves unset come from the root.
pub(in crate::snapshot::compile) fn merge_delegate(root: &HttpRoute, mut delegate: HttpRoute) -> Option<HttpRoute> {
    delegate.matches = if root.matches.is_empty() {
        delegate.matches
    } else if delegate.matches.is_empty() {
        root.matches.clone()
    } else {
        let mut out = Vec::new();
        for leaf in &delegate.matches {
            let before = out.len();
            out.extend(root.matches.iter().filter(|r| !has_conflict(r, leaf)).map(|r| merge_match(r, leaf)));
            if out.len() == before {
                return None;
            }
        }
        out
    };
    delegate.name = match (&root.name, delegate.name) {
        (Some(r), Some(d)) => Some(format!("{r}-{d}")),
        (r, d) => d.or_else(|| r.clone()),
    };
    macro_rules! inherit {
        ($($field:ident),*) => { $( if delegate.$field.is_none() { delegate.$field = root.$field.clone(); } )* };
    }
    inherit!(
        rewrite,
        direct_response,
        timeout,
        retries,
        fault,
        mirror,
        mirror_percent,
        mirror_percentage,
        cors_policy,
        headers
    );
    if delegate.mirrors.is_empty() {
        delegate.mirrors = root.mirrors.clone();
    }
    delegate.delegate = None;
    Some(delegate)
}

fn merge_match(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = leaf.clone();
    out.name = match (&root.name, &leaf.name) {
        (Some(r), Some(l)) => Some(format!("{r}-{l}")),
        (r, l) => l.clone().or_else(|| r.clone()),
    };
    out.uri = leaf.uri.clone().or_else(|| root.uri.clone());
    out.scheme = leaf.scheme.clone().or_else(|| root.scheme.clone());
    out.method = leaf.method.clone().or_else(|| root.method.clone());
    out.authority = leaf.authority.clone().or_else(|| root.authority.clone());
    let merged = |r: &BTreeMap<String, StringMatch>, l: &BTreeMap<String, StringMatch>| {
        let mut m = r.clone();
        m.extend(l.iter().map(|(k, v)| (k.clone(), v.clone())));
        m
    };
    out.headers = merged(&root.headers, &leaf.headers);
    out.without_headers = merged(&root.without_headers, &leaf.without_headers);
    out.query_params = merged(&root.query_params, &leaf.query_params);
    out.port = leaf.port.filter(|&p| p != 0).or(root.port);
    out.source_labels = root.source_labels.clone();
    out.source_labels.extend(leaf.source_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    out.source_namespace = leaf.source_namespace.clone().or_else(|| root.source_namespace.clone());
    if out.gateways.is_empty() {
        out.gateways = root.gateways.clone();
    }
    out.stat_prefix = leaf.stat_prefix.clone().or_else(|| root.stat_prefix.clone());
    out
}

/// istiod's `hasConflict`: can `leaf` narrow `root` without contradicting it?
fn has_conflict(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if pairs.iter().any(|(r, l)| string_conflict(r.as_ref(), l.as_ref())) {
        return true;
    }
    let maps = [
        (&root.headers, &leaf.headers),
        (&root.without_headers, &leaf.without_headers),
        (&root.query_params, &leaf.query_params),
    ];
    if maps.iter().any(|(r, l)| l.iter().any(|(k, lv)| string_conflict(r.get(k), Some(lv)))) {
        return true;
    }
    let (rp, lp) = (root.port.unwrap_or(0), leaf.port.unwrap_or(0));
    root.ignore_uri_case != leaf.ignore_uri_case
        || (rp > 0 && lp > 0 && rp != lp)
        || root.source_namespace.as_ref().is_some_and(|r| leaf.source_namespace.as_ref() != Some(r))
        || leaf.source_labels.iter().any(|(k, v)| root.source_labels.get(k).is_some_and(|rv| rv != v))
        || (!root.gateways.is_empty()
            && !leaf.gateways.is_empty()
            && (root.gateways.len() < leaf.gateways.len() || leaf.gateways.iter().any(|g| !root.gateways.contains(g))))
}

fn string_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    let set = |s: &Option<String>| s.as_deref().is_some_and(|v| !v.is_empty());
    let any = |m: &StringMatch| set(&m.regex) || set(&m.prefix) || set(&m.exact);
    if (set(&root.regex) && any(leaf)) || (set(&leaf.regex) && any(root)) {
        return true;
    }
    if let Some(exact) = root.exact.as_deref().filter(|e| !e.is_empty()) {
        return set(&leaf.prefix) || leaf.exact.as_deref().unwrap_or("") != exact;
    }
    if let Some(prefix) = root.prefix.as_deref().filter(|p| !p.is_empty()) {
        if let Some(p) = leaf.prefix.as_deref().filter(|p| !p.is_empty()) {
            return !p.starts_with(prefix);
        }
        if let Some(e) = leaf.exact.as_deref().filter(|e| !e.is_empty()) {
            return !e.starts_with(prefix);
        }
    }
    true
}
