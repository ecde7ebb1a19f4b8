use std::collections::BTreeMap;
use std::sync::Arc;

use super::render;
use crate::stats::istio::tests::{key, reviews};
use crate::stats::istio::{sum, Destination, IstioRegistry, Outcome, Protocol, SeriesKey};
use crate::stats::{L4Kind, L4Totals};

#[test]
fn renders_istio_labels_and_cumulative_buckets() {
    let r = IstioRegistry::default();
    let s = r.register(key("outbound|9080|v2|reviews.shop.svc.cluster.local", 200, "-"), reviews());
    s.requests.add(2);
    s.duration.record(3_000);
    s.duration.record(7_000);
    r.register(key("", 404, "NR"), Destination::default()).requests.inc();
    let mut l4 = BTreeMap::new();
    l4.insert(
        (L4Kind::Cluster, Arc::from("outbound|27017||db.local")),
        L4Totals { cx_total: 5, cx_active: 2, rx_bytes: 100, tx_bytes: 40, ..L4Totals::default() },
    );
    let db = |_: &str| Destination { service: "db.local".into(), namespace: "data".into(), version: None };
    let mut out = String::new();
    render(&sum([&r].into_iter()), &l4, &db, ("istio-ingressgateway", "edge"), &|_| true, &mut out);

    let line = |prefix: &str| out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}\n{out}"));
    let ok = line("istio_requests_total{response_code=\"200\"");
    assert!(ok.ends_with(" 2"));
    for label in [
        "reporter=\"source\"",
        "source_workload_namespace=\"edge\"",
        "destination_service=\"reviews.shop.svc.cluster.local\"",
        "destination_service_name=\"reviews\"",
        "destination_service_namespace=\"shop\"",
        "destination_version=\"v2\"",
        "request_protocol=\"http\"",
        "response_flags=\"-\"",
    ] {
        assert!(ok.contains(label), "{label} in {ok}");
    }
    let nr = line("istio_requests_total{response_code=\"404\"");
    assert!(nr.contains("destination_service=\"unknown\"") && nr.contains("response_flags=\"NR\""), "{nr}");
    assert!(line("istio_request_duration_milliseconds_bucket{response_code=\"200\"").ends_with("le=\"0.5\"} 0"));
    let bucket = |le: &str| {
        let ok = "duration_milliseconds_bucket{response_code=\"200\"";
        out.lines().find(|l| l.starts_with(&format!("istio_request_{ok}")) && l.contains(le)).unwrap()
    };
    assert!(bucket("le=\"5\"").ends_with(" 1"));
    assert!(bucket("le=\"+Inf\"").ends_with(" 2"));
    assert!(line("istio_request_duration_milliseconds_sum{response_code=\"200\"").ends_with(" 10"));
    assert_eq!(out.matches("# TYPE istio_requests_total counter").count(), 1);

    let sent = line("istio_tcp_sent_bytes_total{");
    assert!(sent.contains("destination_service=\"db.local\"") && sent.contains("request_protocol=\"tcp\""));
    assert!(sent.ends_with(" 100"));
    assert!(line("istio_tcp_received_bytes_total{").ends_with(" 40"));
    assert!(line("istio_tcp_connections_opened_total{").ends_with(" 5"));
    assert!(line("istio_tcp_connections_closed_total{").ends_with(" 3"));
}

#[test]
fn grpc_series_carry_their_protocol_and_status_and_messages_only_the_destination() {
    let r = IstioRegistry::default();
    let cluster = "outbound|9080|v2|reviews.shop.svc.cluster.local";
    let outcome = Outcome { response_code: 200, response_flags: "-", protocol: Protocol::Grpc(Some(5)) };
    r.register(SeriesKey { cluster: cluster.into(), outcome }, reviews()).requests.inc();
    let unanswered = Outcome { response_code: 0, response_flags: "DC", protocol: Protocol::Grpc(None) };
    r.register(SeriesKey { cluster: cluster.into(), outcome: unanswered }, reviews()).requests.inc();
    let m = r.register_messages(cluster.into(), reviews());
    m.requests.add(2);
    m.responses.add(7);
    let mut out = String::new();
    render(
        &sum([&r].into_iter()),
        &BTreeMap::new(),
        &|_| Destination::default(),
        ("istio-ingressgateway", "istio-system"),
        &|_| true,
        &mut out,
    );
    let line = |prefix: &str| out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}\n{out}"));
    let ok = line("istio_requests_total{response_code=\"200\"");
    assert!(ok.contains("request_protocol=\"grpc\",response_flags=\"-\",grpc_response_status=\"5\","), "{ok}");
    let dc = line("istio_requests_total{response_code=\"0\"");
    assert!(dc.contains("request_protocol=\"grpc\",response_flags=\"DC\",grpc_response_status=\"\","), "{dc}");
    for (family, value) in [("istio_request_messages_total{", " 2"), ("istio_response_messages_total{", " 7")] {
        let l = line(family);
        assert!(l.ends_with(value) && l.contains("destination_service=\"reviews.shop.svc.cluster.local\""), "{l}");
        for absent in
            ["request_protocol", "response_code", "response_flags", "grpc_response_status", "connection_security"]
        {
            assert!(!l.contains(absent), "{absent} in {l}");
        }
    }
}
