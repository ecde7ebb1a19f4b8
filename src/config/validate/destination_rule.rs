//! DestinationRule rules (Istio's `ValidateDestinationRule`): the host, subset names, and each
//! traffic policy's one-ofs, ports and percentages.

use std::collections::HashSet;

use super::At;
use crate::config::destination_rule::{DestinationRule, TrafficPolicy};
use crate::config::{ConfigSet, Diagnostics};

pub(super) fn check(set: &ConfigSet, out: &mut Diagnostics) {
    for dr in &set.destination_rules {
        let mut at = At { resource: dr, out: &mut *out };
        at.host("spec.host", &dr.spec.host);
        if let Some(policy) = &dr.spec.traffic_policy {
            traffic_policy(&mut at, "spec.trafficPolicy", policy);
        }
        let mut names = HashSet::new();
        for (i, subset) in dr.spec.subsets.iter().enumerate() {
            if subset.name.is_empty() {
                at.error(format!("spec.subsets[{i}].name"), "subset name is required");
            } else if !names.insert(subset.name.as_str()) {
                at.error(format!("spec.subsets[{i}].name"), format!("duplicate subset name {}", subset.name));
            }
            if let Some(policy) = &subset.traffic_policy {
                traffic_policy(&mut at, &format!("spec.subsets[{i}].trafficPolicy"), policy);
            }
        }
    }
}

fn traffic_policy(at: &mut At<'_, DestinationRule>, prefix: &str, policy: &TrafficPolicy) {
    let levels = std::iter::once((prefix.to_owned(), policy.load_balancer.as_ref(), policy.outlier_detection.as_ref()));
    let port_levels = policy.port_level_settings.iter().enumerate().map(|(i, p)| {
        let pp = format!("{prefix}.portLevelSettings[{i}]");
        match &p.port {
            Some(port) => at.port(format!("{pp}.port.number"), port.number),
            None => at.error(format!("{pp}.port"), "port must be specified"),
        }
        (pp, p.load_balancer.as_ref(), p.outlier_detection.as_ref())
    });
    let all: Vec<_> = levels.chain(port_levels).collect();
    for (path, lb, outlier) in all {
        if lb.is_some_and(|lb| lb.simple.is_some() && lb.consistent_hash.is_some()) {
            at.error(format!("{path}.loadBalancer"), "loadBalancer may set only one of simple and consistentHash");
        }
        if let Some(o) = outlier {
            for (field, value) in
                [("maxEjectionPercent", o.max_ejection_percent), ("minHealthPercent", o.min_health_percent)]
            {
                if let Some(v) = value {
                    at.percent(format!("{path}.outlierDetection.{field}"), f64::from(v));
                }
            }
        }
    }
}
