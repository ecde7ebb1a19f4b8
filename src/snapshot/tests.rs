//! Compile tests: Istio YAML fixtures (tests/fixtures/) loaded through `config::load`, compiled,
//! then asked how requests route, as the data plane asks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{self, ConfigSet};

use super::*;

fn load(files: &[&str]) -> ConfigSet {
    let paths: Vec<PathBuf> = files.iter().map(|f| PathBuf::from("tests/fixtures").join(f)).collect();
    config::load(&paths).unwrap_or_else(|e| panic!("fixtures do not load:\n{e}"))
}

fn options(labels: &[(&str, &str)]) -> CompileOptions {
    let mut opts =
        CompileOptions { secrets_dir: Some("tests/fixtures/snapshot/secrets".into()), ..CompileOptions::default() };
    if !labels.is_empty() {
        opts.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }
    opts
}

fn build(files: &[&str]) -> Snapshot {
    compile(&load(files), &options(&[])).unwrap_or_else(|e| panic!("compile failed:\n{e}"))
}

/// The seeds name certificates under /etc/certs; point them at the test pair.
pub(crate) fn with_test_certs(mut set: ConfigSet) -> ConfigSet {
    for gw in &mut set.gateways {
        for server in &mut gw.spec.servers {
            if let Some(tls) = &mut server.tls {
                if tls.server_certificate.is_some() {
                    tls.server_certificate = Some("tests/fixtures/snapshot/certs/server.pem".into());
                    tls.private_key = Some("tests/fixtures/snapshot/certs/server-key.pem".into());
                }
            }
        }
    }
    set
}

fn table(snapshot: &Snapshot, port: u16) -> &RouteTable {
    &snapshot.listener(port).unwrap_or_else(|| panic!("no listener on {port}")).http_routes
}

/// Routes a request as an HTTP/1.1 client sends it: the Host header is among the headers.
fn decide<'s>(
    table: &'s RouteTable,
    host: &str,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> RouteDecision<'s> {
    let host_line = [("Host", host)];
    let headers: Vec<httparse::Header<'_>> =
        host_line.iter().chain(headers).map(|(n, v)| httparse::Header { name: n, value: v.as_bytes() }).collect();
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    table.route(&RequestInfo { host, method, path, query, scheme: "http", headers: &headers })
}

/// A short name for the outcome, to compare against.
fn outcome(d: &RouteDecision<'_>) -> String {
    match d {
        RouteDecision::NoVirtualHost => "no-vhost".into(),
        RouteDecision::NoRoute(_) => "no-route".into(),
        RouteDecision::HttpsRedirect(_) => "https-redirect".into(),
        RouteDecision::Matched { route, .. } => match &route.action {
            RouteAction::DirectResponse { status, body } if body.is_empty() => status.to_string(),
            RouteAction::DirectResponse { status, body } => {
                format!("{status} {}", String::from_utf8_lossy(body))
            }
            RouteAction::Redirect(r) => format!("redirect {}", r.code),
            RouteAction::Forward(w) => {
                let d: Vec<String> = w.destinations.iter().map(|d| format!("{}:{}", d.host, d.port)).collect();
                format!("forward {}", d.join(","))
            }
        },
    }
}

fn get(table: &RouteTable, host: &str, uri: &str) -> String {
    outcome(&decide(table, host, "GET", uri, &[]))
}

fn matched<'s>(d: RouteDecision<'s>) -> &'s Route {
    match d {
        RouteDecision::Matched { route, .. } => route,
        other => panic!("expected a route, got {}", outcome(&other)),
    }
}

fn forward(route: &Route) -> &WeightedDestinations {
    match &route.action {
        RouteAction::Forward(w) => w,
        _ => panic!("not a forward route"),
    }
}

fn cluster_name(s: &Snapshot, d: &Destination) -> Option<String> {
    d.cluster.map(|id| s.cluster(id).name.to_string())
}

#[test]
fn bookinfo_seed_routes_as_its_text_says() {
    let set = with_test_certs(load(&["config/seeds/001-bookinfo.yaml", "snapshot/bookinfo-backends.yaml"]));
    // The gateway runs beside its Gateway resource, where the 9443 server's Secret is.
    let opts =
        CompileOptions { namespace: "some-config-namespace".into(), ..options(&[("app", "my-gateway-controller")]) };
    let s = compile(&set, &opts).unwrap_or_else(|e| panic!("{e}"));
    let ports: Vec<u16> = s.listeners.iter().map(|l| l.port).collect();
    assert_eq!(ports, [80, 443, 9080, 9443, 27017]);

    // Port 80 redirects both hosts to https, though no VirtualService routes there.
    let t80 = table(&s, 80);
    assert_eq!(get(t80, "uk.bookinfo.com", "/reviews/1"), "https-redirect");
    assert_eq!(get(t80, "EU.bookinfo.com:80", "/"), "https-redirect");
    assert_eq!(get(t80, "other.com", "/"), "no-vhost");

    // The cookie sends everything to qa's special port.
    let t9080 = table(&s, 9080);
    let r = matched(decide(t9080, "uk.bookinfo.com", "GET", "/reviews/1", &[("Cookie", "user=dev-123")]));
    let d = &forward(r).destinations[0];
    assert_eq!((&*d.host, d.port), ("reviews.qa.svc.cluster.local", 7777));
    assert_eq!(cluster_name(&s, d).as_deref(), Some("outbound|7777||reviews.qa.svc.cluster.local"));
    let endpoints: Vec<String> = s.cluster(d.cluster.unwrap()).endpoints.iter().map(|e| e.addr.to_string()).collect();
    assert_eq!(endpoints, ["10.0.1.1:17777"]);

    // /reviews/ splits 80/20; qa has two ports and none is named, so the listener port is used.
    let r = matched(decide(t9080, "eu.bookinfo.com", "GET", "/reviews/7", &[]));
    let w = forward(r);
    assert_eq!(w.total_weight, 100);
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for draw in 0..10_000u32 {
        let d = w.pick(draw.wrapping_mul(2_654_435_761)).unwrap();
        *counts.entry(cluster_name(&s, d).unwrap()).or_default() += 1;
    }
    let prod = counts["outbound|9080||reviews.prod.svc.cluster.local"];
    let qa = counts["outbound|9080||reviews.qa.svc.cluster.local"];
    assert_eq!(prod + qa, 10_000);
    assert!((7_800..=8_200).contains(&prod), "prod got {prod} of 10000");
    assert_eq!(get(t9080, "uk.bookinfo.com", "/ratings"), "no-route");

    // On 443 the listener port is 443, which qa does not declare: that share answers 503.
    let l443 = s.listener(443).unwrap();
    assert_eq!(l443.protocol, ListenerProtocol::Tls);
    let server = l443.server_for_sni(Some("uk.bookinfo.com")).unwrap();
    assert!(l443.server_for_sni(Some("other.com")).is_none());
    assert!(l443.server_for_sni(None).is_none());
    assert_eq!(server.tls.as_ref().unwrap().mode, ServerTlsMode::Simple);
    let r = matched(decide(&server.routes, "uk.bookinfo.com", "GET", "/reviews/1", &[]));
    let qa = &forward(r).destinations[1];
    assert_eq!((&*qa.host, qa.port, qa.cluster), ("reviews.qa.svc.cluster.local", 443, None));

    // 9443 admits *.bookinfo.com from bookinfo-namespace; its certificate comes from the Secret
    // in the gateway's namespace, not the secrets directory's copy.
    let l9443 = s.listener(9443).unwrap();
    let server = l9443.server_for_sni(Some("uk.bookinfo.com")).unwrap();
    let tls = server.tls.as_ref().unwrap();
    assert!(tls.cert_chain.is_some() && tls.private_key.is_some() && tls.source_files.is_empty());
    assert!(matches!(
        decide(&server.routes, "uk.bookinfo.com", "GET", "/reviews/", &[]),
        RouteDecision::Matched { .. }
    ));

    // TCP 27017 goes to mongo on 5555.
    let tcp = &s.listener(27017).unwrap().servers[0];
    assert_eq!(tcp.protocol.as_ref(), "MONGO");
    assert_eq!(tcp.tcp_routes.len(), 1);
    let d = &tcp.tcp_routes[0].destinations.destinations[0];
    assert_eq!(cluster_name(&s, d).as_deref(), Some("outbound|5555||mongo.prod.svc.cluster.local"));
    assert_eq!(&*tcp.tcp_routes[0].source.virtual_service, "bookinfo-namespace/bookinfo-Mongo");

    // Other instance labels: the Gateway does not apply, nothing listens.
    let none = compile(&set, &options(&[])).unwrap();
    assert!(none.listeners.is_empty());
}

#[test]
fn seed_certificates_that_cannot_be_read_fail_the_compile() {
    let set = load(&["config/seeds/001-bookinfo.yaml", "snapshot/bookinfo-backends.yaml"]);
    let err = compile(&set, &options(&[("app", "my-gateway-controller")])).unwrap_err();
    let d = err.iter().next().unwrap();
    assert_eq!(d.field.as_deref(), Some("spec.servers[1].tls.serverCertificate"));
    assert!(d.message.contains("/etc/certs/servercert.pem"), "{}", d.message);
    assert_eq!(d.resource.as_deref(), Some("some-config-namespace/my-gateway"));
}

#[test]
fn namespace_restricted_server_hosts() {
    let s = compile(
        &load(&["config/seeds/001-namespace-restricted-gateway.yaml", "snapshot/ns-binding.yaml"]),
        &options(&[("app", "my-gateway-controller")]),
    )
    .unwrap();
    let t = table(&s, 80);
    assert_eq!(get(t, "shop.ns1.example", "/"), "200 ns1");
    assert_eq!(get(t, "foo.bar.com", "/"), "200 ns2-foo");
    assert_eq!(get(t, "bar.bar.com", "/"), "no-vhost");
    assert_eq!(get(t, "shop.ns3.example", "/"), "no-vhost");
}

#[test]
fn other_seed_gateways_compile() {
    // HTTP gateway: *.example.com redirects to https with no VirtualService at all.
    let s = build(&["config/seeds/000-http-gateway.yaml"]);
    assert_eq!(get(table(&s, 80), "www.example.com", "/x"), "https-redirect");
    assert_eq!(get(table(&s, 80), "example.org", "/x"), "no-vhost");

    // HTTPS gateway: credentialName found in the secrets directory.
    let s = build(&["config/seeds/000-https-gateway.yaml"]);
    let server = s.listener(443).unwrap().server_for_sni(Some("bookinfo.example.com")).unwrap();
    let tls = server.tls.as_ref().unwrap();
    assert_eq!(tls.source_files.len(), 2);
    assert_eq!(get(&server.routes, "bookinfo.example.com", "/"), "no-vhost");

    let set = with_test_certs(load(&["config/seeds/000-multi-port-gateway.yaml"]));
    let s = compile(&set, &options(&[])).unwrap();
    let ports: Vec<u16> = s.listeners.iter().map(|l| l.port).collect();
    assert_eq!(ports, [80, 443, 9080, 9443]);
    assert_eq!(get(table(&s, 80), "test2.com", "/"), "https-redirect");

    // Three gateways for three workloads: each instance gets only its own.
    let set = with_test_certs(load(&["config/seeds/001-server-examples.yaml"]));
    for (app, port, protocol) in [
        ("my-ingress", 80, ListenerProtocol::Http),
        ("my-tcp-ingress-gateway", 27018, ListenerProtocol::Tcp),
        ("my-tls-ingress-gateway", 443, ListenerProtocol::Tls),
    ] {
        let app = if app == "my-ingress" { "my-ingress-gateway" } else { app };
        let s = compile(&set, &options(&[("app", app)])).unwrap();
        assert_eq!(s.listeners.len(), 1);
        assert_eq!((s.listeners[0].port, s.listeners[0].protocol), (port, protocol));
    }
}

#[test]
fn virtual_host_selection() {
    let s = build(&["snapshot/hosts.yaml"]);
    let t = table(&s, 8080);
    assert_eq!(get(t, "a.example.com", "/"), "200 exact");
    assert_eq!(get(t, "A.Example.COM:8080", "/"), "200 exact");
    assert_eq!(get(t, "z.example.com", "/"), "200 wild");
    assert_eq!(get(t, "x.b.example.com", "/"), "200 wild-b");
    assert_eq!(get(t, "b.example.com", "/"), "200 wild");
    assert_eq!(get(t, "example.com", "/"), "200 any");
    assert_eq!(get(t, "other.org:1234", "/"), "200 any");
}

#[test]
fn match_blocks() {
    let s = build(&["snapshot/matching.yaml"]);
    let t = table(&s, 8080);
    let h = "match.test";
    // First match wins.
    assert_eq!(get(t, h, "/first"), "201");
    assert_eq!(get(t, h, "/firstly"), "202");
    // Blocks are OR'ed, fields AND'ed.
    assert_eq!(get(t, h, "/or-a"), "203");
    assert_eq!(get(t, h, "/or-b/x"), "203");
    assert_eq!(outcome(&decide(t, h, "POST", "/and", &[("x-env", "prod")])), "204");
    assert_eq!(outcome(&decide(t, h, "GET", "/and", &[("x-env", "prod")])), "no-route");
    assert_eq!(outcome(&decide(t, h, "POST", "/and", &[("x-env", "dev")])), "no-route");
    // Regex is a full match.
    assert_eq!(get(t, h, "/a/b"), "205");
    assert_eq!(get(t, h, "/x/a/b"), "no-route");
    // withoutHeaders: a missing header counts as empty, so it does not equal "yes".
    assert_eq!(get(t, h, "/without"), "206");
    assert_eq!(outcome(&decide(t, h, "GET", "/without", &[("x-skip", "no")])), "206");
    assert_eq!(outcome(&decide(t, h, "GET", "/without", &[("X-Skip", "yes")])), "no-route");
    assert_eq!(get(t, h, "/case/x"), "207");
    assert_eq!(get(t, h, "/q?a=2&v=1"), "208");
    assert_eq!(get(t, h, "/q?v=2"), "no-route");
    assert_eq!(outcome(&decide(t, h, "GET", "/zzz", &[("x-present", "")])), "209");
    // Match-level gateways and port are decided per listener.
    assert_eq!(get(t, h, "/gw"), "210");
    assert_eq!(get(t, h, "/port"), "no-route");
    let t81 = table(&s, 8081);
    assert_eq!(get(t81, h, "/gw"), "no-route");
    assert_eq!(get(t81, h, "/port"), "211");
    // sourceLabels select this instance or drop the block.
    assert_eq!(get(t, h, "/src"), "213");
    // `:authority` is the Host header.
    assert_eq!(get(t, h, "/authority"), "214");
    // A Gateway selecting other workloads does not listen here.
    assert!(s.listener(9999).is_none());
}

#[test]
fn connect_and_asterisk_targets_match_no_route() {
    let s = build(&["snapshot/matching.yaml"]);
    let t = table(&s, 8080);
    // A route without `match` (istiod's `prefix: /`), an explicit `prefix: /` and a block
    // matching on a header only: each takes a `/`-rooted path, never CONNECT or `OPTIONS *`.
    let present = [("x-present", "")];
    for (host, headers) in [("local.test", &[][..]), ("shared.test", &[]), ("match.test", &present)] {
        assert_ne!(outcome(&decide(t, host, "OPTIONS", "/", headers)), "no-route", "{host}");
        assert_eq!(outcome(&decide(t, host, "CONNECT", "", headers)), "no-route", "{host}");
        assert_eq!(outcome(&decide(t, host, "OPTIONS", "*", headers)), "no-route", "{host}");
    }
}

#[test]
fn catch_all_routes_move_behind_other_virtual_services() {
    let s = build(&["snapshot/matching.yaml"]);
    let t = table(&s, 8080);
    assert_eq!(get(t, "shared.test", "/a"), "221");
    assert_eq!(get(t, "shared.test", "/b"), "224");
    assert_eq!(get(t, "shared.test", "/zzz"), "221");
    // Routes after a catch-all can never match and are not compiled.
    assert_eq!(get(t, "shared.test", "/after"), "221");
    let vhost = match decide(t, "shared.test", "GET", "/", &[]) {
        RouteDecision::Matched { vhost, .. } => vhost,
        _ => unreachable!(),
    };
    let order: Vec<&str> = vhost.routes.iter().map(|r| &*r.source.virtual_service).collect();
    assert_eq!(order, ["shop/shared-1", "shop/shared-2", "shop/shared-1"]);
}

#[test]
fn binding_needs_gateways_and_export() {
    let s = build(&["snapshot/matching.yaml"]);
    let t = table(&s, 8080);
    assert_eq!(get(t, "nogw.test", "/"), "no-vhost");
    assert_eq!(get(t, "private.test", "/"), "no-vhost");
    assert_eq!(get(t, "exported.test", "/"), "200");
    assert_eq!(get(t, "local.test", "/"), "200");
    assert_eq!(get(table(&s, 8081), "local.test", "/"), "200");
}

#[test]
fn delegates_merge_under_their_root() {
    let s = build(&["snapshot/delegate.yaml"]);
    let t = table(&s, 8080);
    let host = "shop.example.com";
    let r = matched(decide(t, host, "GET", "/products/v2/x", &[("x-tenant", "acme")]));
    assert_eq!(r.name.as_deref(), Some("products-v2"));
    assert_eq!(r.policy.timeout, Some(Duration::from_secs(3)));
    assert_eq!(&*r.source.virtual_service, "catalog/products");
    let d = &forward(r).destinations[0];
    assert_eq!(cluster_name(&s, d).as_deref(), Some("outbound|80||products.catalog.svc.cluster.local"));
    // The root's header condition still applies to delegate routes.
    assert_eq!(get(t, host, "/products/v2/x"), "299");
    // A delegate route outside the root's prefix conflicts and is dropped.
    assert_eq!(outcome(&decide(t, host, "GET", "/elsewhere", &[("x-tenant", "acme")])), "299");
    // A delegate route without match takes the root's; its own timeout wins.
    let r = matched(decide(t, host, "GET", "/products/other", &[("x-tenant", "acme")]));
    assert_eq!(r.name.as_deref(), Some("products-rest"));
    assert_eq!(r.policy.timeout, Some(Duration::from_secs(7)));
    // A missing delegate drops its root route.
    assert_eq!(get(t, host, "/missing"), "299");
}

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
    assert_eq!(r.policy.fault().unwrap().abort, Some((500, 0.0)));
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
            RequestStage::Rewrite(_) => "rewrite",
            RequestStage::RequestHeaders(_) => "headers",
            RequestStage::Mirror(_) => "mirror",
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
        })
        .collect();
    assert_eq!(response, ["headers", "cors"]);
    // A route that sets none runs no stage.
    let plain = matched(decide(t, "policies.example.com", "GET", "/no-retries", &[]));
    assert!(plain.policy.request.is_empty() && plain.policy.response.is_empty());
}

#[test]
fn tls_listeners() {
    let s = build(&["snapshot/tls.yaml"]);
    let l = s.listener(8443).unwrap();
    assert_eq!(l.protocol, ListenerProtocol::Tls);
    let a = l.server_for_sni(Some("A.example.com")).unwrap();
    assert_eq!(&*a.port_name, "https-a");
    let tls = a.tls.as_ref().unwrap();
    assert_eq!((tls.min_protocol_version, tls.max_protocol_version), (Some(TlsVersion::V1_2), Some(TlsVersion::V1_3)));
    assert_eq!(tls.source_files.len(), 2);
    // Each HTTPS server has its own routes.
    assert_eq!(get(&a.routes, "a.example.com", "/"), "200 a");
    assert_eq!(get(&a.routes, "b.example.com", "/"), "no-vhost");
    let default = l.server_for_sni(Some("b.example.com")).unwrap();
    assert_eq!(&*default.port_name, "https-default");
    assert_eq!(l.server_for_sni(None).map(|s| &*s.port_name), Some("https-default"));
    assert_eq!(default.tls.as_ref().unwrap().mode, ServerTlsMode::Mutual);
    assert!(default.tls.as_ref().unwrap().ca_certificates.is_some());
    assert_eq!(get(&default.routes, "b.example.com", "/"), "200 a");

    // Passthrough: SNI routes, exact before wildcard; port-mismatched blocks dropped.
    let p = &s.listener(9443).unwrap().servers[0];
    assert_eq!(p.tls.as_ref().unwrap().mode, ServerTlsMode::Passthrough);
    let snis: Vec<(&str, &str, u16)> = p
        .tls_routes
        .iter()
        .map(|r| {
            (&*r.matches[0].sni_hosts[0], &*r.destinations.destinations[0].host, r.destinations.destinations[0].port)
        })
        .collect();
    assert_eq!(
        snis,
        [
            ("a.example.com", "a-backend.edge.svc.cluster.local", 443),
            ("*.example.com", "wildcard-backend.edge.svc.cluster.local", 9443)
        ]
    );
    let local = "10.0.0.1".parse().unwrap();
    let first = p.tls_routes.iter().find(|r| r.matches(Some("a.example.com"), local, local)).unwrap();
    assert_eq!(&*first.destinations.destinations[0].host, "a-backend.edge.svc.cluster.local");
}

/// A reload keeps the TLS sessions of a server whose settings it left alone and gives a
/// changed or new server sessions of its own: no session crosses servers or settings. A
/// kept-alive connection goes on after a change of certificate, not of client-certificate rules.
#[test]
fn a_reload_keeps_the_sessions_of_unchanged_tls_servers_only() {
    let set = load(&["snapshot/tls.yaml"]);
    // Two configs resume each other's sessions when they keep them in one store.
    let sessions = |s: &Snapshot, sni: &str| {
        let server = s.listener(8443).unwrap().server_for_sni(Some(sni)).unwrap();
        server.tls.as_ref().unwrap().config.as_ref().unwrap().0.session_storage.clone()
    };
    let first = build(&["snapshot/tls.yaml"]);
    let (a, default) = (sessions(&first, "a.example.com"), sessions(&first, "b.example.com"));
    assert!(!Arc::ptr_eq(&a, &default), "two servers of one port share sessions");

    let mut same = compile(&set, &options(&[])).unwrap();
    assert!(!Arc::ptr_eq(&sessions(&same, "a.example.com"), &a), "a fresh compile starts with its own sessions");
    same.inherit(&first);
    assert!(Arc::ptr_eq(&sessions(&same, "a.example.com"), &a), "unchanged settings keep their sessions");
    assert!(Arc::ptr_eq(&sessions(&same, "b.example.com"), &default));

    let edited = |edit: &dyn Fn(&mut crate::config::gateway::ServerTlsSettings)| {
        let mut set = set.clone();
        let gw = set.gateways.iter_mut().find(|g| g.name() == "tls").unwrap();
        edit(gw.spec.servers[0].tls.as_mut().unwrap());
        let mut changed = compile(&set, &options(&[])).unwrap();
        changed.inherit(&first);
        changed
    };
    fn on(s: &Snapshot) -> &Server {
        s.listener(8443).unwrap().server_for_sni(Some("a.example.com")).unwrap()
    }
    let versions = edited(&|tls| tls.min_protocol_version = None);
    assert!(!Arc::ptr_eq(&sessions(&versions, "a.example.com"), &a), "changed settings start with new sessions");
    assert!(Arc::ptr_eq(&sessions(&versions, "b.example.com"), &default), "the other server keeps its own");
    assert!(!on(&versions).continues(on(&first)), "other versions end a connection");
    let mode = edited(&|tls| {
        tls.mode = Some(crate::config::gateway::ServerTlsMode::OptionalMutual);
        tls.ca_certificates = Some("tests/fixtures/snapshot/certs/server.pem".into());
    });
    assert!(!on(&mode).continues(on(&first)), "another mode ends a connection");
    let secrets = edited(&|tls| tls.ca_certificates = Some("tests/fixtures/snapshot/certs/server.pem".into()));
    assert!(!Arc::ptr_eq(&sessions(&secrets, "a.example.com"), &a), "new secrets start new sessions");
    assert!(on(&secrets).continues(on(&first)), "new secrets keep connections, as SDS updates do");
}

#[test]
fn tls_terminated_tcp_and_auto_passthrough() {
    let s = build(&["snapshot/tls.yaml"]);
    // A TLS server that terminates proxies TCP: the first tcp route for the port, alone.
    let l = s.listener(9444).unwrap();
    let server = l.server_for_sni(Some("db.example.com")).unwrap();
    assert_eq!(server.tls.as_ref().unwrap().mode, ServerTlsMode::Simple);
    assert_eq!(server.tcp_routes.len(), 1);
    assert_eq!(server.tcp_routes[0].source.index, 1);
    let d = &server.tcp_routes[0].destinations.destinations[0];
    assert_eq!(cluster_name(&s, d).as_deref(), Some("outbound|8000||api.mesh.local"));
    // AUTO_PASSTHROUGH routes on cluster names: the clusters exist, subsets included.
    let l = s.listener(15443).unwrap();
    assert_eq!(l.servers[0].tls.as_ref().unwrap().mode, ServerTlsMode::AutoPassthrough);
    let v1 = s.cluster(s.cluster_by_name("outbound|8000|v1|api.mesh.local").unwrap());
    assert_eq!(v1.endpoints.len(), 1);
}

#[test]
fn client_credentials_come_from_the_gateways_namespace() {
    let set = load(&["snapshot/credential-namespace.yaml"]);
    let opts = CompileOptions { namespace: "istio-system".into(), ..options(&[]) };
    let s = compile(&set, &opts).unwrap_or_else(|e| panic!("{e}"));
    let cluster = s.cluster(s.cluster_by_name("outbound|443||up.example.com").unwrap());
    let tls = cluster.policy.tls.as_ref().expect("upstream TLS");
    assert!(tls.client_certificate.is_some() && tls.private_key.is_some());

    // The rule's own namespace is not where istiod looks: the error says where it did.
    let err = compile(&set, &options(&[])).unwrap_err();
    let d = err.iter().next().unwrap();
    assert_eq!(d.field.as_deref(), Some("spec.trafficPolicy.tls.credentialName"));
    assert!(
        d.message.starts_with(
            "no Secret client-cred in namespace default (the gateway's namespace, --namespace; namespace \
             istio-system has one)"
        ),
        "{}",
        d.message
    );
}

#[test]
fn missing_credentials_are_errors() {
    let set = load(&["config/seeds/000-https-gateway.yaml"]);
    let opts = CompileOptions { secrets_dir: None, ..CompileOptions::default() };
    let err = compile(&set, &opts).unwrap_err();
    let d = err.iter().next().unwrap();
    assert_eq!(d.field.as_deref(), Some("spec.servers[0].tls.credentialName"));
    assert!(d.message.contains("bookinfo-tls-secret"));
}

#[test]
fn odd_input_compiles_or_fails_without_panicking() {
    let set = load(&["snapshot/odd.yaml"]);
    let err = compile(&set, &options(&[])).unwrap_err();
    let fields: Vec<&str> = err.iter().filter_map(|d| d.field.as_deref()).collect();
    assert!(fields.contains(&"spec.http[2].directResponse.body.bytes"), "{fields:?}");
    assert!(fields.contains(&"spec.http[5].rewrite.uriRegexRewrite.match"), "{fields:?}");
}

#[test]
fn tcp_routes_keep_subnets_and_end_at_a_catch_all() {
    let s = build(&["snapshot/tcp.yaml"]);
    let l = s.listener(27017).unwrap();
    assert_eq!(l.protocol, ListenerProtocol::Tcp);
    let routes = &l.servers[0].tcp_routes;
    let names: Vec<&str> = routes.iter().map(|r| &*r.name).collect();
    assert_eq!(names, ["db/mongo/tcp/1", "db/mongo/tcp/3"]);
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let host = |local: &str, peer: &str| {
        let route = l.tcp_route(ip(local), ip(peer)).unwrap();
        route.destinations.destinations.iter().map(|d| d.host.to_string()).collect::<Vec<_>>().join(",")
    };
    assert_eq!(host("127.0.0.1", "10.1.2.3"), "internal.db.svc.cluster.local");
    assert_eq!(host("192.168.1.1", "127.0.0.1"), "internal.db.svc.cluster.local");
    assert_eq!(host("192.168.2.7", "127.0.0.1"), "internal.db.svc.cluster.local");
    assert_eq!(host("192.168.1.2", "127.0.0.1"), "primary.db.svc.cluster.local,replica.db.svc.cluster.local");
    assert_eq!(routes[1].destinations.total_weight, 100);
}

#[test]
fn tcp_listener_without_a_matching_route_has_none() {
    let mut set = load(&["snapshot/tcp.yaml"]);
    let vs = &mut set.virtual_services[0].spec;
    vs.tcp.retain(|r| r.matches.iter().any(|m| m.source_subnet.is_some()));
    let s = compile(&set, &options(&[])).unwrap();
    let l = s.listener(27017).unwrap();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert!(l.tcp_route(ip("127.0.0.1"), ip("127.0.0.1")).is_none());
    assert!(l.tcp_route(ip("127.0.0.1"), ip("10.0.0.1")).is_some());
}
