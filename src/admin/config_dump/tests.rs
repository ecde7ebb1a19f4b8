//! `/config_dump` of a hand-built snapshot.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::snapshot::{Endpoint, HeaderOps, Redirect, RedirectPort, RoutePolicy, ServerTlsMode, VirtualHost};

fn source(index: usize) -> RouteSource {
    RouteSource { file: "routes/web.yaml".into(), document: 2, virtual_service: "shop/web".into(), index }
}

fn destination(host: &str, cluster: Option<u32>, weight: u32) -> Destination {
    Destination { host: host.into(), subset: None, port: 80, cluster, weight, headers: HeaderOps::default() }
}

fn routes() -> Arc<RouteTable> {
    let api = Route {
        name: Some("api".into()),
        source: source(0),
        matches: vec![MatchBlock {
            uri: Some(StringMatcher::Prefix("/api".into())),
            method: Some(StringMatcher::regex("GET|HEAD").unwrap()),
            headers: vec![HeaderMatcher {
                name: "x-env".into(),
                value: ValueMatcher::Value(StringMatcher::Exact("prod".into())),
                invert: false,
            }],
            ..MatchBlock::default()
        }],
        action: RouteAction::Forward(WeightedDestinations {
            destinations: vec![destination("backend.shop.svc", Some(0), 90), destination("missing.shop.svc", None, 10)],
            total_weight: 100,
        }),
        policy: RoutePolicy::default(),
    };
    let old = Route {
        name: None,
        source: source(1),
        matches: vec![MatchBlock { uri: Some(StringMatcher::Exact("/old".into())), ..MatchBlock::default() }],
        action: RouteAction::Redirect(Redirect {
            uri: Some("/new".into()),
            authority: None,
            port: RedirectPort::Unchanged,
            scheme: None,
            code: 301,
        }),
        policy: RoutePolicy::default(),
    };
    let teapot = Route {
        name: None,
        source: source(2),
        matches: vec![],
        action: RouteAction::DirectResponse { status: 418, body: Bytes::from_static(b"short and stout") },
        policy: RoutePolicy::default(),
    };
    let mut vhosts = HostTable::default();
    vhosts.insert(
        "shop.example.com",
        VirtualHost { domain: "shop.example.com".into(), https_redirect: false, routes: vec![api, old, teapot] },
    );
    vhosts
        .insert("*.example.com", VirtualHost { domain: "*.example.com".into(), https_redirect: true, routes: vec![] });
    Arc::new(RouteTable { vhosts })
}

fn server(protocol: &str, routes: Arc<RouteTable>, tls: Option<ServerTls>) -> Server {
    Server {
        gateway: "shop/gw".into(),
        port_name: protocol.to_lowercase().into(),
        protocol: protocol.into(),
        hosts: vec!["*.example.com".into()],
        tls,
        routes,
        tcp_routes: vec![],
        tls_routes: vec![],
    }
}

fn snapshot() -> Snapshot {
    let table = routes();
    let tls = ServerTls {
        mode: ServerTlsMode::Simple,
        cert_chain: Some(Arc::from(&b"CERT"[..])),
        private_key: Some(Arc::from(&b"SECRET-KEY-BYTES"[..])),
        ca_certificates: None,
        ca_crl: None,
        source_files: vec![],
        subject_alt_names: vec![],
        verify_certificate_spki: vec![],
        verify_certificate_hash: vec![],
        min_protocol_version: None,
        max_protocol_version: None,
        cipher_suites: vec![],
        config: None,
        uri_san: None,
    };
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let listeners = vec![
        Listener {
            port: 80,
            bind: any,
            protocol: ListenerProtocol::Http,
            servers: vec![server("HTTP", table.clone(), None)],
            http_routes: table.clone(),
            sni: HostTable::default(),
            l4_authz: None,
        },
        Listener {
            port: 443,
            bind: any,
            protocol: ListenerProtocol::Tls,
            servers: vec![server("HTTPS", table, Some(tls))],
            http_routes: Arc::default(),
            sni: HostTable::default(),
            l4_authz: None,
        },
    ];
    let clusters = vec![Cluster {
        namespace: "shop".into(),
        ..Cluster::test(
            "backend.shop.svc",
            80,
            vec![Endpoint {
                addr: "10.0.0.1:8080".parse().unwrap(),
                weight: 1,
                labels: Arc::new(BTreeMap::from([("version".into(), "v1".into())])),
                locality: None,
            }],
        )
    }];
    Snapshot::new(7, listeners, clusters, vec![])
}

#[test]
fn dumps_listeners_routes_and_clusters() {
    let dump = to_json(&snapshot());
    assert_eq!(dump["generation"], 7);
    let http = &dump["listeners"][0];
    assert_eq!(http["port"], 80);
    assert_eq!(http["bind"], "0.0.0.0");
    assert_eq!(http["protocol"], "HTTP");
    assert_eq!(http["servers"][0]["gateway"], "shop/gw");
    assert!(http["servers"][0].get("virtual_hosts").is_none(), "HTTP servers share the listener's table");

    let vhosts = http["virtual_hosts"].as_array().unwrap();
    assert_eq!(vhosts.len(), 2);
    assert_eq!(vhosts[0]["domain"], "*.example.com", "sorted by domain");
    assert_eq!(vhosts[0]["https_redirect"], true);
    let routes = vhosts[1]["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 3);

    let api = &routes[0];
    assert_eq!(api["name"], "api");
    assert_eq!(
        api["source"],
        json!({"file": "routes/web.yaml", "document": 2, "virtual_service": "shop/web", "index": 0})
    );
    assert_eq!(api["match"][0]["uri"], "prefix:/api");
    assert_eq!(api["match"][0]["method"], "regex:^(?:GET|HEAD)$");
    assert_eq!(api["match"][0]["headers"][0], json!({"name": "x-env", "value": "exact:prod", "invert": false}));
    let forward = &api["action"]["forward"];
    assert_eq!(forward[0]["cluster"], "outbound|80||backend.shop.svc");
    assert_eq!(forward[0]["weight"], 90);
    assert_eq!(forward[1]["cluster"], Value::Null, "a dangling destination has no cluster");
    assert_eq!(api["retries"], 2);

    assert_eq!(routes[1]["action"]["redirect"]["uri"], "/new");
    assert_eq!(routes[1]["action"]["redirect"]["code"], 301);
    assert_eq!(routes[2]["match"], json!([]));
    assert_eq!(routes[2]["action"]["direct_response"]["status"], 418);

    let cluster = &dump["clusters"][0];
    assert_eq!(cluster["name"], "outbound|80||backend.shop.svc");
    assert_eq!(cluster["endpoints"][0]["address"], "10.0.0.1:8080");
    assert_eq!(cluster["endpoints"][0]["labels"]["version"], "v1");
    assert_eq!(cluster["policy"]["connect_timeout_ms"], 10_000);
}

#[test]
fn tls_servers_carry_their_own_routes_but_never_key_bytes() {
    let dump = to_json(&snapshot());
    let https = &dump["listeners"][1];
    assert_eq!(https["protocol"], "TLS");
    assert!(https.get("virtual_hosts").is_none());
    let server = &https["servers"][0];
    assert_eq!(server["virtual_hosts"].as_array().unwrap().len(), 2);
    assert_eq!(server["tls"]["mode"], "Simple");
    assert_eq!(server["tls"]["private_key"], "[redacted]");
    assert_eq!(server["tls"]["cert_chain_bytes"], 4);
    let text = dump.to_string();
    assert!(!text.contains("SECRET-KEY-BYTES"), "{text}");
}

#[test]
fn dumps_are_stable() {
    let s = snapshot();
    assert_eq!(to_json(&s).to_string(), to_json(&s).to_string());
}
