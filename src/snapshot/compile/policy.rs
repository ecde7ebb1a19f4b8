//! DestinationRule `trafficPolicy` → [`TrafficPolicy`], merged as istiod's
//! `MergeSubsetTrafficPolicy` does for one port: a policy's `portLevelSettings` entry for the
//! port replaces that policy wholesale (a field the entry leaves out is the default, not
//! inherited); a subset's policy then overrides the rule's field by field, or, when it has its
//! own entry for the port, wholesale too. `loadBalancer`, `connectionPool`, `outlierDetection`
//! and `tls` are each replaced whole, never merged within.

use std::sync::Arc;
use std::time::Duration;

use crate::config::destination_rule::{
    ClientTlsSettings, ConnectionPoolSettings, H2UpgradePolicy, LoadBalancerSettings,
    OutlierDetection as ConfigOutlier, PortTrafficPolicy, SimpleLb, Subset, TrafficPolicy as ConfigPolicy,
};
use crate::snapshot::{HashAlgorithm, HashKey, LoadBalancer, OutlierDetection, TcpKeepalive, TrafficPolicy};

/// The parts of the policy that win for one cluster; `tls` carries its field path for errors.
#[derive(Default)]
pub(super) struct Selected<'a> {
    pub lb: Option<&'a LoadBalancerSettings>,
    pub pool: Option<&'a ConnectionPoolSettings>,
    pub outlier: Option<&'a ConfigOutlier>,
    pub tls: Option<(&'a ClientTlsSettings, String)>,
}

impl<'a> Selected<'a> {
    /// `policy` (at field `path`) for `port`, and whether a `portLevelSettings` entry gave it:
    /// istiod's `GetPortLevelTrafficPolicy`, which copies the entry's four fields and nothing of
    /// the policy around it.
    fn for_port(policy: &'a ConfigPolicy, path: &str, port: u16) -> (Self, bool) {
        let (lb, pool, outlier, tls, path, port_level) = match port_level(&policy.port_level_settings, port) {
            Some((i, p)) => {
                let path = format!("{path}.portLevelSettings[{i}]");
                (&p.load_balancer, &p.connection_pool, &p.outlier_detection, &p.tls, path, true)
            }
            None => {
                let path = path.to_owned();
                (&policy.load_balancer, &policy.connection_pool, &policy.outlier_detection, &policy.tls, path, false)
            }
        };
        let selected = Self {
            lb: lb.as_ref(),
            pool: pool.as_ref(),
            outlier: outlier.as_ref(),
            tls: tls.as_ref().map(|tls| (tls, format!("{path}.tls"))),
        };
        (selected, port_level)
    }

    /// The rule's `policy` and the `subset`'s (with its index) for `port`.
    pub(super) fn new(policy: Option<&'a ConfigPolicy>, subset: Option<(usize, &'a Subset)>, port: u16) -> Self {
        let mut selected = policy.map(|p| Self::for_port(p, "spec.trafficPolicy", port).0).unwrap_or_default();
        if let Some((i, policy)) = subset.and_then(|(i, s)| Some((i, s.traffic_policy.as_ref()?))) {
            let (over, port_level) = Self::for_port(policy, &format!("spec.subsets[{i}].trafficPolicy"), port);
            if port_level {
                selected = over;
            } else {
                selected.lb = over.lb.or(selected.lb);
                selected.pool = over.pool.or(selected.pool);
                selected.outlier = over.outlier.or(selected.outlier);
                selected.tls = over.tls.or(selected.tls);
            }
        }
        selected
    }

    /// The merged policy over the defaults; `tls` is built by the caller (it reads files).
    pub(super) fn traffic_policy(&self) -> TrafficPolicy {
        let mut out = TrafficPolicy::default();
        if let Some(lb) = self.lb {
            out.load_balancer = load_balancer(lb);
        }
        if let Some(pool) = self.pool {
            connection_pool(&mut out, pool);
        }
        out.outlier_detection = self.outlier.map(outlier_detection);
        out
    }
}

/// The first `portLevelSettings` entry for `port`, as istiod takes it.
fn port_level(settings: &[PortTrafficPolicy], port: u16) -> Option<(usize, &PortTrafficPolicy)> {
    settings.iter().enumerate().find(|(_, p)| p.port.as_ref().is_some_and(|p| p.number == u32::from(port)))
}

fn load_balancer(lb: &LoadBalancerSettings) -> LoadBalancer {
    if let Some(ch) = &lb.consistent_hash {
        let key = if let Some(h) = &ch.http_header_name {
            HashKey::Header(h.to_ascii_lowercase().into())
        } else if let Some(c) = &ch.http_cookie {
            HashKey::Cookie {
                name: c.name.as_str().into(),
                path: c.path.as_deref().map(Arc::from),
                ttl: c.ttl.map(|d| d.get()),
            }
        } else if ch.use_source_ip {
            HashKey::SourceIp
        } else if let Some(q) = &ch.http_query_parameter_name {
            HashKey::QueryParameter(q.as_str().into())
        } else {
            // No hash key: Envoy hashes nothing stable, so requests spread at random.
            return LoadBalancer::Random;
        };
        // Envoy's defaults: 1024 ring entries, a 65537-entry Maglev table.
        let algorithm = if let Some(m) = &ch.maglev {
            HashAlgorithm::Maglev { table_size: m.table_size.filter(|&n| n > 0).unwrap_or(65537) }
        } else {
            let size = ch.ring_hash.as_ref().and_then(|r| r.minimum_ring_size).or(ch.minimum_ring_size);
            HashAlgorithm::RingHash { minimum_ring_size: size.filter(|&n| n > 0).unwrap_or(1024) }
        };
        return LoadBalancer::ConsistentHash { key, algorithm };
    }
    match lb.simple {
        Some(SimpleLb::RoundRobin) => LoadBalancer::RoundRobin,
        Some(SimpleLb::Random) => LoadBalancer::Random,
        Some(SimpleLb::Passthrough) => LoadBalancer::Passthrough,
        // LEAST_CONN is the deprecated name of LEAST_REQUEST, Istio's default.
        Some(SimpleLb::LeastConn | SimpleLb::LeastRequest | SimpleLb::Unspecified) | None => LoadBalancer::LeastRequest,
    }
}

/// Positive limits only: istiod cannot tell an explicit 0 from unset and keeps the default.
fn limit(v: Option<i32>) -> Option<u32> {
    v.filter(|&n| n > 0).map(|n| n as u32)
}

fn connection_pool(out: &mut TrafficPolicy, pool: &ConnectionPoolSettings) {
    let mut tcp_idle = None;
    if let Some(tcp) = &pool.tcp {
        out.max_connections = limit(tcp.max_connections).unwrap_or(out.max_connections);
        if let Some(t) = tcp.connect_timeout {
            out.connect_timeout = t.get();
        }
        out.max_connection_duration = tcp.max_connection_duration.map(|d| d.get());
        out.tcp_keepalive = tcp.tcp_keepalive.as_ref().map(|k| TcpKeepalive {
            probes: k.probes,
            time: k.time.map(|d| d.get()),
            interval: k.interval.map(|d| d.get()),
        });
        tcp_idle = tcp.idle_timeout.map(|d| d.get());
        if let Some(t) = tcp_idle {
            out.tcp_idle_timeout = t;
        }
    }
    let mut http_idle = None;
    if let Some(http) = &pool.http {
        out.http1_max_pending_requests =
            limit(http.http1_max_pending_requests).unwrap_or(out.http1_max_pending_requests);
        out.http2_max_requests = limit(http.http2_max_requests).unwrap_or(out.http2_max_requests);
        out.max_requests_per_connection = limit(http.max_requests_per_connection).unwrap_or(0);
        out.max_retries = limit(http.max_retries).unwrap_or(out.max_retries);
        http_idle = http.idle_timeout.map(|d| d.get());
        out.h2_upgrade = match http.h2_upgrade_policy {
            Some(H2UpgradePolicy::Upgrade) => Some(true),
            Some(H2UpgradePolicy::DoNotUpgrade) => Some(false),
            Some(H2UpgradePolicy::Default) | None => None,
        };
        out.use_client_protocol = http.use_client_protocol;
        out.max_concurrent_streams = limit(http.max_concurrent_streams).unwrap_or(out.max_concurrent_streams);
    }
    // istiod lets the TCP idle timeout stand in for an unset HTTP one.
    if let Some(t) = http_idle.or(tcp_idle) {
        out.http_idle_timeout = t;
    }
}

/// Envoy's outlier defaults where Istio leaves a field unset: 5 consecutive 5xx enforced,
/// gateway errors not enforced, 10 s interval, 30 s ejection, 10% max ejected; Istio sets the
/// panic threshold to `minHealthPercent`, 0 by default.
fn outlier_detection(o: &ConfigOutlier) -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: match o.consecutive_5xx_errors {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(5),
        },
        consecutive_gateway_errors: o.consecutive_gateway_errors.filter(|&n| n > 0),
        consecutive_local_origin_failures: o
            .split_external_local_origin_errors
            .then(|| o.consecutive_local_origin_failures.filter(|&n| n > 0).unwrap_or(5)),
        split_external_local_origin_errors: o.split_external_local_origin_errors,
        interval: o.interval.map_or(Duration::from_secs(10), |d| d.get()),
        base_ejection_time: o.base_ejection_time.map_or(Duration::from_secs(30), |d| d.get()),
        max_ejection_percent: limit(o.max_ejection_percent).unwrap_or(10),
        min_health_percent: o.min_health_percent.filter(|&n| n >= 0).map_or(0, |n| n as u32),
    }
}

#[cfg(test)]
mod tests;
