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

/// The global limit on the route `decide` picks, if any.
fn global<'s>(snapshot: &'s Snapshot, path: &str) -> Option<&'s GlobalRateLimit> {
    let RouteDecision::Matched { route, .. } = decide(table(snapshot, 80), "a.test", "GET", path, &[]) else {
        panic!("a.test{path} is not routed");
    };
    route.policy.request.iter().find_map(|s| match s {
        RequestStage::GlobalRateLimit(id) => Some(snapshot.global_rate_limit(*id)),
        _ => None,
    })
}

const GLOBAL: [&str; 2] = ["snapshot/local-rate-limits.yaml", "snapshot/global-rate-limits.yaml"];

#[test]
fn global_configs_name_envoyproxy_ratelimits_windows_a_route_config_winning() {
    let s = build(&GLOBAL);
    assert_eq!(s.global_rate_limits.len(), 2, "the sidecars' rule selects another workload");
    let r1 = global(&s, "/r1").expect("r1 is limited");
    assert_eq!(r1.timeout, Duration::from_millis(50), "rateLimitService.timeout");
    let domain = "ratelimit.default.svc.cluster.local";
    assert_eq!(&*r1.window.prefix, format!("{domain}_generic_key_RateLimit[global-test.default]-Id[r1]_"));
    assert_eq!((r1.window.quota, r1.window.unit_s), (5, 1));
    let (_, alice) = &r1.overrides[0];
    assert_eq!(&*alice.prefix, format!("{}header_match_Override[0]_", r1.window.prefix));
    assert_eq!((alice.quota, alice.unit_s), (1, 86_400));
    let whole = global(&s, "/other").expect("the virtual host's config covers r2");
    assert_eq!((whole.window.quota, whole.window.unit_s), (100, 60));
    assert_eq!(whole.timeout, Duration::from_millis(50));
}

#[test]
fn a_global_limit_picks_its_route_match_then_an_override() {
    let s = build(&GLOBAL);
    let r1 = global(&s, "/r1").unwrap();
    let pick = |headers: &[(&str, &str)]| {
        let headers: Vec<httparse::Header<'_>> =
            headers.iter().map(|(n, v)| httparse::Header { name: n, value: v.as_bytes() }).collect();
        let info =
            RequestInfo { method: "GET", host: "a.test", path: "/r1", query: None, scheme: "http", headers: &headers };
        r1.pick(&info)
    };
    assert_eq!(pick(&[]), None, "header_match: only requests with x-limited count");
    assert_eq!(pick(&[("x-limited", "1")]), Some(0));
    assert_eq!(pick(&[("x-limited", "1"), ("x-user", "alice")]), Some(1));
    assert_eq!(r1.window(1).quota, 1);
}

#[test]
fn the_global_limit_runs_after_the_local_one() {
    let s = build(&GLOBAL);
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
            RequestStage::GlobalRateLimit(_) => "ratelimit",
            RequestStage::RequestHeaders(_) => "headers",
            _ => "other",
        })
        .collect();
    assert_eq!(order, ["fault", "local_ratelimit", "ratelimit", "headers"]);
}

#[test]
fn a_bad_global_config_is_refused_naming_its_field() {
    let mut set = load(&GLOBAL);
    set.asm_global_rate_limiters[0].spec.configs[1].limit.unit = "WEEK".into();
    set.asm_global_rate_limiters[0].spec.configs[0].limit_overrides =
        set.asm_global_rate_limiters[0].spec.configs[1].limit_overrides.clone();
    set.asm_global_rate_limiters[0].spec.configs[0].limit_overrides[0].limit.unit = "fortnight".into();
    let err = compile(&set, &options(&[])).unwrap_err().to_string();
    assert!(err.contains("spec.configs[1].limit.unit") && err.contains("WEEK"), "{err}");
    assert!(err.contains("spec.configs[0].limit_overrides[0].limit.unit"), "{err}");
    let mut set = load(&GLOBAL);
    set.asm_global_rate_limiters[0].spec.rate_limit_service = None;
    let err = compile(&set, &options(&[])).unwrap_err().to_string();
    assert!(err.contains("spec.rateLimitService.host"), "{err}");
}
