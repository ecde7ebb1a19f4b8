//! Renders the merged counters: Prometheus text exposition, and Envoy's plain `name: value`
//! and JSON.
//!
//! Every format walks one list of samples, so a metric is named once and shows in each.

use std::collections::BTreeMap;
use std::fmt::{self, Write};

use serde_json::json;

use crate::stats::http_cluster::HttpClusterTotals;
use crate::stats::{ControlStats, L4Kind, L4Totals, Totals, STATUS_SLOTS};
use crate::upstream::{EjectionStats, Generation};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Count(u64),
    Level(i64),
    Ratio(f64),
}

impl Value {
    fn to_json(self) -> serde_json::Value {
        match self {
            Value::Count(v) => json!(v),
            Value::Level(v) => json!(v),
            Value::Ratio(v) => json!(v),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Count(v) => write!(f, "{v}"),
            Value::Level(v) => write!(f, "{v}"),
            Value::Ratio(v) => write!(f, "{v}"),
        }
    }
}

/// One sample: its Prometheus family and labels, and its Envoy-style plain name.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub family: &'static str,
    pub kind: Kind,
    /// `(name, value)` label pairs, empty for most samples.
    pub labels: Vec<(&'static str, String)>,
    pub stat: String,
    pub value: Value,
}

impl Sample {
    fn new(family: &'static str, kind: Kind, stat: &str, value: Value) -> Self {
        Self { family, kind, labels: Vec::new(), stat: stat.to_string(), value }
    }

    fn label(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.labels.push((name, value.into()));
        self
    }
}

/// Every sample, in a stable order (a family's samples are adjacent).
pub fn samples(t: &Totals, control: &ControlStats, workers: usize, snapshot: &Generation) -> Vec<Sample> {
    use Kind::{Counter as C, Gauge as G};
    let mut s = vec![
        Sample::new("envoy_server_concurrency", G, "server.concurrency", Value::Level(workers as i64)),
        Sample::new(
            "envoy_http_downstream_cx_total",
            C,
            "http.downstream_cx_total",
            Value::Count(t.downstream_cx_total),
        ),
        Sample::new(
            "envoy_http_downstream_cx_active",
            G,
            "http.downstream_cx_active",
            Value::Level(t.downstream_cx_active),
        ),
        Sample::new(
            "envoy_http_downstream_rq_total",
            C,
            "http.downstream_rq_total",
            Value::Count(t.downstream_rq_total),
        ),
        Sample::new("envoy_http_rbac_allowed", C, "http.rbac.allowed", Value::Count(t.rbac_allowed)),
        Sample::new("envoy_http_rbac_denied", C, "http.rbac.denied", Value::Count(t.rbac_denied)),
        Sample::new("envoy_tcp_rbac_allowed", C, "tcp.rbac.allowed", Value::Count(t.tcp_rbac_allowed)),
        Sample::new("envoy_tcp_rbac_denied", C, "tcp.rbac.denied", Value::Count(t.tcp_rbac_denied)),
    ];
    // Envoy's ratelimit filter's counters (global rate limits; Envoy keeps them per cluster).
    let ratelimit = [
        ("envoy_ratelimit_ok", "ratelimit.ok"),
        ("envoy_ratelimit_over_limit", "ratelimit.over_limit"),
        ("envoy_ratelimit_error", "ratelimit.error"),
        ("envoy_ratelimit_failure_mode_allowed", "ratelimit.failure_mode_allowed"),
        ("envoy_ratelimit_timeout", "ratelimit.timeout"),
    ];
    for ((name, stat), n) in ratelimit.into_iter().zip(t.ratelimit) {
        s.push(Sample::new(name, C, stat, Value::Count(n)));
    }
    for class in 1..=5 {
        let stat = format!("http.downstream_rq_{class}xx");
        let sample = Sample::new("envoy_http_downstream_rq_xx", C, &stat, Value::Count(t.responses_in_class(class)));
        s.push(sample.label("envoy_response_code_class", class.to_string()));
    }
    // Envoy's tag extraction takes `_200` off `downstream_rq_200`: the family is `…_rq`.
    for code in (0..STATUS_SLOTS).filter(|&c| t.responses[c] > 0) {
        let stat = format!("http.downstream_rq_{code}");
        let sample = Sample::new("envoy_http_downstream_rq", C, &stat, Value::Count(t.responses[code]));
        s.push(sample.label("envoy_response_code", code.to_string()));
    }
    s.extend([
        Sample::new(
            "strait_upstream_cx_reused_total",
            C,
            "strait.upstream_cx_reused",
            Value::Count(t.upstream_cx_reused),
        ),
        Sample::new(
            "strait_upstream_reuse_ratio",
            G,
            "strait.upstream_reuse_ratio",
            Value::Ratio(t.upstream_reuse_ratio()),
        ),
        Sample::new("strait_reloads_total", C, "strait.reloads_ok", Value::Count(control.reload_ok.get()))
            .label("result", "ok"),
        Sample::new("strait_reloads_total", C, "strait.reloads_failed", Value::Count(control.reload_failed.get()))
            .label("result", "failed"),
        Sample::new("strait_config_generation", G, "strait.config_generation", Value::Level(t.generation)),
        Sample::new(
            "strait_dns_resolutions_total",
            C,
            "strait.dns_resolutions_ok",
            Value::Count(control.dns_resolve_ok.get()),
        )
        .label("result", "ok"),
        Sample::new(
            "strait_dns_resolutions_total",
            C,
            "strait.dns_resolutions_failed",
            Value::Count(control.dns_resolve_failed.get()),
        )
        .label("result", "failed"),
        Sample::new("strait_dns_updates_total", C, "strait.dns_updates", Value::Count(control.dns_updates.get())),
        Sample::new("envoy_tcp_downstream_cx_no_route", C, "tcp.downstream_cx_no_route", Value::Count(t.tcp_no_route)),
        Sample::new("envoy_listener_ssl_handshake", C, "listener.ssl.handshake", Value::Count(t.ssl_handshake)),
        Sample::new(
            "envoy_listener_ssl_session_reused",
            C,
            "listener.ssl.session_reused",
            Value::Count(t.ssl_session_reused),
        ),
        Sample::new(
            "envoy_listener_ssl_connection_error",
            C,
            "listener.ssl.connection_error",
            Value::Count(t.ssl_connection_error),
        ),
        Sample::new(
            "envoy_listener_no_filter_chain_match",
            C,
            "listener.no_filter_chain_match",
            Value::Count(t.ssl_no_route),
        ),
    ]);
    // A cluster that carries both TCP connections and HTTP requests is one set of series.
    let mut clusters: BTreeMap<&str, (Option<&L4Totals>, Option<&HttpClusterTotals>)> = BTreeMap::new();
    for ((kind, name), l4) in &t.l4 {
        match kind {
            L4Kind::Route => s.extend(tcp_route_samples(name, l4)),
            L4Kind::Cluster => clusters.entry(name).or_default().0 = Some(l4),
        }
    }
    for (name, http) in &t.http_clusters {
        clusters.entry(name).or_default().1 = Some(http);
    }
    for (name, (tcp, http)) in clusters {
        s.extend(cluster_samples(name, tcp, http));
    }
    for (c, live) in snapshot.clusters.iter().zip(snapshot.live.clusters()) {
        if c.policy.outlier_detection.is_some() {
            s.extend(outlier_samples(&c.name, live.ejection_stats()));
        }
    }
    s.extend(local_rate_limit_samples(snapshot));
    s.extend(rate_limit_service_samples(snapshot));
    group_families(s)
}

/// Envoy's `<stat_prefix>.http_local_rate_limit.*` counters, summed over the limits of each
/// prefix; its tag extraction takes the prefix off as `envoy_local_http_ratelimit_prefix`.
fn local_rate_limit_samples(snapshot: &Generation) -> Vec<Sample> {
    let mut by_prefix: BTreeMap<&str, [u64; 4]> = BTreeMap::new();
    for limit in &snapshot.local_rate_limits {
        let sum = by_prefix.entry(&limit.stat_prefix).or_default();
        for (total, n) in sum.iter_mut().zip(limit.live.totals()) {
            *total += n;
        }
    }
    const FAMILIES: [(&str, &str); 4] = [
        ("envoy_http_local_rate_limit_enabled", "enabled"),
        ("envoy_http_local_rate_limit_enforced", "enforced"),
        ("envoy_http_local_rate_limit_rate_limited", "rate_limited"),
        ("envoy_http_local_rate_limit_ok", "ok"),
    ];
    let mut s = Vec::new();
    for (prefix, counts) in by_prefix {
        for ((family, stat), n) in FAMILIES.iter().zip(counts) {
            let name = format!("{prefix}.http_local_rate_limit.{stat}");
            let sample = Sample::new(family, Kind::Counter, &name, Value::Count(n));
            s.push(sample.label("envoy_local_http_ratelimit_prefix", prefix));
        }
    }
    s
}

/// Envoy's `cluster.<name>.[<stat_prefix>.]ratelimit.*` counters of the rate limit filters,
/// summed per service cluster and prefix.
fn rate_limit_service_samples(snapshot: &Generation) -> Vec<Sample> {
    let mut by_cluster: BTreeMap<(&str, &str), [u64; 4]> = BTreeMap::new();
    for service in &snapshot.rate_limit_services {
        let c = &service.counters;
        let sum = by_cluster.entry((&service.cluster_name, &service.stat_prefix)).or_default();
        for (total, n) in sum.iter_mut().zip([&c.ok, &c.over_limit, &c.error, &c.failure_mode_allowed]) {
            *total += n.load(std::sync::atomic::Ordering::Relaxed);
        }
    }
    const FAMILIES: [(&str, &str); 4] = [
        ("envoy_cluster_ratelimit_ok", "ok"),
        ("envoy_cluster_ratelimit_over_limit", "over_limit"),
        ("envoy_cluster_ratelimit_error", "error"),
        ("envoy_cluster_ratelimit_failure_mode_allowed", "failure_mode_allowed"),
    ];
    let mut s = Vec::new();
    for ((cluster, prefix), counts) in by_cluster {
        for ((family, stat), n) in FAMILIES.iter().zip(counts) {
            let name = match prefix {
                "" => format!("cluster.{cluster}.ratelimit.{stat}"),
                prefix => format!("cluster.{cluster}.{prefix}.ratelimit.{stat}"),
            };
            let sample = Sample::new(family, Kind::Counter, &name, Value::Count(n));
            s.push(sample.label("envoy_cluster_name", cluster));
        }
    }
    s
}

/// A cluster's outlier detection samples, as Envoy names them.
fn outlier_samples(name: &str, e: EjectionStats) -> Vec<Sample> {
    use Kind::{Counter as C, Gauge as G};
    let stats: &[NamedStat] = &[
        (
            "envoy_cluster_outlier_detection_ejections_active",
            "outlier_detection.ejections_active",
            G,
            Value::Level(e.active as i64),
        ),
        (
            "envoy_cluster_outlier_detection_ejections_enforced_total",
            "outlier_detection.ejections_enforced_total",
            C,
            Value::Count(e.enforced_total),
        ),
        (
            "envoy_cluster_outlier_detection_ejections_overflow",
            "outlier_detection.ejections_overflow",
            C,
            Value::Count(e.overflow),
        ),
    ];
    named_samples("cluster", "envoy_cluster_name", name, stats)
}

/// `(family, stat suffix, kind, value)` of one sample of a named object (a TCP route, a cluster).
type NamedStat = (&'static str, &'static str, Kind, Value);

/// A TCP route's samples as Envoy's tcp_proxy names them (the route is the stat prefix).
fn tcp_route_samples(name: &str, t: &L4Totals) -> Vec<Sample> {
    use Kind::{Counter as C, Gauge as G};
    let stats: &[NamedStat] = &[
        ("envoy_tcp_downstream_cx_total", "downstream_cx_total", C, Value::Count(t.cx_total)),
        ("envoy_tcp_downstream_cx_active", "downstream_cx_active", G, Value::Level(t.cx_active)),
        ("envoy_tcp_downstream_cx_rx_bytes_total", "downstream_cx_rx_bytes_total", C, Value::Count(t.rx_bytes)),
        ("envoy_tcp_downstream_cx_tx_bytes_total", "downstream_cx_tx_bytes_total", C, Value::Count(t.tx_bytes)),
        ("envoy_tcp_idle_timeout", "idle_timeout", C, Value::Count(t.idle_timeout)),
    ];
    named_samples("tcp", "envoy_tcp_prefix", name, stats)
}

/// A cluster's samples as Envoy's cluster stats name them: what its TCP connections count
/// (`tcp`), what its HTTP requests count (`http`), and the connection counters both keep,
/// added up. `upstream_rq_2xx` and `upstream_rq_200` become `envoy_cluster_upstream_rq_xx` and
/// `envoy_cluster_upstream_rq`, the class or code a label before the cluster's, as Envoy's tag
/// extraction names them.
fn cluster_samples(name: &str, tcp: Option<&L4Totals>, http: Option<&HttpClusterTotals>) -> Vec<Sample> {
    use Kind::{Counter as C, Gauge as G};
    let opened = tcp.map_or(0, |t| t.cx_total) + http.map_or(0, |h| h.cx_total);
    let failed = tcp.map_or(0, |t| t.connect_fail) + http.map_or(0, |h| h.cx_connect_fail);
    let mut stats: Vec<NamedStat> = vec![
        ("envoy_cluster_upstream_cx_total", "upstream_cx_total", C, Value::Count(opened)),
        ("envoy_cluster_upstream_cx_connect_fail", "upstream_cx_connect_fail", C, Value::Count(failed)),
    ];
    if let Some(t) = tcp {
        stats.extend([
            ("envoy_cluster_upstream_cx_active", "upstream_cx_active", G, Value::Level(t.cx_active)),
            ("envoy_cluster_upstream_cx_rx_bytes_total", "upstream_cx_rx_bytes_total", C, Value::Count(t.rx_bytes)),
            ("envoy_cluster_upstream_cx_tx_bytes_total", "upstream_cx_tx_bytes_total", C, Value::Count(t.tx_bytes)),
            ("envoy_cluster_upstream_cx_overflow", "upstream_cx_overflow", C, Value::Count(t.overflow)),
        ]);
    }
    if let Some(h) = http {
        stats.extend([
            ("envoy_cluster_upstream_rq_total", "upstream_rq_total", C, Value::Count(h.rq_total)),
            ("envoy_cluster_upstream_rq_retry", "upstream_rq_retry", C, Value::Count(h.rq_retry)),
            (
                "envoy_cluster_retry_or_shadow_abandoned",
                "retry_or_shadow_abandoned",
                C,
                Value::Count(h.retry_or_shadow_abandoned),
            ),
        ]);
    }
    let mut samples = named_samples("cluster", "envoy_cluster_name", name, &stats);
    let Some(h) = http else { return samples };
    for class in 1..=5 {
        let stat = format!("cluster.{name}.upstream_rq_{class}xx");
        let sample = Sample::new("envoy_cluster_upstream_rq_xx", C, &stat, Value::Count(h.in_class(class)));
        samples.push(sample.label("envoy_response_code_class", class.to_string()).label("envoy_cluster_name", name));
    }
    for (code, &n) in &h.codes {
        let stat = format!("cluster.{name}.upstream_rq_{code}");
        let sample = Sample::new("envoy_cluster_upstream_rq", C, &stat, Value::Count(n));
        samples.push(sample.label("envoy_response_code", code.to_string()).label("envoy_cluster_name", name));
    }
    samples
}

/// The samples of one named object (`PREFIX.NAME.STAT`, labelled `label="NAME"`).
fn named_samples(prefix: &str, label: &'static str, name: &str, stats: &[NamedStat]) -> Vec<Sample> {
    stats
        .iter()
        .map(|&(family, stat, kind, value)| {
            Sample::new(family, kind, &format!("{prefix}.{name}.{stat}"), value).label(label, name)
        })
        .collect()
}

/// Puts each family's samples together, in order of the family's first sample: the exposition
/// format wants one block per family.
fn group_families(samples: Vec<Sample>) -> Vec<Sample> {
    let mut order: Vec<&'static str> = Vec::new();
    for s in &samples {
        if !order.contains(&s.family) {
            order.push(s.family);
        }
    }
    let mut samples = samples;
    samples.sort_by_key(|s| order.iter().position(|f| *f == s.family));
    samples
}

/// Prometheus text exposition format 0.0.4.
pub fn prometheus(samples: &[Sample]) -> String {
    let mut out = String::new();
    let mut family = "";
    for s in samples {
        if s.family != family {
            family = s.family;
            let kind = match s.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# TYPE {family} {kind}");
        }
        out.push_str(s.family);
        if !s.labels.is_empty() {
            let labels: Vec<String> = s.labels.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
            let _ = write!(out, "{{{}}}", labels.join(","));
        }
        let _ = writeln!(out, " {}", s.value);
    }
    out
}

/// Envoy's `/stats?format=json`: `{"stats":[{"name":…,"value":…},…]}`, sorted by name.
pub fn json(samples: &[Sample]) -> serde_json::Value {
    let mut stats: Vec<&Sample> = samples.iter().collect();
    stats.sort_by(|a, b| a.stat.cmp(&b.stat));
    let stats: Vec<serde_json::Value> =
        stats.iter().map(|s| json!({"name": s.stat, "value": s.value.to_json()})).collect();
    json!({ "stats": stats })
}

/// Envoy's `/stats` plain text: `name: value`, sorted by name.
pub fn plain(samples: &[Sample]) -> String {
    let mut lines: Vec<String> = samples.iter().map(|s| format!("{}: {}", s.stat, s.value)).collect();
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests;
