//! The exposition formats.

use std::sync::Arc;

use super::*;
use crate::admin::WorkerStats;

fn scrape() -> Vec<Sample> {
    let workers: Vec<Arc<WorkerStats>> = (0..2).map(|_| Arc::default()).collect();
    workers[0].generation.set(4);
    workers[1].generation.set(3);
    workers[0].downstream_cx_total.add(3);
    workers[1].downstream_cx_active.inc();
    workers[0].record_status(200);
    workers[1].record_status(200);
    workers[1].record_status(503);
    workers[0].upstream_cx_total.inc();
    workers[0].upstream_cx_reused.add(3);
    let control = ControlStats::default();
    control.reload_ok.add(2);
    control.reload_failed.inc();
    samples(&Totals::sum(&workers), &control, workers.len(), &Snapshot::default())
}

#[test]
fn prometheus_text() {
    let text = prometheus(&scrape());
    for line in [
        "# TYPE envoy_http_downstream_cx_total counter",
        "envoy_http_downstream_cx_total 3",
        "envoy_http_downstream_cx_active 1",
        "envoy_http_downstream_rq_xx{envoy_response_code_class=\"2\"} 2",
        "envoy_http_downstream_rq_xx{envoy_response_code_class=\"5\"} 1",
        "envoy_http_downstream_rq_code{envoy_response_code=\"200\"} 2",
        "envoy_http_downstream_rq_code{envoy_response_code=\"503\"} 1",
        "envoy_cluster_upstream_cx_total 1",
        "strait_upstream_cx_reused_total 3",
        "strait_upstream_reuse_ratio 0.75",
        "# TYPE strait_reloads_total counter",
        "strait_reloads_total{result=\"ok\"} 2",
        "strait_reloads_total{result=\"failed\"} 1",
        "# TYPE strait_config_generation gauge",
        "strait_config_generation 3",
        "envoy_server_concurrency 2",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
    assert_eq!(text.matches("# TYPE strait_reloads_total").count(), 1, "one TYPE line per family");
    assert!(!text.contains("envoy_response_code=\"404\""), "codes never seen are left out");
}

#[test]
fn plain_text_is_sorted_name_value() {
    let text = plain(&scrape());
    assert!(text.lines().any(|l| l == "http.downstream_rq_2xx: 2"), "{text}");
    assert!(text.lines().any(|l| l == "strait.reloads_failed: 1"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
}

/// TCP counters from two workers sum per name, and a family labelled per cluster stays one
/// block, right after its unlabelled sample (the exposition format allows one TYPE line).
#[test]
fn tcp_counters_sum_per_name_in_one_block_per_family() {
    use crate::admin::L4Kind;
    let workers: Vec<Arc<WorkerStats>> = (0..2).map(|_| Arc::default()).collect();
    let (route, cluster): (Arc<str>, Arc<str>) = ("default/db/tcp/0".into(), "outbound|27017||db.local".into());
    for (i, w) in workers.iter().enumerate() {
        let r = w.l4.register((L4Kind::Route, route.clone()));
        r.cx_total.inc();
        r.rx_bytes.add(100 * (i as u64 + 1));
        w.l4.register((L4Kind::Cluster, cluster.clone())).connect_fail.inc();
    }
    workers[0].upstream_cx_total.add(5);
    let text = prometheus(&samples(&Totals::sum(&workers), &ControlStats::default(), 2, &Snapshot::default()));
    let lines: Vec<&str> = text.lines().collect();
    let at = |line: &str| lines.iter().position(|l| *l == line).unwrap_or_else(|| panic!("{line} missing:\n{text}"));
    at("envoy_tcp_downstream_cx_total{envoy_tcp_prefix=\"default/db/tcp/0\"} 2");
    at("envoy_tcp_downstream_cx_rx_bytes_total{envoy_tcp_prefix=\"default/db/tcp/0\"} 300");
    at("envoy_cluster_upstream_cx_connect_fail{envoy_cluster_name=\"outbound|27017||db.local\"} 2");
    let unlabelled = at("envoy_cluster_upstream_cx_total 5");
    assert_eq!(
        at("envoy_cluster_upstream_cx_total{envoy_cluster_name=\"outbound|27017||db.local\"} 0"),
        unlabelled + 1
    );
    assert_eq!(lines.iter().filter(|l| l.starts_with("# TYPE envoy_cluster_upstream_cx_total ")).count(), 1);
    assert!(plain(&samples(&Totals::sum(&workers), &ControlStats::default(), 2, &Snapshot::default()))
        .contains("tcp.default/db/tcp/0.downstream_cx_rx_bytes_total: 300\n"));
}
