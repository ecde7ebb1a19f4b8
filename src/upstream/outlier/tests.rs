//! Consecutive-error counting, ejection limits and times, and panic mode, on a fake clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::snapshot::{Cluster, Endpoint};
use crate::upstream::LiveCluster;

fn detection() -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: Some(3),
        consecutive_gateway_errors: None,
        consecutive_local_origin_failures: None,
        split_external_local_origin_errors: false,
        interval: Duration::from_secs(1),
        base_ejection_time: Duration::from_secs(10),
        max_ejection_percent: 100,
        min_health_percent: 0,
    }
}

/// A cluster's config and its live state, as a generation pairs them.
struct Subject {
    cluster: Cluster,
    live: LiveCluster,
}

fn cluster(endpoints: usize, od: OutlierDetection) -> Subject {
    let endpoints = (0..endpoints)
        .map(|i| Endpoint {
            addr: format!("127.0.0.1:{}", 8000 + i).parse().unwrap(),
            weight: 1,
            labels: Arc::new(BTreeMap::new()),
            locality: None,
        })
        .collect();
    let mut cluster = Cluster::test("backend.local", 80, endpoints);
    cluster.policy.outlier_detection = Some(od);
    Subject { live: LiveCluster::fresh(&cluster), cluster }
}

/// Reports `what` `times` times for endpoint `i` at `now` (ms).
fn report(c: &Subject, i: usize, what: Observation, times: usize, now: u64) {
    for _ in 0..times {
        c.live.health.observe_at(&c.cluster, i, what, || now);
    }
}

fn ejected(c: &Subject, now: u64) -> Vec<usize> {
    (0..c.live.health.len()).filter(|&i| c.live.health[i].is_ejected(now)).collect()
}

#[test]
fn consecutive_5xx_eject_and_a_success_starts_the_count_again() {
    let c = cluster(3, detection());
    report(&c, 0, Observation::Status(500), 2, 1000);
    report(&c, 0, Observation::Status(200), 1, 1000);
    report(&c, 0, Observation::Status(503), 2, 1000);
    assert!(ejected(&c, 1000).is_empty());
    report(&c, 0, Observation::Status(500), 1, 1000);
    assert_eq!(ejected(&c, 1000), [0]);
    assert_eq!(c.live.health.usable_at(&c.cluster, || 1000), Usable::Healthy { now: 1000 });
    assert!(!Usable::Healthy { now: 1000 }.allows(&c.live.health, 0));
    assert!(Usable::Healthy { now: 1000 }.allows(&c.live.health, 1));
}

#[test]
fn ejection_time_grows_with_each_ejection_and_decays_while_healthy() {
    let c = cluster(2, detection());
    report(&c, 0, Observation::Status(500), 3, 1000);
    assert!(c.live.health[0].is_ejected(10_999));
    assert!(!c.live.health[0].is_ejected(11_000), "readmitted after baseEjectionTime");
    assert_eq!(c.live.health.usable_at(&c.cluster, || 11_000), Usable::All);
    report(&c, 0, Observation::Status(500), 3, 11_000);
    assert!(c.live.health[0].is_ejected(30_999), "second ejection lasts twice as long");
    assert!(!c.live.health[0].is_ejected(31_000));
    // 25 healthy intervals later, the multiplier has decayed back to nothing.
    report(&c, 0, Observation::Status(500), 3, 56_000);
    assert!(!c.live.health[0].is_ejected(66_000));
}

#[test]
fn ejection_time_is_capped_at_300_seconds() {
    let mut od = detection();
    od.base_ejection_time = Duration::from_secs(200);
    let c = cluster(2, od);
    report(&c, 0, Observation::Status(500), 3, 1000);
    report(&c, 0, Observation::Status(500), 3, 201_000);
    assert!(c.live.health[0].is_ejected(500_999));
    assert!(!c.live.health[0].is_ejected(501_000));
}

#[test]
fn gateway_errors_count_502_to_504_and_local_failures_only() {
    let od = OutlierDetection { consecutive_5xx: None, consecutive_gateway_errors: Some(2), ..detection() };
    let c = cluster(4, od);
    report(&c, 0, Observation::Status(500), 5, 1);
    report(&c, 1, Observation::Status(502), 2, 1);
    report(&c, 2, Observation::ConnectFailed, 1, 1);
    report(&c, 2, Observation::Timeout, 1, 1);
    report(&c, 3, Observation::Status(503), 1, 1);
    report(&c, 3, Observation::Status(500), 1, 1);
    report(&c, 3, Observation::Status(504), 1, 1);
    assert_eq!(ejected(&c, 1), [1, 2]);
}

#[test]
fn split_local_origin_failures_count_apart_and_a_connection_clears_them() {
    let od = OutlierDetection {
        consecutive_5xx: Some(100),
        consecutive_local_origin_failures: Some(2),
        split_external_local_origin_errors: true,
        ..detection()
    };
    let c = cluster(3, od);
    report(&c, 0, Observation::ConnectFailed, 1, 1);
    report(&c, 0, Observation::Connected, 1, 1);
    report(&c, 0, Observation::Reset, 1, 1);
    report(&c, 1, Observation::Status(503), 50, 1);
    report(&c, 2, Observation::ConnectFailed, 1, 1);
    report(&c, 2, Observation::Timeout, 1, 1);
    assert_eq!(ejected(&c, 1), [2]);
}

#[test]
fn connected_alone_neither_counts_nor_clears_without_the_split() {
    let c = cluster(2, detection());
    report(&c, 0, Observation::ConnectFailed, 2, 1);
    report(&c, 0, Observation::Connected, 1, 1);
    report(&c, 0, Observation::Reset, 1, 1);
    assert_eq!(ejected(&c, 1), [0]);
}

#[test]
fn max_ejection_percent_still_allows_one() {
    let od = OutlierDetection { max_ejection_percent: 10, ..detection() };
    let c = cluster(3, od);
    for i in 0..3 {
        report(&c, i, Observation::Status(500), 3, 1);
    }
    assert_eq!(ejected(&c, 1), [0]);
    // The denied host's count started again: three more failures after the first is back.
    report(&c, 1, Observation::Status(500), 3, 20_000);
    assert_eq!(ejected(&c, 20_000), [1]);
}

#[test]
fn all_ejected_is_none_unless_panic_mode() {
    let c = cluster(2, detection());
    report(&c, 0, Observation::Status(500), 3, 1);
    report(&c, 1, Observation::Status(500), 3, 1);
    assert_eq!(c.live.health.usable_at(&c.cluster, || 1), Usable::None);
    assert!(!Usable::None.allows(&c.live.health, 0));

    let c = cluster(3, OutlierDetection { min_health_percent: 50, ..detection() });
    report(&c, 0, Observation::Status(500), 3, 1);
    assert_eq!(c.live.health.usable_at(&c.cluster, || 1), Usable::Healthy { now: 1 }, "2 of 3 healthy is above 50%");
    report(&c, 1, Observation::Status(500), 3, 1);
    assert_eq!(c.live.health.usable_at(&c.cluster, || 1), Usable::All, "1 of 3 healthy: panic, every host is used");
}

#[test]
fn no_detection_no_ejection() {
    let mut c = cluster(1, detection());
    c.cluster.policy.outlier_detection = None;
    report(&c, 0, Observation::Status(500), 10, 1);
    assert!(ejected(&c, 1).is_empty());
    assert_eq!(c.live.health.usable(&c.cluster), Usable::All);
}
