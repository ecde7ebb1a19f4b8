//! TCP and TLS-passthrough routes of the VirtualServices bound to a server, chosen as istiod's
//! `buildGatewayNetworkFiltersFromTCPRoutes` / `…FromTLSRoutes` choose them.

use std::cmp::Reverse;
use std::collections::HashSet;

use crate::config::virtual_service::{parse_subnet, L4MatchAttributes, RouteDestination, VirtualService};
use crate::config::Resource;
use crate::snapshot::{Destination, L4Match, L4Route, RouteSource, WeightedDestinations};

use super::cluster::{Clusters, Ctx};
use crate::config::index::{expand_host, resolve_gateway_name};

/// l4SingleMatch: `port` must be the server's and `gateways` (if any) must name this one.
/// `sourceLabels` and, for TCP, `destinationSubnets`/`sourceSubnet` play no part at a gateway.
fn l4_applies(port: Option<u32>, gateways: &[String], vs_ns: &str, server_port: u16, gateway: &str) -> bool {
    port.is_none_or(|p| p == 0 || p == u32::from(server_port))
        && (gateways.is_empty() || gateways.iter().any(|g| resolve_gateway_name(g, vs_ns) == gateway))
}

fn destinations(
    route: &[RouteDestination],
    vs_ns: &str,
    ctx: &Ctx<'_>,
    clusters: &mut Clusters<'_>,
) -> WeightedDestinations {
    let single = route.len() == 1;
    let destinations: Vec<Destination> = route
        .iter()
        .filter_map(|r| {
            let weight = if single { 100 } else { u32::try_from(r.weight.unwrap_or(0)).ok().filter(|&w| w > 0)? };
            let host = expand_host(&r.destination.host, vs_ns);
            let subset = r.destination.subset.as_deref().filter(|s| !s.is_empty());
            let port = r.destination.port.as_ref().and_then(|p| u16::try_from(p.number).ok()).filter(|&p| p != 0);
            let (port, cluster) = clusters.resolve(&host, subset, port, ctx);
            Some(Destination {
                host: host.into(),
                subset: subset.map(Into::into),
                port,
                cluster,
                weight,
                headers: Default::default(),
            })
        })
        .collect();
    // Weights are relative (a destination gets weight/sum); validation keeps the sum within
    // u32, saturating only guards odd input.
    let total_weight = destinations.iter().fold(0u32, |t, d| t.saturating_add(d.weight));
    WeightedDestinations { destinations, total_weight }
}

/// A TCP server (or a TLS-terminating `TLS` server) forwards a connection to the first `tcp`
/// route, in VirtualService order, with a match block that admits it. `port` and `gateways` are
/// settled here; `sourceSubnet` and `destinationSubnets` are kept for the connection to test
/// (istiod drops them at a gateway, where every tcp route would then take the first route's
/// traffic; Strait honours what the user wrote, as a sidecar's listener does).
pub(super) fn tcp_routes(
    bound: &[(&Resource<VirtualService>, RouteSource)],
    server_port: u16,
    gateway: &str,
    consumer_ns: &str,
    clusters: &mut Clusters<'_>,
) -> Vec<L4Route> {
    let mut out = Vec::new();
    for (vs, source) in bound {
        let applies = |m: &&L4MatchAttributes| l4_applies(m.port, &m.gateways, vs.namespace(), server_port, gateway);
        for (i, tcp) in vs.spec.tcp.iter().enumerate() {
            let blocks: Vec<&L4MatchAttributes> = tcp.matches.iter().filter(applies).collect();
            if tcp.route.is_empty() || (blocks.is_empty() && !tcp.matches.is_empty()) {
                continue;
            }
            let matches: Vec<L4Match> = blocks
                .into_iter()
                .map(|m| L4Match {
                    sni_hosts: Vec::new(),
                    destination_subnets: m.destination_subnets.iter().filter_map(|s| parse_subnet(s)).collect(),
                    source_subnet: m.source_subnet.as_deref().and_then(parse_subnet),
                })
                .collect();
            // A block with no subnet admits every connection: the route then stops the search.
            let catch_all = matches.is_empty()
                || matches.iter().any(|m| m.destination_subnets.is_empty() && m.source_subnet.is_none());
            let ctx = Ctx { listener_port: server_port, consumer_ns, vs_ns: vs.namespace() };
            out.push(L4Route {
                name: format!("{}/tcp/{i}", source.virtual_service).into(),
                source: RouteSource { index: i, ..source.clone() },
                matches: if catch_all { Vec::new() } else { matches },
                destinations: destinations(&tcp.route, vs.namespace(), &ctx, clusters),
            });
            if catch_all {
                return out;
            }
        }
    }
    out
}

/// How Envoy ranks filter chains: a destination-subnet match first, then the SNI exact, then the
/// longest wildcard, `*` last. Routes are sorted by it so that first-match equals most-specific.
fn specificity(m: &L4Match) -> (bool, bool, Reverse<usize>) {
    let sni = m.sni_hosts.first().map_or("*", |s| &**s);
    (m.destination_subnets.is_empty(), sni.starts_with('*'), Reverse(if sni == "*" { 0 } else { sni.len() }))
}

/// PASSTHROUGH servers: one route per `tls` match block (and SNI host) that admits this port and
/// gateway, skipping a block whose SNI host an earlier block on this port already claimed, as
/// istiod does to keep Envoy's filter chains unique. `seen` spans the listener's servers.
pub(super) fn tls_routes(
    bound: &[(&Resource<VirtualService>, RouteSource)],
    server_port: u16,
    gateway: &str,
    consumer_ns: &str,
    seen: &mut HashSet<String>,
    clusters: &mut Clusters<'_>,
) -> Vec<L4Route> {
    let mut out = Vec::new();
    for (vs, source) in bound {
        for (i, tls) in vs.spec.tls.iter().enumerate() {
            if tls.route.is_empty() {
                continue;
            }
            let ctx = Ctx { listener_port: server_port, consumer_ns, vs_ns: vs.namespace() };
            for m in &tls.matches {
                if !l4_applies(m.port, &m.gateways, vs.namespace(), server_port, gateway) {
                    continue;
                }
                let hosts: Vec<String> = m.sni_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
                if hosts.iter().any(|h| seen.contains(h)) {
                    tracing::warn!(virtual_service = %source.virtual_service, "duplicate SNI host on port {server_port}; tls rule skipped");
                    continue;
                }
                seen.extend(hosts.iter().cloned());
                let destination_subnets: Vec<_> =
                    m.destination_subnets.iter().filter_map(|s| parse_subnet(s)).collect();
                let destinations = destinations(&tls.route, vs.namespace(), &ctx, clusters);
                // One route per SNI host so each can be ranked on its own; no SNI host matches all.
                let per_host: Vec<Vec<Box<str>>> = if hosts.is_empty() {
                    vec![Vec::new()]
                } else {
                    hosts.into_iter().map(|h| vec![h.into()]).collect()
                };
                for sni_hosts in per_host {
                    out.push(L4Route {
                        name: format!("{}/tls/{i}", source.virtual_service).into(),
                        source: RouteSource { index: i, ..source.clone() },
                        matches: vec![L4Match {
                            sni_hosts,
                            destination_subnets: destination_subnets.clone(),
                            source_subnet: None,
                        }],
                        destinations: destinations.clone(),
                    });
                }
            }
        }
    }
    out.sort_by_key(|r| specificity(&r.matches[0]));
    out
}
