//! ASMLocalRateLimiter configs compiled onto the routes they name.

use super::*;

/// The limit on the route `decide` picks, if any.
fn limit<'s>(snapshot: &'s Snapshot, host: &str, path: &str) -> Option<&'s LocalRateLimit> {
    let RouteDecision::Matched { route, .. } = decide(table(snapshot, 80), host, "GET", path, &[]) else {
        panic!("{host}{path} is not routed");
    };
    route.policy.request.iter().find_map(|s| match s {
        RequestStage::LocalRateLimit(id, _) => Some(snapshot.local_rate_limit(*id)),
        _ => None,
    })
}

#[test]
fn a_route_config_wins_over_its_virtual_host_config() {
    let s = build(&["snapshot/local-rate-limits.yaml"]);
    let r1 = limit(&s, "a.test", "/r1").expect("r1 is limited");
    assert_eq!(r1.token_bucket.max_tokens, 10);
    assert_eq!(r1.token_bucket.tokens_per_fill, 10);
    assert_eq!(r1.token_bucket.fill_interval, Duration::from_secs(1));
    assert_eq!(&*r1.body, "local_rate_limited");
    assert_eq!(r1.status, 429);
    let r2 = limit(&s, "a.test", "/other").expect("the virtual host's config covers r2");
    assert_eq!(r2.token_bucket.max_tokens, 100);
}

#[test]
fn a_port_or_workload_that_does_not_match_applies_nowhere() {
    let s = build(&["snapshot/local-rate-limits.yaml"]);
    assert!(limit(&s, "b.test", "/").is_none());
    assert_eq!(s.local_rate_limits.len(), 2);
}

#[test]
fn the_limit_runs_after_fault_and_before_the_routers_edits() {
    let s = build(&["snapshot/local-rate-limits.yaml"]);
    let RouteDecision::Matched { route, .. } = decide(table(&s, 80), "a.test", "GET", "/r1", &[]) else {
        panic!("not routed");
    };
    let order: Vec<&str> = route
        .policy
        .request
        .iter()
        .map(|s| match s {
            RequestStage::Fault(_) => "fault",
            RequestStage::LocalRateLimit(..) => "local_ratelimit",
            RequestStage::RateLimit(..) => "ratelimit",
            RequestStage::RequestHeaders(_) => "headers",
            _ => "other",
        })
        .collect();
    assert_eq!(order, ["fault", "local_ratelimit", "headers"]);
}

#[test]
fn a_reload_keeps_the_bucket_of_an_unchanged_limit_only() {
    let before = build(&["snapshot/local-rate-limits.yaml"]);
    let mut after = build(&["snapshot/local-rate-limits.yaml"]);
    after.inherit(&before);
    for (a, b) in after.local_rate_limits.iter().zip(&before.local_rate_limits) {
        assert!(std::sync::Arc::ptr_eq(a, b), "{} kept", a.key);
    }
    let mut set = load(&["snapshot/local-rate-limits.yaml"]);
    set.asm_local_rate_limiters[0].spec.configs[1].limit.quota = 11;
    let mut changed = compile(&set, &options(&[])).unwrap();
    changed.inherit(&before);
    let kept: Vec<bool> = changed
        .local_rate_limits
        .iter()
        .map(|l| before.local_rate_limits.iter().any(|b| std::sync::Arc::ptr_eq(l, b)))
        .collect();
    assert_eq!(kept.iter().filter(|k| **k).count(), 1, "only the unchanged config keeps its bucket");
}
