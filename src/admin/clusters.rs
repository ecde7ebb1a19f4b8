//! `/clusters`: Envoy's text listing, `CLUSTER::ADDRESS::FIELD::VALUE` per endpoint, so tools
//! and habits that read Envoy's admin keep working.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::stats::endpoints::EndpointTotals;
use crate::upstream::{clock_ms, Generation};

/// The listing of `s`'s clusters, with each endpoint's connection and request counts summed
/// over the workers (`counts`, by cluster name and address; absent means never used).
pub fn render(s: &Generation, counts: &BTreeMap<(Arc<str>, SocketAddr), EndpointTotals>) -> String {
    let mut out = String::new();
    let now = clock_ms();
    for (c, live) in s.clusters.iter().zip(s.live.clusters()) {
        let name = &*c.name;
        let p = &c.policy;
        let _ = writeln!(out, "{name}::observability_name::{name}");
        let _ = writeln!(out, "{name}::default_priority::max_connections::{}", p.max_connections);
        let _ = writeln!(out, "{name}::default_priority::max_pending_requests::{}", p.http1_max_pending_requests);
        let _ = writeln!(out, "{name}::default_priority::max_requests::{}", p.http2_max_requests);
        let _ = writeln!(out, "{name}::default_priority::max_retries::{}", p.max_retries);
        let _ = writeln!(out, "{name}::added_via_api::true");
        for (i, e) in c.endpoints.iter().enumerate() {
            let prefix = format!("{name}::{}", e.addr);
            // Locality is `region/zone/sub_zone`, as Istio writes it.
            let mut locality = e.locality.as_deref().unwrap_or("").splitn(3, '/');
            let n = counts.get(&(c.name.clone(), e.addr)).copied().unwrap_or_default();
            let _ = writeln!(out, "{prefix}::cx_active::{}", n.cx_active);
            let _ = writeln!(out, "{prefix}::cx_connect_fail::{}", n.cx_connect_fail);
            let _ = writeln!(out, "{prefix}::cx_total::{}", n.cx_total);
            let _ = writeln!(out, "{prefix}::rq_active::{}", n.rq_active);
            let _ = writeln!(out, "{prefix}::rq_total::{}", n.rq_total);
            let _ = writeln!(out, "{prefix}::hostname::");
            let ejected = live.health.get(i).is_some_and(|h| h.is_ejected(now));
            let flags = if ejected { "/failed_outlier_check" } else { "healthy" };
            let _ = writeln!(out, "{prefix}::health_flags::{flags}");
            let _ = writeln!(out, "{prefix}::weight::{}", e.weight);
            let _ = writeln!(out, "{prefix}::region::{}", locality.next().unwrap_or(""));
            let _ = writeln!(out, "{prefix}::zone::{}", locality.next().unwrap_or(""));
            let _ = writeln!(out, "{prefix}::sub_zone::{}", locality.next().unwrap_or(""));
            let _ = writeln!(out, "{prefix}::canary::false");
            let _ = writeln!(out, "{prefix}::priority::0");
            let _ = writeln!(out, "{prefix}::success_rate::-1");
        }
    }
    out
}

#[cfg(test)]
mod tests;
