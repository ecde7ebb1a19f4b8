//! VirtualService rules (Istio's `ValidateVirtualService`): hosts, gateway names, each route's
//! action, destinations and weights, matchers, rewrites, redirects, retries and percentages.

use super::{dns_label, At};
use crate::config::index::pattern_covers;
use crate::config::virtual_service::{
    Destination, Headers, HttpMatchRequest, HttpRoute, RouteDestination, StringMatch, VirtualService,
};
use crate::config::{ConfigSet, Diagnostics};

pub(super) fn check(set: &ConfigSet, out: &mut Diagnostics) {
    for vs in &set.virtual_services {
        let mut at = At { resource: vs, out: &mut *out };
        let spec = &vs.spec;
        // No hosts and no gateways is a delegate, which takes its hosts from its root.
        if spec.hosts.is_empty() && !spec.gateways.is_empty() {
            at.error("spec.hosts", "virtual service must have at least one host");
        }
        for (i, host) in spec.hosts.iter().enumerate() {
            at.host(format!("spec.hosts[{i}]"), host);
            // Literal or wildcard duplicates (`*.foo.com` and `a.foo.com`), as Istio refuses.
            if let Some(earlier) = spec.hosts[..i].iter().find(|h| pattern_covers(h, host) || pattern_covers(host, h)) {
                at.error(format!("spec.hosts[{i}]"), format!("duplicate hosts in virtual service: {earlier} & {host}"));
            }
        }
        gateway_names(&mut at, "spec.gateways", &spec.gateways);
        if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
            at.error("spec", "http, tcp or tls must be provided in virtual service");
        }
        for (i, route) in spec.http.iter().enumerate() {
            http_route(&mut at, &format!("spec.http[{i}]"), route);
        }
        for (i, route) in spec.tcp.iter().enumerate() {
            let prefix = format!("spec.tcp[{i}]");
            for (j, m) in route.matches.iter().enumerate() {
                let mp = format!("{prefix}.match[{j}]");
                if let Some(port) = m.port {
                    at.port(format!("{mp}.port"), port);
                }
                subnets(&mut at, &format!("{mp}.destinationSubnets"), &m.destination_subnets);
                if let Some(s) = &m.source_subnet {
                    subnet(&mut at, format!("{mp}.sourceSubnet"), s);
                }
                gateway_names(&mut at, &format!("{mp}.gateways"), &m.gateways);
            }
            l4_route(&mut at, &prefix, "tcp", &route.route);
        }
        for (i, route) in spec.tls.iter().enumerate() {
            let prefix = format!("spec.tls[{i}]");
            if route.matches.is_empty() {
                at.error(format!("{prefix}.match"), "tls route must have at least one match condition");
            }
            for (j, m) in route.matches.iter().enumerate() {
                let mp = format!("{prefix}.match[{j}]");
                if m.sni_hosts.is_empty() {
                    at.error(format!("{mp}.sniHosts"), "tls match must have at least one SNI host");
                }
                for (k, host) in m.sni_hosts.iter().enumerate() {
                    at.host(format!("{mp}.sniHosts[{k}]"), host);
                }
                if let Some(port) = m.port {
                    at.port(format!("{mp}.port"), port);
                }
                subnets(&mut at, &format!("{mp}.destinationSubnets"), &m.destination_subnets);
                gateway_names(&mut at, &format!("{mp}.gateways"), &m.gateways);
            }
            l4_route(&mut at, &prefix, "tls", &route.route);
        }
    }
}

/// A tcp or tls route's destinations: at least one, weighted as http routes are.
fn l4_route(at: &mut At<'_, VirtualService>, prefix: &str, kind: &str, route: &[RouteDestination]) {
    if route.is_empty() {
        at.error(format!("{prefix}.route"), format!("{kind} route requires at least one destination"));
    }
    destinations(at, prefix, route.iter().map(|r| (&r.destination, r.weight)));
}

fn subnets(at: &mut At<'_, VirtualService>, prefix: &str, subnets: &[String]) {
    for (i, s) in subnets.iter().enumerate() {
        subnet(at, format!("{prefix}[{i}]"), s);
    }
}

/// Istio's `ValidateIPSubnet`: an IP address or a CIDR block.
fn subnet(at: &mut At<'_, VirtualService>, field: String, s: &str) {
    if crate::config::virtual_service::parse_subnet(s).is_none() {
        at.error(field, format!("{s:?} is not a valid IP address or CIDR block"));
    }
}

/// Istio's `validateGatewayNames`: `mesh`, `ns/name` with DNS-1123 labels (`.` for the own
/// namespace), or a legacy dotted `name.namespace…`.
fn gateway_names(at: &mut At<'_, VirtualService>, prefix: &str, names: &[String]) {
    for (i, name) in names.iter().enumerate() {
        let valid = match name.split_once('/') {
            Some((ns, gw)) => (ns == "." || dns_label(ns)) && dns_label(gw),
            None => name.split('.').all(dns_label),
        };
        if !valid {
            at.error(
                format!("{prefix}[{i}]"),
                format!("invalid gateway name {name:?}: expected namespace/name of DNS-1123 labels"),
            );
        }
    }
}

fn http_route(at: &mut At<'_, VirtualService>, prefix: &str, route: &HttpRoute) {
    let has_route = !route.route.is_empty();
    let (redirect, direct) = (route.redirect.is_some(), route.direct_response.is_some());
    if route.delegate.is_some() {
        if has_route || redirect || direct {
            at.error(
                format!("{prefix}.delegate"),
                "http route with delegate cannot have route, redirect or directResponse",
            );
        }
    } else if has_route && redirect {
        at.error(prefix, "http route cannot contain both route and redirect");
    } else if direct && (has_route || redirect) {
        let other = if has_route { "route" } else { "redirect" };
        at.error(prefix, format!("http route cannot contain both {other} and directResponse"));
    } else if !has_route && !redirect && !direct {
        at.error(prefix, "http route must have one of route, redirect, directResponse or delegate");
    }
    if redirect {
        if route.fault.is_some() {
            at.error(format!("{prefix}.fault"), "http route cannot contain both fault and redirect");
        }
        if route.rewrite.is_some() {
            at.error(format!("{prefix}.rewrite"), "http route cannot contain both rewrite and redirect");
        }
    }
    if let Some(headers) = &route.headers {
        header_operations(at, &format!("{prefix}.headers"), headers);
    }
    for (i, m) in route.matches.iter().enumerate() {
        http_match(at, &format!("{prefix}.match[{i}]"), m);
    }
    let weights = route.route.iter().map(|r| (&r.destination, r.weight));
    destinations(at, prefix, weights);
    if let Some(mirror) = &route.mirror {
        destination(at, &format!("{prefix}.mirror"), mirror);
    }
    for (i, m) in route.mirrors.iter().enumerate() {
        let mp = format!("{prefix}.mirrors[{i}]");
        destination(at, &format!("{mp}.destination"), &m.destination);
        if let Some(p) = m.percentage {
            at.percent(format!("{mp}.percentage.value"), p.value);
        }
    }
    if let Some(p) = route.mirror_percentage {
        at.percent(format!("{prefix}.mirrorPercentage.value"), p.value);
    }
    if let Some(p) = route.mirror_percent {
        at.percent(format!("{prefix}.mirrorPercent"), f64::from(p));
    }
    if let Some(r) = &route.redirect {
        if let Some(code) = r.redirect_code {
            if ![301, 302, 303, 307, 308].contains(&code) {
                at.error(
                    format!("{prefix}.redirect.redirectCode"),
                    format!("redirectCode {code} is not one of 301, 302, 303, 307, 308"),
                );
            }
        }
        if let Some(port) = r.port {
            at.port(format!("{prefix}.redirect.port"), port);
        }
    }
    if let Some(d) = &route.direct_response {
        if !(200..=599).contains(&d.status) {
            at.error(
                format!("{prefix}.directResponse.status"),
                format!("status {} is not in range 200..599", d.status),
            );
        }
    }
    if let Some(rr) = route.rewrite.as_ref().and_then(|r| r.uri_regex_rewrite.as_ref()) {
        at.regex(format!("{prefix}.rewrite.uriRegexRewrite.match"), rr.pattern.as_deref().unwrap_or_default());
    }
    if let Some(attempts) = route.retries.as_ref().and_then(|r| r.attempts) {
        if attempts < 0 {
            at.error(format!("{prefix}.retries.attempts"), "attempts cannot be negative");
        }
    }
    if let Some(fault) = &route.fault {
        if let Some(p) = fault.delay.as_ref().and_then(|d| d.percentage) {
            at.percent(format!("{prefix}.fault.delay.percentage.value"), p.value);
        }
        if let Some(p) = fault.delay.as_ref().and_then(|d| d.percent) {
            at.percent(format!("{prefix}.fault.delay.percent"), f64::from(p));
        }
        if let Some(abort) = &fault.abort {
            if let Some(p) = abort.percentage {
                at.percent(format!("{prefix}.fault.abort.percentage.value"), p.value);
            }
            if let Some(status) = abort.http_status.filter(|s| !(200..=599).contains(s)) {
                at.error(
                    format!("{prefix}.fault.abort.httpStatus"),
                    format!("httpStatus {status} is not in range 200..599"),
                );
            }
            if abort.http_status.is_some() && abort.grpc_status.is_some() {
                at.error(format!("{prefix}.fault.abort"), "httpStatus and grpcStatus are a one-of: set one");
            }
            if let Some(name) = abort.grpc_status.as_deref().filter(|_| abort.grpc_code().is_none()) {
                at.error(
                    format!("{prefix}.fault.abort.grpcStatus"),
                    format!("gRPC status {name:?} is not supported: use a code's name, for example NOT_FOUND"),
                );
            }
        }
    }
}

fn http_match(at: &mut At<'_, VirtualService>, prefix: &str, m: &HttpMatchRequest) {
    let single = [("uri", &m.uri), ("scheme", &m.scheme), ("method", &m.method), ("authority", &m.authority)];
    for (field, sm) in single {
        if let Some(sm) = sm {
            string_match(at, &format!("{prefix}.{field}"), sm);
        }
    }
    let maps = [("headers", &m.headers), ("withoutHeaders", &m.without_headers), ("queryParams", &m.query_params)];
    for (field, map) in maps {
        for (name, sm) in map {
            string_match(at, &format!("{prefix}.{field}.{name}"), sm);
            if field != "queryParams" {
                header_name(at, &format!("{prefix}.{field}.{name}"), name);
            }
        }
    }
    if let Some(port) = m.port {
        at.port(format!("{prefix}.port"), port);
    }
    gateway_names(at, &format!("{prefix}.gateways"), &m.gateways);
}

/// Istio's one-of `{exact | prefix | regex}`, and the regex's syntax. `regex: "*"` is Istio's
/// spelling of "present" in header matchers, not a regex.
fn string_match(at: &mut At<'_, VirtualService>, field: &str, sm: &StringMatch) {
    let set = [&sm.exact, &sm.prefix, &sm.regex];
    if set.iter().filter(|v| v.is_some()).count() > 1 {
        at.error(field, "only one of exact, prefix or regex may be set");
    }
    if let Some(re) = sm.regex.as_deref().filter(|re| *re != "*") {
        at.regex(format!("{field}.regex"), re);
    }
}

/// Istio's `validateHTTPRouteDestinations`: each destination, no negative weight, and some
/// weight among several destinations. Weights are relative (a destination gets weight/sum), so
/// any other total is fine; only a total past `u32::MAX`, which Envoy refuses, is not.
fn destinations<'d>(
    at: &mut At<'_, VirtualService>,
    prefix: &str,
    list: impl ExactSizeIterator<Item = (&'d Destination, Option<i32>)>,
) {
    let several = list.len() > 1;
    let mut total: i64 = 0;
    for (j, (d, weight)) in list.enumerate() {
        let rp = format!("{prefix}.route[{j}]");
        destination(at, &format!("{rp}.destination"), d);
        let w = weight.unwrap_or(0);
        if w < 0 {
            at.error(format!("{rp}.weight"), format!("weight {w} < 0"));
        }
        total += i64::from(w);
    }
    if several && total == 0 {
        at.error(format!("{prefix}.route"), "total destination weight = 0");
    } else if several && total > i64::from(u32::MAX) {
        at.error(
            format!("{prefix}.route"),
            format!("total destination weight {total} exceeds {}, which Envoy refuses", u32::MAX),
        );
    }
}

fn destination(at: &mut At<'_, VirtualService>, prefix: &str, d: &Destination) {
    if d.host == "*" {
        at.error(format!("{prefix}.host"), "invalid destination host *");
    } else {
        at.host(format!("{prefix}.host"), &d.host);
    }
    if let Some(port) = &d.port {
        at.port(format!("{prefix}.port.number"), port.number);
    }
}

/// The header names of `set`/`add`/`remove`, request and response side.
fn header_operations(at: &mut At<'_, VirtualService>, prefix: &str, headers: &Headers) {
    for (side, ops) in [("request", &headers.request), ("response", &headers.response)] {
        let Some(ops) = ops else { continue };
        let names = ops.set.keys().map(|n| ("set", n)).chain(ops.add.keys().map(|n| ("add", n)));
        for (op, name) in names.chain(ops.remove.iter().map(|n| ("remove", n))) {
            header_name(at, &format!("{prefix}.{side}.{op}"), name);
        }
    }
}

/// Istio's `ValidateHTTPHeaderName`: a non-empty run of letters, digits, `-` and `_`.
fn header_name(at: &mut At<'_, VirtualService>, field: &str, name: &str) {
    if name.is_empty() {
        at.error(field, "header name cannot be empty");
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        at.error(field, format!("header name {name:?} is not a valid header name"));
    }
}
