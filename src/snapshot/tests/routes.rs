//! What a route carries: destinations and clusters, actions, policies and their stages.

use super::*;

#[test]
fn destinations_and_clusters() {
    let s = build(&["snapshot/backends.yaml"]);
    let t = table(&s, 8080);
    let host = "backends.example.com";
    let dest = |uri: &str| forward(matched(decide(t, host, "GET", uri, &[]))).destinations.clone();

    // Short names expand in the VirtualService's namespace; the only port is the default.
    let d = &dest("/short")[0];
    assert_eq!((&*d.host, d.port), ("reviews.shop.svc.cluster.local", 9080));
    let base = s.cluster(d.cluster.unwrap());
    assert_eq!(&*base.name, "outbound|9080||reviews.shop.svc.cluster.local");
    assert_eq!(base.endpoints.len(), 3);
    // Several ports: the listener port.
    let d = &dest("/multi")[0];
    assert_eq!(cluster_name(&s, d).as_deref(), Some("outbound|8080||multi.shop.svc.cluster.local"));

    // Subsets select endpoints by labels; the port comes from `ports` or targetPort.
    let v1 = s.cluster(dest("/v1")[0].cluster.unwrap());
    let addrs: Vec<String> = v1.endpoints.iter().map(|e| e.addr.to_string()).collect();
    assert_eq!(addrs, ["10.2.0.1:8000"]);
    let v2 = s.cluster(dest("/v2")[0].cluster.unwrap());
    let addrs: Vec<(String, u32)> = v2.endpoints.iter().map(|e| (e.addr.to_string(), e.weight)).collect();
    assert_eq!(addrs, [("10.2.0.2:8002".to_string(), 1), ("10.2.0.3:8000".to_string(), 3)]);
    assert_eq!(v2.subset.as_deref(), Some("v2"));

    // Dangling: unknown host, subset or port → no cluster (503).
    assert_eq!(dest("/dangling-host")[0].cluster, None);
    assert_eq!(dest("/dangling-host")[0].port, 8080);
    assert_eq!(dest("/dangling-subset")[0].cluster, None);
    assert_eq!(dest("/dangling-port")[0].cluster, None);

    // Weight 0 is dropped.
    let split = dest("/split");
    let weights: Vec<(Option<&str>, u32)> = split.iter().map(|d| (d.subset.as_deref(), d.weight)).collect();
    assert_eq!(weights, [(Some("v2"), 30), (None, 70)]);

    // Policy merge for port 9080: its portLevelSettings entry replaces the rule's policy
    // wholesale (istiod's GetPortLevelTrafficPolicy), so what it leaves out is the default.
    let default = TrafficPolicy::default();
    assert_eq!(base.policy.http1_max_pending_requests, 5);
    assert_eq!(base.policy.load_balancer, default.load_balancer);
    assert_eq!(base.policy.connect_timeout, Duration::from_secs(10));
    assert_eq!(base.policy.max_connections, u32::MAX);
    assert_eq!(base.policy.outlier_detection, None);
    assert_eq!(v1.policy, base.policy);
    // v2's own entry for the port replaces everything again, its loadBalancer only.
    assert_eq!(
        v2.policy.load_balancer,
        LoadBalancer::ConsistentHash {
            key: HashKey::Header("x-user".into()),
            algorithm: HashAlgorithm::RingHash { minimum_ring_size: 1024 }
        }
    );
    assert_eq!(v2.policy.http1_max_pending_requests, default.http1_max_pending_requests);
    assert_eq!(v2.policy.outlier_detection, None);
    // The ring is compiled with the snapshot, for the hashing cluster only.
    assert!(matches!(v2.hash_table, Some(HashTable::Ring(_))));
    assert!(base.hash_table.is_none());

    // Every ServiceEntry host × port has a cluster, routed to or not; DNS is resolved now.
    let dns = s.cluster(s.cluster_by_name("outbound|7000||localhost").unwrap());
    assert!(dns.endpoints.iter().all(|e| e.addr.ip().is_loopback() && e.addr.port() == 7000));
    assert!(s.cluster_by_name("outbound|9090||multi.shop.svc.cluster.local").is_some());
}

/// The route's `headers`, read back from its stages (none set: empty edits).
fn headers(r: &Route) -> HeaderOps {
    let policy = &r.policy;
    let request =
        policy.request.iter().find_map(|s| if let RequestStage::RequestHeaders(h) = s { Some(h) } else { None });
    let response = policy.response.iter().find_map(|s| if let ResponseStage::Headers(h) = s { Some(h) } else { None });
    HeaderOps { request: request.cloned().unwrap_or_default(), response: response.cloned().unwrap_or_default() }
}

#[test]
fn actions_and_policies() {
    let s = build(&["snapshot/policies.yaml"]);
    let t = table(&s, 8080);
    let host = "policies.example.com";
    let route = |uri: &str| matched(decide(t, host, "GET", uri, &[]));

    match &route("/redirect").action {
        RouteAction::Redirect(r) => {
            assert_eq!((r.code, r.port, r.uri.as_deref()), (301, RedirectPort::FromRequestPort, Some("/new")));
        }
        _ => panic!("not a redirect"),
    }
    assert_eq!(outcome(&decide(t, host, "GET", "/bytes", &[])), "418 hello");

    // Defaults: Istio's retry policy, abort without percentage never fires, mirror 100%.
    let r = route("/defaults");
    assert_eq!(r.policy.retries, RetryPolicy::default());
    assert_eq!(r.policy.fault().unwrap().abort, Some((AbortStatus::Http(500), 0.0)));
    assert_eq!(r.policy.mirrors().len(), 1);
    assert_eq!(r.policy.mirrors()[0].percent, 100.0);
    assert_eq!(&*r.policy.mirrors()[0].destination.host, "shadow.shop.svc.cluster.local");
    assert!(r.policy.mirrors()[0].destination.cluster.is_some());
    assert_eq!(r.policy.timeout, None);

    let r = route("/everything");
    let rw = r.policy.rewrite().unwrap();
    assert_eq!(rw.authority.as_deref(), Some("new.example.com"));
    let (re, with) = rw.uri_regex.as_ref().unwrap();
    assert_eq!(re.replace_all("/service/v1/api/update", &**with), "/customprefix//api/update/v1");
    let req = &headers(r).request;
    assert_eq!(req.set, [("x-set".into(), "a".into()), ("host".into(), "h.example.com".into())]);
    assert_eq!(req.add, [("x-add".into(), "b".into())]);
    assert_eq!(req.remove, ["x-remove".into()]);
    assert_eq!(headers(r).response.set, [("x-resp".into(), "c".into())]);
    assert_eq!(forward(r).destinations[0].headers.request.set, [("x-dest".into(), "d".into())]);
    assert_eq!(r.policy.timeout, Some(Duration::from_secs(2)));
    let retries = &r.policy.retries;
    assert_eq!(retries.attempts, 4);
    assert_eq!(retries.per_try_timeout, Some(Duration::from_millis(500)));
    assert_eq!(retries.retriable_status_codes, [503]);
    let on = retries.retry_on;
    assert!(on.server_error_5xx && on.reset && on.retriable_status_codes && !on.connect_failure);
    assert_eq!(r.policy.fault().unwrap().delay, Some((Duration::from_secs(1), 12.5)));
    let mirrors: Vec<f64> = r.policy.mirrors().iter().map(|m| m.percent).collect();
    assert_eq!(mirrors, [25.0]);
    let cors = r.policy.cors().unwrap();
    assert_eq!(cors.allow_methods.as_deref(), Some("GET,POST"));
    assert_eq!(cors.allow_headers.as_deref(), Some("x-a,x-b"));
    assert_eq!(cors.max_age, Some(Duration::from_secs(86400)));
    assert!(!cors.forward_unmatched_preflights);
    assert!(cors.allow_origins[1].matches("https://x.b.example.com", false));
    assert!(!cors.allow_origins[1].matches("https://x.b.example.com.evil", false));

    assert_eq!(route("/no-retries").policy.retries.attempts, 0);
}

#[test]
fn route_stages_compile_in_envoys_filter_order() {
    let s = build(&["snapshot/policies.yaml"]);
    let t = table(&s, 8080);
    let r = matched(decide(t, "policies.example.com", "GET", "/everything", &[]));
    let request: Vec<&str> = r
        .policy
        .request
        .iter()
        .map(|s| match s {
            RequestStage::Cors(_) => "cors",
            RequestStage::Fault(_) => "fault",
            RequestStage::LocalRateLimit(..) => "local_ratelimit",
            RequestStage::RateLimit(..) => "ratelimit",
            RequestStage::GlobalRateLimit(_) => "global_ratelimit",
            RequestStage::Rewrite(_) => "rewrite",
            RequestStage::RequestHeaders(_) => "headers",
            RequestStage::Mirror(_) => "mirror",
            RequestStage::Compress(_) => "compress",
        })
        .collect();
    assert_eq!(request, ["cors", "fault", "rewrite", "headers", "mirror"]);
    let response: Vec<&str> = r
        .policy
        .response
        .iter()
        .map(|s| match s {
            ResponseStage::Headers(_) => "headers",
            ResponseStage::Cors => "cors",
            ResponseStage::Compress(_) => "compress",
        })
        .collect();
    assert_eq!(response, ["headers", "cors"]);
    // A route that sets none runs no stage.
    let plain = matched(decide(t, "policies.example.com", "GET", "/no-retries", &[]));
    assert!(plain.policy.request.is_empty() && plain.policy.response.is_empty());
}
