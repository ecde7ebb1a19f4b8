//! The merge of a rule's, its port level's and a subset's traffic policies, as istiod's
//! `MergeSubsetTrafficPolicy` leaves them for one port.

use super::*;
use crate::config::destination_rule::DestinationRule;

/// The rule `yaml` (a DestinationRule spec) merged for `port` and the subset at `subset`.
fn merged(yaml: &str, subset: Option<usize>, port: u16) -> (TrafficPolicy, Option<String>) {
    let rule: DestinationRule = serde_yaml::from_str(yaml).unwrap();
    let subset = subset.map(|i| (i, &rule.subsets[i]));
    let selected = Selected::new(rule.traffic_policy.as_ref(), subset, port);
    (selected.traffic_policy(), selected.tls.map(|(_, path)| path))
}

const RULE: &str = "
host: app.local
trafficPolicy:
  loadBalancer: {simple: ROUND_ROBIN}
  connectionPool: {http: {maxRequestsPerConnection: 5}}
  outlierDetection: {consecutive5xxErrors: 7}
  tls: {mode: SIMPLE}
  portLevelSettings:
  - port: {number: 8080}
    loadBalancer: {simple: RANDOM}
subsets:
- name: plain
- name: pooled
  trafficPolicy:
    connectionPool: {http: {maxRequestsPerConnection: 2}}
- name: ported
  trafficPolicy:
    connectionPool: {http: {maxRequestsPerConnection: 3}}
    portLevelSettings:
    - port: {number: 80}
      outlierDetection: {consecutive5xxErrors: 1}
";

#[test]
fn without_an_entry_for_the_port_the_rules_policy_applies() {
    let (policy, tls) = merged(RULE, None, 80);
    assert_eq!(policy.load_balancer, LoadBalancer::RoundRobin);
    assert_eq!(policy.max_requests_per_connection, 5);
    assert_eq!(policy.outlier_detection.map(|o| o.consecutive_5xx), Some(Some(7)));
    assert_eq!(tls.as_deref(), Some("spec.trafficPolicy.tls"));
}

#[test]
fn a_port_level_entry_replaces_the_policy_wholesale() {
    let (policy, tls) = merged(RULE, None, 8080);
    let default = TrafficPolicy::default();
    assert_eq!(policy.load_balancer, LoadBalancer::Random);
    // Left out at the port level: the defaults, not the rule's connectionPool, outlier
    // detection or tls.
    assert_eq!(policy.max_requests_per_connection, default.max_requests_per_connection);
    assert_eq!(policy.outlier_detection, None);
    assert_eq!(tls, None);
}

#[test]
fn a_subset_overrides_field_by_field() {
    // No policy of its own: the rule's, for the port.
    assert_eq!(merged(RULE, Some(0), 80).0, merged(RULE, None, 80).0);
    assert_eq!(merged(RULE, Some(0), 8080).0, merged(RULE, None, 8080).0);
    // Its connectionPool replaces the rule's; the rest stays the rule's for the port.
    let (policy, tls) = merged(RULE, Some(1), 80);
    assert_eq!(policy.max_requests_per_connection, 2);
    assert_eq!(policy.load_balancer, LoadBalancer::RoundRobin);
    assert_eq!(policy.outlier_detection.map(|o| o.consecutive_5xx), Some(Some(7)));
    assert_eq!(tls.as_deref(), Some("spec.trafficPolicy.tls"));
    let (policy, tls) = merged(RULE, Some(1), 8080);
    assert_eq!((policy.load_balancer, policy.max_requests_per_connection), (LoadBalancer::Random, 2));
    assert_eq!((policy.outlier_detection, tls), (None, None));
}

#[test]
fn a_subsets_port_level_entry_replaces_everything_for_its_port() {
    let (policy, tls) = merged(RULE, Some(2), 80);
    let default = TrafficPolicy::default();
    assert_eq!(policy.outlier_detection.map(|o| o.consecutive_5xx), Some(Some(1)));
    // Neither the subset's own connectionPool nor the rule's load balancer or tls.
    assert_eq!(policy.max_requests_per_connection, default.max_requests_per_connection);
    assert_eq!(policy.load_balancer, default.load_balancer);
    assert_eq!(tls, None);
    // On another port the subset's policy overrides field by field.
    let (policy, tls) = merged(RULE, Some(2), 8080);
    assert_eq!((policy.load_balancer, policy.max_requests_per_connection), (LoadBalancer::Random, 3));
    assert_eq!((policy.outlier_detection, tls), (None, None));
}

#[test]
fn a_tls_failure_names_the_level_it_came_from() {
    let yaml = "host: a\ntrafficPolicy:\n  portLevelSettings:\n  - port: {number: 443}\n    tls: {mode: SIMPLE}\n\
                subsets:\n- name: s\n  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 8443}\n      tls: {mode: SIMPLE}\n";
    assert_eq!(merged(yaml, None, 443).1.as_deref(), Some("spec.trafficPolicy.portLevelSettings[0].tls"));
    assert_eq!(merged(yaml, Some(0), 443).1.as_deref(), Some("spec.trafficPolicy.portLevelSettings[0].tls"));
    assert_eq!(
        merged(yaml, Some(0), 8443).1.as_deref(),
        Some("spec.subsets[0].trafficPolicy.portLevelSettings[0].tls")
    );
}

/// istiod's choice of HTTP/2 for a gateway's cluster: `useClientProtocol` first, then an
/// HTTP2/GRPC/GRPC-WEB port or `h2UpgradePolicy: UPGRADE`; DO_NOT_UPGRADE downgrades no port.
#[test]
fn upstream_protocol_as_istiod_chooses_it() {
    use crate::snapshot::UpstreamProtocol::{self, Client, Http1, Http2};
    let pool =
        |http: &str| merged(&format!("host: a\ntrafficPolicy: {{connectionPool: {{http: {http}}}}}"), None, 80).0;
    let cases = [
        ("HTTP", "{}", Http1),
        ("HTTP2", "{}", Http2),
        ("GRPC", "{}", Http2),
        ("GRPC-WEB", "{}", Http2),
        ("HTTP", "{h2UpgradePolicy: UPGRADE}", Http2),
        ("HTTP", "{h2UpgradePolicy: DO_NOT_UPGRADE}", Http1),
        ("HTTP2", "{h2UpgradePolicy: DO_NOT_UPGRADE}", Http2),
        ("HTTP2", "{useClientProtocol: true}", Client),
        ("HTTP", "{useClientProtocol: true, h2UpgradePolicy: UPGRADE}", Client),
    ];
    for (port, http, want) in cases {
        assert_eq!(UpstreamProtocol::choose(port, &pool(http)), want, "{port} {http}");
    }
    let limits = pool("{maxConcurrentStreams: 7}");
    assert_eq!(limits.max_concurrent_streams, 7);
    assert_eq!(pool("{}").max_concurrent_streams, u32::MAX);
}
