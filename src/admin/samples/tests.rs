//! The exposition formats.

use std::sync::Arc;

use super::*;
use crate::stats::WorkerStats;

fn scrape() -> Vec<Sample> {
    let workers: Vec<Arc<WorkerStats>> = (0..2).map(|_| Arc::default()).collect();
    workers[0].generation.set(4);
    workers[1].generation.set(3);
    workers[0].downstream_cx_total.add(3);
    workers[1].downstream_cx_active.inc();
    workers[0].record_status(200);
    workers[1].record_status(200);
    workers[1].record_status(503);
    workers[0].http_clusters.register("outbound|80||app.local".into()).cx_total.inc();
    workers[0].upstream_cx_reused.add(3);
    let control = ControlStats::default();
    control.reload_ok.add(2);
    control.reload_failed.inc();
    samples(&Totals::sum(&workers), &control, workers.len(), &Generation::default())
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
        "envoy_http_downstream_rq{envoy_response_code=\"200\"} 2",
        "envoy_http_downstream_rq{envoy_response_code=\"503\"} 1",
        "envoy_cluster_upstream_cx_total{envoy_cluster_name=\"outbound|80||app.local\"} 1",
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
/// block (the exposition format allows one TYPE line).
#[test]
fn tcp_counters_sum_per_name_in_one_block_per_family() {
    use crate::stats::L4Kind;
    let workers: Vec<Arc<WorkerStats>> = (0..2).map(|_| Arc::default()).collect();
    let (route, cluster): (Arc<str>, Arc<str>) = ("default/db/tcp/0".into(), "outbound|27017||db.local".into());
    for (i, w) in workers.iter().enumerate() {
        let r = w.l4.register((L4Kind::Route, route.clone()));
        r.cx_total.inc();
        r.rx_bytes.add(100 * (i as u64 + 1));
        w.l4.register((L4Kind::Cluster, cluster.clone())).connect_fail.inc();
    }
    workers[0].http_clusters.register("outbound|80||app.local".into()).cx_total.add(5);
    let text = prometheus(&samples(&Totals::sum(&workers), &ControlStats::default(), 2, &Generation::default()));
    let lines: Vec<&str> = text.lines().collect();
    let at = |line: &str| lines.iter().position(|l| *l == line).unwrap_or_else(|| panic!("{line} missing:\n{text}"));
    at("envoy_tcp_downstream_cx_total{envoy_tcp_prefix=\"default/db/tcp/0\"} 2");
    at("envoy_tcp_downstream_cx_rx_bytes_total{envoy_tcp_prefix=\"default/db/tcp/0\"} 300");
    at("envoy_cluster_upstream_cx_connect_fail{envoy_cluster_name=\"outbound|27017||db.local\"} 2");
    let http = at("envoy_cluster_upstream_cx_total{envoy_cluster_name=\"outbound|80||app.local\"} 5");
    assert_eq!(at("envoy_cluster_upstream_cx_total{envoy_cluster_name=\"outbound|27017||db.local\"} 0"), http - 1);
    assert_eq!(lines.iter().filter(|l| l.starts_with("# TYPE envoy_cluster_upstream_cx_total ")).count(), 1);
    assert!(!text.contains("\nenvoy_cluster_upstream_cx_total "), "no unlabelled aggregate:\n{text}");
    assert!(plain(&samples(&Totals::sum(&workers), &ControlStats::default(), 2, &Generation::default()))
        .contains("tcp.default/db/tcp/0.downstream_cx_rx_bytes_total: 300\n"));
}

/// HTTP counters by cluster, named as Envoy's Prometheus output names them; a cluster both TCP
/// and HTTP reach is one series per family, its connections added up.
#[test]
fn http_cluster_counters_by_name_class_and_code() {
    use crate::stats::{HttpCluster, L4Kind};
    let workers: Vec<Arc<WorkerStats>> = (0..2).map(|_| Arc::default()).collect();
    let name: Arc<str> = "outbound|80||app.local".into();
    for w in &workers {
        let c = HttpCluster::new(w.http_clusters.register(name.clone()));
        for status in [200, 200, 503] {
            c.record_status(status);
        }
        c.rq_total.add(4);
        c.rq_retry.inc();
        c.cx_total.inc();
        w.l4.register((L4Kind::Cluster, name.clone())).cx_total.add(10);
    }
    let all = samples(&Totals::sum(&workers), &ControlStats::default(), 2, &Generation::default());
    let text = prometheus(&all);
    let label = "envoy_cluster_name=\"outbound|80||app.local\"";
    for line in [
        format!("envoy_cluster_upstream_rq_total{{{label}}} 8"),
        format!("envoy_cluster_upstream_rq_retry{{{label}}} 2"),
        format!("envoy_cluster_upstream_rq_xx{{envoy_response_code_class=\"2\",{label}}} 4"),
        format!("envoy_cluster_upstream_rq_xx{{envoy_response_code_class=\"4\",{label}}} 0"),
        format!("envoy_cluster_upstream_rq_xx{{envoy_response_code_class=\"5\",{label}}} 2"),
        format!("envoy_cluster_upstream_rq{{envoy_response_code=\"200\",{label}}} 4"),
        format!("envoy_cluster_upstream_rq{{envoy_response_code=\"503\",{label}}} 2"),
        format!("envoy_cluster_upstream_cx_total{{{label}}} 22"),
        format!("envoy_cluster_upstream_cx_active{{{label}}} 0"),
    ] {
        assert_eq!(text.lines().filter(|l| *l == line).count(), 1, "`{line}` once in\n{text}");
    }
    assert_eq!(text.matches("envoy_cluster_upstream_cx_total{").count(), 1, "{text}");
    assert!(!text.contains("envoy_response_code=\"404\""), "codes never seen are left out");
    let plain = plain(&all);
    for line in [
        "cluster.outbound|80||app.local.upstream_rq_200: 4",
        "cluster.outbound|80||app.local.upstream_rq_2xx: 4",
        "cluster.outbound|80||app.local.upstream_rq_retry: 2",
        "cluster.outbound|80||app.local.upstream_cx_total: 22",
    ] {
        assert!(plain.lines().any(|l| l == line), "`{line}` in\n{plain}");
    }
    let json = json(&all);
    let stats = json["stats"].as_array().unwrap();
    assert!(stats.contains(&serde_json::json!({"name": "cluster.outbound|80||app.local.upstream_rq_503", "value": 2})));
    assert!(stats.windows(2).all(|w| w[0]["name"].as_str() < w[1]["name"].as_str()), "sorted by name");
}
