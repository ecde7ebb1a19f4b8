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
    samples(&Totals::sum(&workers), &control, workers.len())
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
