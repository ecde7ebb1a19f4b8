//! The compiled policies decide as Envoy's RBAC filters do under istiod: order, every key and its `not`
//! form, the layer-4 rules of HTTP-only fields, what is compiled away.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::*;
use crate::config::{AuthorizationPolicy, ObjectMeta, Origin, Resource};

fn policy(name: &str, yaml: &str) -> Resource<AuthorizationPolicy> {
    Resource {
        meta: ObjectMeta { name: Some(name.into()), namespace: Some("istio-system".into()), ..Default::default() },
        spec: serde_yaml::from_str(yaml).unwrap(),
        origin: Origin {
            file: Arc::from(Path::new("p.yaml")),
            document: 1,
            line: 1,
            source: Arc::from(""),
            source_line: 1,
            item: None,
        },
        api_version: "security.istio.io/v1".into(),
    }
}

fn authz(layer: Layer, policies: &[(&str, &str)]) -> Authz {
    let resources: Vec<_> = policies.iter().map(|(n, y)| policy(n, y)).collect();
    let refs: Vec<_> = resources.iter().collect();
    compile(&refs, Scope { port: 8080, layer }, &[])
}

/// A request to `host` with `method` and `path` from 10.0.0.1.
struct Req {
    host: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static [u8])>,
    peer: &'static str,
    /// `numTrustedProxies`.
    trusted_hops: u32,
    port: u16,
    sni: Option<&'static str>,
    peer_uri: Option<&'static str>,
    jwt: Option<Map<String, Value>>,
    http: bool,
}

impl Default for Req {
    fn default() -> Self {
        Req {
            host: "example.com",
            method: "GET",
            path: "/",
            headers: Vec::new(),
            peer: "10.0.0.1",
            trusted_hops: 0,
            port: 8080,
            sni: None,
            peer_uri: None,
            jwt: None,
            http: true,
        }
    }
}

fn decide(a: &Authz, r: &Req) -> bool {
    let headers: Vec<httparse::Header> =
        r.headers.iter().map(|(n, v)| httparse::Header { name: n, value: v }).collect();
    let peer: IpAddr = r.peer.parse().unwrap();
    let req = Request {
        http: r.http.then_some(HttpRequest { host: r.host, method: r.method, path: r.path, headers: &headers }),
        port: r.port,
        local: "127.0.0.1".parse().unwrap(),
        peer,
        remote: remote_ip(peer, &headers, r.trusted_hops),
        sni: r.sni,
        peer_uri: r.peer_uri,
        jwt: r.jwt.as_ref(),
    };
    a.decide(&req).decision == Decision::Allow
}

#[test]
fn no_policy_allows_an_allow_nothing_policy_denies_and_an_empty_rule_allows() {
    assert!(decide(&authz(Layer::Http, &[]), &Req::default()));
    let nothing = authz(Layer::Http, &[("allow-nothing", "{}")]);
    assert!(!decide(&nothing, &Req::default()));
    let all = authz(Layer::Http, &[("allow-nothing", "{}"), ("allow-all", "rules: [{}]")]);
    assert!(decide(&all, &Req::default()));
    let deny_all = authz(Layer::Http, &[("allow-all", "rules: [{}]"), ("deny", "action: DENY\nrules: [{}]")]);
    assert_eq!(
        deny_all
            .decide(&Request {
                http: None,
                port: 8080,
                local: "127.0.0.1".parse().unwrap(),
                peer: "10.0.0.1".parse().unwrap(),
                remote: "10.0.0.1".parse().unwrap(),
                sni: None,
                peer_uri: None,
                jwt: None,
            })
            .decision,
        Decision::Deny(Some("ns[istio-system]-policy[deny]-rule[0]"))
    );
}

#[test]
fn deny_wins_over_allow_and_audit_decides_nothing() {
    let a = authz(
        Layer::Http,
        &[
            ("allow", "rules: [{to: [{operation: {paths: [\"/api/*\"]}}]}]"),
            ("deny", "action: DENY\nrules: [{to: [{operation: {paths: [\"/api/admin\"]}}]}]"),
            ("audit", "action: AUDIT\nrules: [{}]"),
        ],
    );
    assert!(decide(&a, &Req { path: "/api/users", ..Req::default() }));
    assert!(!decide(&a, &Req { path: "/api/admin", ..Req::default() }));
    assert!(!decide(&a, &Req { path: "/other", ..Req::default() }));
    let audit_only = authz(Layer::Http, &[("audit", "action: AUDIT\nrules: [{}]")]);
    assert!(decide(&audit_only, &Req::default()));
}

#[test]
fn paths_exact_prefix_suffix_presence_and_templates() {
    let allow =
        |paths: &str| authz(Layer::Http, &[("p", &format!("rules: [{{to: [{{operation: {{paths: {paths}}}}}]}}]"))]);
    let exact = allow("[/a]");
    assert!(decide(&exact, &Req { path: "/a", ..Req::default() }));
    assert!(!decide(&exact, &Req { path: "/a/", ..Req::default() }));
    let suffix = allow("[\"*.html\"]");
    assert!(decide(&suffix, &Req { path: "/x/y.html", ..Req::default() }));
    assert!(!decide(&suffix, &Req { path: "/x/y.htm", ..Req::default() }));
    let any = allow("[\"*\"]");
    assert!(decide(&any, &Req { path: "/anything", ..Req::default() }));
    let one = allow("[\"/users/{*}/profile\"]");
    assert!(decide(&one, &Req { path: "/users/ann/profile", ..Req::default() }));
    assert!(!decide(&one, &Req { path: "/users/ann/bob/profile", ..Req::default() }));
    assert!(!decide(&one, &Req { path: "/users//profile", ..Req::default() }));
    let many = allow("[\"/files/{**}\"]");
    assert!(decide(&many, &Req { path: "/files/a/b/c.txt", ..Req::default() }));
    assert!(!decide(&many, &Req { path: "/filesystem", ..Req::default() }));
    let ext = allow("[\"/{**}.m3u8\"]");
    assert!(decide(&ext, &Req { path: "/a/b/index.m3u8", ..Req::default() }));
    assert!(!decide(&ext, &Req { path: "/a/b/index.mp4", ..Req::default() }));
}

#[test]
fn not_forms_exclude() {
    let a =
        authz(Layer::Http, &[("p", "rules: [{to: [{operation: {notPaths: [\"/private*\"], notMethods: [DELETE]}}]}]")]);
    assert!(decide(&a, &Req { path: "/public", ..Req::default() }));
    assert!(!decide(&a, &Req { path: "/private/x", ..Req::default() }));
    assert!(!decide(&a, &Req { method: "DELETE", ..Req::default() }));
}

#[test]
fn hosts_are_case_insensitive_and_a_port_sent_is_part_of_the_host() {
    let a = authz(
        Layer::Http,
        &[("p", "rules: [{to: [{operation: {hosts: [example.com, \"api.example.com:8080\", \"*.wild.io\"]}}]}]")],
    );
    assert!(decide(&a, &Req { host: "EXAMPLE.com", ..Req::default() }));
    assert!(!decide(&a, &Req { host: "example.com:8080", ..Req::default() }));
    assert!(decide(&a, &Req { host: "API.example.com:8080", ..Req::default() }));
    assert!(!decide(&a, &Req { host: "api.example.com", ..Req::default() }));
    assert!(decide(&a, &Req { host: "X.Wild.IO", ..Req::default() }));
    assert!(!decide(&a, &Req { host: "other.org", ..Req::default() }));
}

#[test]
fn methods_ports_and_the_port_compiled_away() {
    let a = authz(
        Layer::Http,
        &[
            ("get", "rules: [{to: [{operation: {methods: [GET], ports: [\"8080\"]}}]}]"),
            ("other-port", "rules: [{to: [{operation: {ports: [\"9090\"]}}]}]"),
            ("deny-other-port", "action: DENY\nrules: [{to: [{operation: {ports: [\"9090\"]}}]}]"),
        ],
    );
    // The policies of port 9090 cost nothing on 8080: their rules are gone.
    assert_eq!(a.allow.len(), 1);
    assert!(a.deny.is_empty());
    assert!(a.allow[0].rules[0].permissions[0].iter().all(|c| c.attribute != Attribute::Port));
    assert!(decide(&a, &Req::default()));
    assert!(!decide(&a, &Req { method: "POST", ..Req::default() }));
}

#[test]
fn ip_blocks_and_their_not_forms() {
    let a = authz(
        Layer::Http,
        &[("p", "rules: [{from: [{source: {ipBlocks: [10.0.0.0/8, 192.168.1.7], notIpBlocks: [10.9.0.0/16]}}]}]")],
    );
    assert!(decide(&a, &Req { peer: "10.1.2.3", ..Req::default() }));
    assert!(decide(&a, &Req { peer: "192.168.1.7", ..Req::default() }));
    assert!(decide(&a, &Req { peer: "::ffff:10.1.2.3", ..Req::default() }));
    assert!(!decide(&a, &Req { peer: "10.9.1.1", ..Req::default() }));
    assert!(!decide(&a, &Req { peer: "172.16.0.1", ..Req::default() }));
    let remote =
        authz(Layer::Http, &[("p", "action: DENY\nrules: [{from: [{source: {remoteIpBlocks: [10.0.0.1]}}]}]")]);
    assert!(!decide(&remote, &Req::default()));
    assert!(decide(&remote, &Req { peer: "10.0.0.2", ..Req::default() }));
    // Behind one trusted proxy the client is the last address of `x-forwarded-for`; the peer's
    // own `ipBlocks` are unchanged.
    let xff = |v: &'static [u8], trusted_hops| Req {
        peer: "10.0.0.2",
        headers: vec![("X-Forwarded-For", v)],
        trusted_hops,
        ..Req::default()
    };
    assert!(!decide(&remote, &xff(b"10.0.0.1", 1)));
    assert!(decide(&remote, &xff(b"10.0.0.1", 0)), "untrusted: the peer is the client");
}

#[test]
fn the_client_is_the_nth_address_from_the_right_of_x_forwarded_for() {
    let peer: IpAddr = "192.0.2.5".parse().unwrap();
    let ip = |lines: &[&'static [u8]], hops| {
        let headers: Vec<_> = lines.iter().map(|v| httparse::Header { name: "x-forwarded-for", value: v }).collect();
        remote_ip(peer, &headers, hops).to_string()
    };
    let chain: &[&[u8]] = &[b"203.0.113.128, 203.0.113.10,203.0.113.1"];
    assert_eq!(ip(chain, 0), "192.0.2.5");
    assert_eq!(ip(chain, 1), "203.0.113.1");
    assert_eq!(ip(chain, 2), "203.0.113.10");
    assert_eq!(ip(chain, 3), "203.0.113.128");
    assert_eq!(ip(chain, 4), "192.0.2.5", "too few addresses: the peer");
    // Lines join in order, as Envoy's header map joins them.
    assert_eq!(ip(&[b"1.1.1.1", b"2.2.2.2, 3.3.3.3"], 3), "1.1.1.1");
    assert_eq!(ip(&[b" 2001:db8::1 "], 1), "2001:db8::1");
    assert_eq!(ip(&[b"not-an-ip"], 1), "192.0.2.5");
    assert_eq!(ip(&[b""], 1), "192.0.2.5");
    assert_eq!(ip(&[], 1), "192.0.2.5");
}

#[test]
fn principals_namespaces_and_service_accounts_read_the_spiffe_id() {
    let a = authz(
        Layer::Http,
        &[("p", "rules: [{from: [{source: {principals: [\"cluster.local/ns/shop/sa/web\"]}}, {source: {namespaces: [\"pay*\"]}}]}]")],
    );
    let id = |uri: &'static str| Req { peer_uri: Some(uri), ..Req::default() };
    assert!(decide(&a, &id("spiffe://cluster.local/ns/shop/sa/web")));
    assert!(!decide(&a, &id("spiffe://cluster.local/ns/shop/sa/admin")));
    assert!(decide(&a, &id("spiffe://cluster.local/ns/payments/sa/any")));
    assert!(!decide(&a, &Req::default()));
    let any = authz(Layer::Http, &[("p", "rules: [{from: [{source: {principals: [\"*\"]}}]}]")]);
    assert!(decide(&any, &id("spiffe://td/ns/a/sa/b")));
    assert!(!decide(&any, &Req::default()));
    let not = authz(Layer::Http, &[("p", "action: DENY\nrules: [{from: [{source: {notPrincipals: [\"*\"]}}]}]")]);
    assert!(!decide(&not, &Req::default()));
    let sa = authz(Layer::Http, &[("p", "rules: [{from: [{source: {serviceAccounts: [web, \"other/api\"]}}]}]")]);
    assert!(decide(&sa, &id("spiffe://cluster.local/ns/istio-system/sa/web")));
    assert!(decide(&sa, &id("spiffe://cluster.local/ns/other/sa/api")));
    assert!(!decide(&sa, &id("spiffe://cluster.local/ns/other/sa/web")));
    assert!(!decide(&sa, &id("spiffe://cluster.local/ns/istio-system/sa/web-x")));
}

fn payload(v: Value) -> Option<Map<String, Value>> {
    v.as_object().cloned()
}

#[test]
fn request_principals_and_auth_claims_read_the_verified_payload() {
    let token = payload(json!({
        "iss": "https://issuer.example/", "sub": "alice", "aud": ["web", "api"], "azp": "spa",
        "groups": ["admins", "dev"], "org": {"team": {"name": "core"}}, "level": 3
    }));
    let with = |jwt: &Option<Map<String, Value>>| Req { jwt: jwt.clone(), ..Req::default() };
    let rp = authz(
        Layer::Http,
        &[("p", "rules: [{from: [{source: {requestPrincipals: [\"https://issuer.example//alice\"]}}]}]")],
    );
    assert!(decide(&rp, &with(&token)));
    assert!(!decide(&rp, &Req::default()));
    let any = authz(Layer::Http, &[("p", "rules: [{from: [{source: {requestPrincipals: [\"*\"]}}]}]")]);
    assert!(decide(&any, &with(&token)));
    assert!(!decide(&any, &Req::default()));
    let iss_any_sub = authz(
        Layer::Http,
        &[("p", "rules: [{from: [{source: {requestPrincipals: [\"https://issuer.example//*\"]}}]}]")],
    );
    assert!(decide(&iss_any_sub, &with(&token)));
    let when = |key: &str, values: &str| {
        authz(Layer::Http, &[("p", &format!("rules: [{{when: [{{key: \"{key}\", values: {values}}}]}}]"))])
    };
    assert!(decide(&when("request.auth.principal", "[\"https://issuer.example//alice\"]"), &with(&token)));
    assert!(decide(&when("request.auth.audiences", "[api]"), &with(&token)));
    assert!(!decide(&when("request.auth.audiences", "[other]"), &with(&token)));
    assert!(decide(&when("request.auth.presenter", "[spa]"), &with(&token)));
    assert!(decide(&when("request.auth.claims[groups]", "[admins]"), &with(&token)));
    assert!(decide(&when("request.auth.claims[org][team][name]", "[core]"), &with(&token)));
    assert!(!decide(&when("request.auth.claims[org][team][name]", "[edge]"), &with(&token)));
    assert!(!decide(&when("request.auth.claims[level]", "[\"3\"]"), &with(&token)));
    assert!(!decide(&when("request.auth.claims[groups]", "[admins]"), &Req::default()));
    let single_aud = payload(json!({"iss": "i", "sub": "s", "aud": "api"}));
    assert!(decide(&when("request.auth.audiences", "[api]"), &with(&single_aud)));
}

#[test]
fn when_headers_sni_and_addresses() {
    let when = |key: &str, values: &str| {
        authz(Layer::Http, &[("p", &format!("rules: [{{when: [{{key: \"{key}\", values: {values}}}]}}]"))])
    };
    let header = when("request.headers[x-tenant]", "[\"blue*\"]");
    assert!(decide(&header, &Req { headers: vec![("X-Tenant", b"blue-1")], ..Req::default() }));
    assert!(!decide(&header, &Req { headers: vec![("x-tenant", b"red")], ..Req::default() }));
    assert!(!decide(&header, &Req::default()));
    let repeated = when("request.headers[x-a]", "[\"1,2\"]");
    assert!(decide(&repeated, &Req { headers: vec![("x-a", b"1"), ("x-a", b"2")], ..Req::default() }));
    let present = when("request.headers[x-a]", "[\"*\"]");
    assert!(decide(&present, &Req { headers: vec![("x-a", b"")], ..Req::default() }));
    let sni = when("connection.sni", "[\"*.example.com\"]");
    assert!(decide(&sni, &Req { sni: Some("www.example.com"), ..Req::default() }));
    assert!(!decide(&sni, &Req::default()));
    assert!(decide(&when("source.ip", "[10.0.0.0/24]"), &Req::default()));
    assert!(decide(&when("remote.ip", "[10.0.0.1]"), &Req::default()));
    assert!(decide(&when("destination.ip", "[127.0.0.1]"), &Req::default()));
    assert!(decide(&when("destination.port", "[\"8080\"]"), &Req::default()));
    assert!(!decide(&when("destination.port", "[\"9090\"]"), &Req::default()));
}

#[test]
fn on_tcp_an_allow_rule_with_http_fields_is_dropped_and_a_deny_ignores_them() {
    let allow = authz(
        Layer::Tcp,
        &[
            ("paths", "rules: [{to: [{operation: {paths: [/a]}}]}]"),
            ("ips", "rules: [{from: [{source: {ipBlocks: [10.0.0.0/8]}}]}]"),
        ],
    );
    assert_eq!(allow.allow.len(), 1);
    let tcp = |peer: &'static str| Req { http: false, peer, ..Req::default() };
    assert!(decide(&allow, &tcp("10.0.0.5")));
    assert!(!decide(&allow, &tcp("11.0.0.5")));
    let deny = authz(
        Layer::Tcp,
        &[(
            "d",
            "action: DENY\nrules: [{from: [{source: {ipBlocks: [10.0.0.0/8]}}], to: [{operation: {methods: [POST]}}]}]",
        )],
    );
    // The method is ignored: the DENY covers every connection from 10/8.
    assert!(!decide(&deny, &tcp("10.0.0.5")));
    assert!(decide(&deny, &tcp("11.0.0.5")));
}

#[test]
fn a_deny_names_the_rule_envoys_sorted_policies_find_first_and_every_filter_counts() {
    let resources = [
        // Rule 0 is for another port: compiled away, yet rule 1 keeps its index.
        policy(
            "b",
            "action: DENY\nrules: [{to: [{operation: {ports: [\"9\"]}}]}, {to: [{operation: {methods: [GET]}}]}]",
        ),
        policy("a", "action: DENY\nrules: [{to: [{operation: {paths: [/x]}}]}, {to: [{operation: {methods: [GET]}}]}]"),
        policy("log", "action: AUDIT\nrules: [{to: [{operation: {paths: [/x]}}]}]"),
        policy("allow", "rules: [{to: [{operation: {methods: [POST]}}]}]"),
    ];
    let refs: Vec<_> = resources.iter().collect();
    let a = compile(&refs, Scope { port: 8080, layer: Layer::Http }, &[]);
    let names: Vec<&str> = a.deny.iter().map(|p| &*p.rules[0].name).collect();
    assert_eq!(
        names,
        [
            "ns[istio-system]-policy[a]-rule[0]",
            "ns[istio-system]-policy[a]-rule[1]",
            "ns[istio-system]-policy[b]-rule[1]"
        ]
    );
    let verdict = |method: &str, path: &str| {
        let http = HttpRequest { host: "h", method, path, headers: &[] };
        let ip = "10.0.0.1".parse().unwrap();
        let req = Request {
            http: Some(http),
            port: 8080,
            local: ip,
            peer: ip,
            remote: ip,
            sni: None,
            peer_uri: None,
            jwt: None,
        };
        let v = a.decide(&req);
        (v.decision, v.audit, v.passed)
    };
    // Both of `a`'s rules and `b`'s match GET /x: the name that sorts first is logged; the
    // AUDIT filter marked it and let it pass.
    assert_eq!(verdict("GET", "/x"), (Decision::Deny(Some("ns[istio-system]-policy[a]-rule[0]")), Some(true), 1));
    assert_eq!(verdict("GET", "/y"), (Decision::Deny(Some("ns[istio-system]-policy[a]-rule[1]")), Some(false), 1));
    // AUDIT and DENY pass it, ALLOW has no match.
    assert_eq!(verdict("PUT", "/y"), (Decision::Deny(None), Some(false), 2));
    assert_eq!(verdict("POST", "/y"), (Decision::Allow, Some(false), 3));
}

#[test]
fn on_tcp_a_custom_policy_naming_a_missing_provider_is_a_deny_named_as_istiod_names_it() {
    let a = authz(
        Layer::Tcp,
        &[("ghost", "action: CUSTOM\nprovider: {name: nope}\nrules: [{from: [{source: {ipBlocks: [10.0.0.0/8]}}]}]")],
    );
    assert!(a.custom.is_empty());
    let names: Vec<&str> = a.deny.iter().map(|p| &*p.rules[0].name).collect();
    assert_eq!(names, ["istio-ext-authz-nope-ns[istio-system]-policy[ghost]-rule[0]-deny-due-to-bad-CUSTOM-action"]);
    let tcp = |peer: &'static str| Req { http: false, peer, ..Req::default() };
    assert!(!decide(&a, &tcp("10.0.0.5")));
    assert!(decide(&a, &tcp("11.0.0.5")));
}
