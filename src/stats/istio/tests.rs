use super::{sum, Destination, IstioRegistry, Outcome, Protocol, SeriesKey, BUCKETS};

pub(crate) fn key(cluster: &str, code: u16, flags: &'static str) -> SeriesKey {
    let outcome = Outcome { response_code: code, response_flags: flags, protocol: Protocol::Http };
    SeriesKey { cluster: cluster.into(), outcome }
}

pub(crate) fn reviews() -> Destination {
    Destination {
        service: "reviews.shop.svc.cluster.local".into(),
        namespace: "shop".into(),
        version: Some("v2".into()),
    }
}

#[test]
fn histogram_buckets_are_inclusive_upper_bounds() {
    let r = IstioRegistry::default();
    let s = r.register(key("c", 200, "-"), reviews());
    s.duration.record(500); // 0.5 ms: the first bucket
    s.duration.record(501); // just above: the second
    s.duration.record(4_000_000_000); // beyond the last bound: +Inf
    let t = sum([&r].into_iter());
    let h = &t.requests[&key("c", 200, "-")].1.duration;
    assert_eq!(h.buckets[0], 1);
    assert_eq!(h.buckets[1], 1);
    assert_eq!(h.buckets[BUCKETS.len()], 1);
    assert_eq!(h.sum_milli, 4_000_001_001);
}

#[test]
fn workers_merge_by_key() {
    let (a, b) = (IstioRegistry::default(), IstioRegistry::default());
    a.register(key("c", 200, "-"), reviews()).requests.add(3);
    b.register(key("c", 200, "-"), reviews()).requests.add(4);
    b.register(key("c", 503, "UF"), reviews()).requests.inc();
    let t = sum([&a, &b].into_iter());
    assert_eq!(t.requests[&key("c", 200, "-")].1.requests, 7);
    assert_eq!(t.requests[&key("c", 503, "UF")].1.requests, 1);
}

#[test]
fn message_series_merge_by_cluster() {
    let (a, b) = (IstioRegistry::default(), IstioRegistry::default());
    a.register_messages("c".into(), reviews()).requests.add(3);
    let s = b.register_messages("c".into(), reviews());
    s.requests.add(2);
    s.responses.add(5);
    let t = sum([&a, &b].into_iter());
    assert_eq!(t.messages["c"].1, [5, 5]);
}
