//! Routing: the seeds route as their text says, virtual hosts, match blocks, binding, delegation.

use super::*;

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

/// exportTo is read from the gateway's own namespace (`--namespace`), as istiod reads it from
/// the gateway workload's, not from the Gateway resource's (`edge`).
#[test]
fn binding_needs_gateways_and_export() {
    let in_edge = CompileOptions { namespace: "edge".into(), ..options(&[]) };
    let s = compile(&load(&["snapshot/matching.yaml"]), &in_edge).unwrap();
    let t = table(&s, 8080);
    assert_eq!(get(t, "nogw.test", "/"), "no-vhost");
    assert_eq!(get(t, "private.test", "/"), "no-vhost");
    assert_eq!(get(t, "exported.test", "/"), "200");
    assert_eq!(get(t, "local.test", "/"), "200");
    assert_eq!(get(table(&s, 8081), "local.test", "/"), "200");
    // The same Gateway served from another namespace: `exportTo: [edge]` does not reach it.
    let s = build(&["snapshot/matching.yaml"]);
    assert_eq!(get(table(&s, 8080), "exported.test", "/"), "no-vhost");
    assert_eq!(get(table(&s, 8080), "local.test", "/"), "200");
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
