//! Listeners: TLS servers and their sessions across reloads, credentials, TCP routes.

use super::*;

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
