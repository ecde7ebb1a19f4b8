//! Istio's standard metrics in Prometheus text: the request and gRPC message series the
//! workers keep (`stats::istio`), and the `istio_tcp_*` counters, derived at scrape time from
//! the per-cluster TCP counters.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::stats::istio::{Destination, HistogramTotals, IstioTotals, Outcome, Protocol, SeriesTotals, BUCKETS};
use crate::stats::{L4Key, L4Kind, L4Totals};

#[cfg(test)]
mod tests;

/// The gateway as Istio's `source_*` labels name a gateway Deployment (`workload`, e.g.
/// `istio-ingressgateway` or `istio-egressgateway`, running in `namespace`): its `app` and
/// canonical service are its name.
fn source<'a>(workload: &'a str, namespace: &'a str) -> [(&'static str, &'a str); 9] {
    [
        ("reporter", "source"),
        ("source_workload", workload),
        ("source_workload_namespace", namespace),
        ("source_principal", "unknown"),
        ("source_app", workload),
        ("source_version", "unknown"),
        ("source_canonical_service", workload),
        ("source_canonical_revision", "latest"),
        ("source_cluster", "Kubernetes"),
    ]
}

/// Appends the Istio families that `keep` keeps (by family name), Prometheus text format, to
/// `out`: the HTTP series, the gRPC message counters, then the TCP counters of every cluster
/// that carried TCP connections (`l4`). `workload` names the gateway and `namespace` is its own
/// (the snapshot's `source_workload` and `source_namespace`).
pub fn render(
    http: &IstioTotals,
    l4: &BTreeMap<L4Key, L4Totals>,
    clusters: &ClusterLabels,
    (workload, namespace): (&str, &str),
    keep: &dyn Fn(&str) -> bool,
    out: &mut String,
) {
    let out = &mut Families { out, keep };
    let source = source(workload, namespace);
    let messages = &http.messages;
    let http: Vec<(String, &SeriesTotals)> =
        http.requests.iter().map(|(key, (dest, t))| (labels(&source, dest, Series::Http(key.outcome)), t)).collect();
    counter_family(out, "istio_requests_total", http.iter().map(|(l, t)| (l.as_str(), t.requests)));
    histogram_family(out, "istio_request_duration_milliseconds", http.iter().map(|(l, t)| (l.as_str(), &t.duration)));
    histogram_family(out, "istio_request_bytes", http.iter().map(|(l, t)| (l.as_str(), &t.request_bytes)));
    histogram_family(out, "istio_response_bytes", http.iter().map(|(l, t)| (l.as_str(), &t.response_bytes)));
    let messages: Vec<(String, [u64; 2])> =
        messages.values().map(|(dest, counts)| (labels(&source, dest, Series::Messages), *counts)).collect();
    counter_family(out, "istio_request_messages_total", messages.iter().map(|(l, c)| (l.as_str(), c[0])));
    counter_family(out, "istio_response_messages_total", messages.iter().map(|(l, c)| (l.as_str(), c[1])));

    let tcp: Vec<(String, &L4Totals)> = l4
        .iter()
        .filter(|((kind, _), _)| *kind == L4Kind::Cluster)
        .map(|((_, name), t)| {
            let dest = clusters(name);
            (labels(&source, &dest, Series::Tcp), t)
        })
        .collect();
    // "Sent" is what the gateway sent its client (the upstream's bytes), as a source proxy
    // reports it; "received", what the client sent.
    counter_family(out, "istio_tcp_sent_bytes_total", tcp.iter().map(|(l, t)| (l.as_str(), t.rx_bytes)));
    counter_family(out, "istio_tcp_received_bytes_total", tcp.iter().map(|(l, t)| (l.as_str(), t.tx_bytes)));
    counter_family(out, "istio_tcp_connections_opened_total", tcp.iter().map(|(l, t)| (l.as_str(), t.cx_total)));
    let closed = |t: &L4Totals| t.cx_total.saturating_sub(t.cx_active.max(0) as u64);
    counter_family(out, "istio_tcp_connections_closed_total", tcp.iter().map(|(l, t)| (l.as_str(), closed(t))));
}

/// The destination labels of a TCP cluster, by cluster name (the scrape asks the snapshot).
pub type ClusterLabels<'a> = dyn Fn(&str) -> Destination + 'a;

/// The text being written, and which families go in it.
struct Families<'a> {
    out: &'a mut String,
    keep: &'a dyn Fn(&str) -> bool,
}

fn counter_family<'a>(f: &mut Families<'_>, family: &str, series: impl Iterator<Item = (&'a str, u64)>) {
    let mut series = series.peekable();
    if series.peek().is_none() || !(f.keep)(family) {
        return;
    }
    let out = &mut *f.out;
    let _ = writeln!(out, "# TYPE {family} counter");
    for (labels, value) in series {
        let _ = writeln!(out, "{family}{{{labels}}} {value}");
    }
}

fn histogram_family<'a>(
    f: &mut Families<'_>,
    family: &str,
    series: impl Iterator<Item = (&'a str, &'a HistogramTotals)>,
) {
    let mut series = series.peekable();
    if series.peek().is_none() || !(f.keep)(family) {
        return;
    }
    let out = &mut *f.out;
    let _ = writeln!(out, "# TYPE {family} histogram");
    for (labels, h) in series {
        let mut cumulative = 0;
        for (i, count) in h.buckets.iter().enumerate() {
            cumulative += count;
            match BUCKETS.get(i).map(|&b| b as f64 / 1000.0) {
                Some(le) => {
                    let _ = writeln!(out, "{family}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{family}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let _ = writeln!(out, "{family}_sum{{{labels}}} {}", h.sum_milli as f64 / 1000.0);
        let _ = writeln!(out, "{family}_count{{{labels}}} {cumulative}");
    }
}

/// What a series counts, which decides its labels besides the destination's.
#[derive(Clone, Copy)]
enum Series {
    Http(Outcome),
    /// gRPC messages: Istio's stats filter adds them to its tags before the request's
    /// protocol, code, gRPC status, flags and security policy are among them, so their series
    /// carry only the source and destination labels.
    Messages,
    Tcp,
}

/// Istio's label set, in its order, for a destination (`service` empty: the gateway answered
/// itself, and every destination label is `unknown`).
fn labels(source: &[(&str, &str)], dest: &Destination, series: Series) -> String {
    let known = !dest.service.is_empty();
    let unknown = |v: &str| if known && !v.is_empty() { v.to_string() } else { "unknown".to_string() };
    // Kubernetes hosts are NAME.NAMESPACE.svc…; a ServiceEntry host is its own name.
    let name = match dest.service.split_once('.') {
        Some((name, rest)) if rest.contains(".svc.") => name,
        _ => &dest.service,
    };
    let mut pairs: Vec<(&str, String)> = Vec::with_capacity(26);
    if let Series::Http(outcome) = series {
        pairs.push(("response_code", outcome.response_code.to_string()));
    }
    pairs.extend(source.iter().map(|(n, v)| (*n, v.to_string())));
    pairs.extend([
        ("destination_workload", "unknown".to_string()),
        ("destination_workload_namespace", unknown(&dest.namespace)),
        ("destination_principal", "unknown".to_string()),
        ("destination_app", "unknown".to_string()),
        ("destination_version", unknown(dest.version.as_deref().unwrap_or_default())),
        ("destination_service", unknown(&dest.service)),
        ("destination_service_name", unknown(name)),
        ("destination_service_namespace", unknown(&dest.namespace)),
        ("destination_canonical_service", unknown(name)),
        ("destination_canonical_revision", "latest".to_string()),
        ("destination_cluster", "unknown".to_string()),
    ]);
    let (protocol, flags, grpc_status) = match series {
        Series::Messages => (None, "", String::new()),
        Series::Tcp => (Some("tcp"), "-", String::new()),
        Series::Http(Outcome { response_flags, protocol: Protocol::Http, .. }) => {
            (Some("http"), response_flags, String::new())
        }
        Series::Http(Outcome { response_flags, protocol: Protocol::Grpc(status), .. }) => {
            (Some("grpc"), response_flags, status.map(|s| s.to_string()).unwrap_or_default())
        }
    };
    if let Some(protocol) = protocol {
        pairs.extend([
            ("request_protocol", protocol.to_string()),
            ("response_flags", flags.to_string()),
            ("grpc_response_status", grpc_status),
            ("connection_security_policy", "unknown".to_string()),
        ]);
    }
    let mut out = String::with_capacity(900);
    for (i, (n, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{n}=\"{}\"", escape(v));
    }
    out
}

/// Prometheus label value escaping: backslash, quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
