//! The plan on its own: a compiled snapshot, a parsed head, fixed draws; what it wrote and
//! decided, for the cases the integration tests cover end to end.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::*;
use crate::http::codec::{self, HeaderSlots, Limits};
use crate::percore::ConnInfo;
use crate::snapshot::{AbortStatus, CompileOptions};

const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: plan}
spec:
  hosts: [plan.test]
  gateways: [edge]
  http:
  - match: [{uri: {prefix: /direct}}]
    directResponse: {status: 418, body: {string: teapot}}
  - match: [{uri: {prefix: /redirect}}]
    redirect: {uri: /moved, authority: elsewhere.test}
  - match: [{uri: {prefix: /rewrite}}]
    rewrite: {uri: /v2}
    route: [{destination: {host: app.test}}]
  - match: [{uri: {prefix: /headers}}]
    headers:
      request:
        set: {X-Set: a}
        remove: [X-Remove]
    route: [{destination: {host: app.test}}]
  - match: [{uri: {prefix: /cors}}]
    corsPolicy:
      allowOrigins: [{exact: "https://a.test"}]
      allowMethods: [GET, POST]
    route: [{destination: {host: app.test}}]
  - match: [{uri: {prefix: /fault}}]
    fault:
      abort: {httpStatus: 503, percentage: {value: 100}}
    route: [{destination: {host: app.test}}]
  - match: [{uri: {prefix: /grpc-fault}}]
    fault:
      abort: {grpcStatus: RESOURCE_EXHAUSTED, percentage: {value: 100}}
    route: [{destination: {host: app.test}}]
  - match: [{uri: {prefix: /mirror}}]
    mirrors:
    - destination: {host: shadow.test}
      percentage: {value: 100}
    - destination: {host: shadow.test}
      percentage: {value: 0}
    route: [{destination: {host: app.test}}]
  - match: [{uri: {prefix: /hash}}]
    route: [{destination: {host: hashed.test}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: backends}
spec:
  hosts: [app.test, shadow.test, hashed.test]
  resolution: STATIC
  ports:
  - {number: 80, name: http, protocol: HTTP}
  endpoints:
  - {address: 10.0.0.1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: hashed}
spec:
  host: hashed.test
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
"#;

fn snapshot() -> Snapshot {
    snapshot_with("")
}

/// [`CONFIG`] and the documents `more`.
fn snapshot_with(more: &str) -> Snapshot {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path: PathBuf = dir.path().join("plan.yaml");
    std::fs::write(&path, format!("{CONFIG}{more}")).expect("config written");
    let set = crate::config::load(&[path]).unwrap_or_else(|e| panic!("config does not load:\n{e}"));
    crate::snapshot::compile(&set, &CompileOptions::default()).unwrap_or_else(|e| panic!("compile failed:\n{e}"))
}

fn peer() -> Peer {
    let addr = |s: &str| s.parse::<SocketAddr>().expect("address");
    let conn = ConnInfo {
        peer: addr("192.0.2.7:40000"),
        client: addr("192.0.2.7:40000"),
        local: addr("10.1.0.1:8080"),
        listener_port: 8080,
    };
    Peer { conn, ip: "192.0.2.7".into(), tls: None, buckets: Default::default() }
}

/// What the plan decided for one request, its borrows of the snapshot ended.
struct Planned {
    /// The upstream request's head, as written.
    out: String,
    meta: ReqMeta,
    /// A local answer's status and response code details.
    local: Option<(u16, &'static str)>,
    /// A local answer's header lines and body.
    answer: Option<(Vec<(String, String)>, String)>,
    extras: Option<Extras>,
    fault: Injected,
}

/// Plans `request` (a whole head) with every draw 0: a percentage above 0 is drawn.
fn planned(snap: &Snapshot, request: &str) -> Planned {
    let mut slots = HeaderSlots::new();
    let head = match codec::parse_request(request.as_bytes(), &mut slots, &Limits::default()) {
        Ok(Some(head)) => head,
        other => panic!("not a whole head: {other:?}"),
    };
    let mut out = Vec::new();
    let jwt = JwtCore::new(None);
    let inputs = Inputs { mirror_shadow_suffix: false, random: || 0, clock: || 0, jwt: &jwt, worker: 0 };
    let (meta, disposition, fault, ..) = plan(snap, &head, &mut out, &peer(), &inputs, None);
    let (local, answer, extras) = match disposition {
        Disposition::Local { answer, details, .. } => {
            let lines = answer.headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            let body = String::from_utf8(answer.body.to_vec()).expect("utf-8 body");
            (Some((answer.status, details)), Some((lines, body)), None)
        }
        Disposition::Forward { extras, .. } => (None, None, Some(extras)),
    };
    Planned { out: String::from_utf8(out).expect("utf-8 head"), meta, local, answer, extras, fault }
}

impl Planned {
    /// The local answer's value of header `name`, which must be there.
    fn line(&self, name: &str) -> &str {
        let (lines, _) = self.answer.as_ref().expect("a local answer");
        let found = lines.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
        &found.unwrap_or_else(|| panic!("no {name} in {lines:?}")).1
    }
}

fn get(path: &str, lines: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: plan.test\r\n{lines}\r\n")
}

#[test]
fn a_request_no_route_takes_is_answered_404() {
    let snap = snapshot();
    let p = planned(&snap, "GET / HTTP/1.1\r\nhost: other.test\r\n\r\n");
    assert_eq!(p.local, Some((404, NO_ROUTE)));
    assert_eq!(p.answer, Some((Vec::new(), String::new())));
    let p = planned(&snap, &get("/nowhere", ""));
    assert_eq!(p.local, Some((404, NO_ROUTE)));
}

#[test]
fn a_direct_response_is_written_whole() {
    let p = planned(&snapshot(), &get("/direct", ""));
    assert_eq!(p.local, Some((418, DIRECT)));
    assert_eq!(p.answer.expect("a local answer").1, "teapot");
}

#[test]
fn a_redirect_names_the_new_location() {
    let p = planned(&snapshot(), &get("/redirect/x", ""));
    assert_eq!(p.local, Some((301, DIRECT)));
    assert_eq!(p.line("location"), "http://elsewhere.test/moved");
}

#[test]
fn a_rewrite_changes_the_upstream_path() {
    let p = planned(&snapshot(), &get("/rewrite/item?q=1", ""));
    assert_eq!(p.local, None);
    assert!(p.out.starts_with("GET /v2/item?q=1 HTTP/1.1\r\n"), "{}", p.out);
}

#[test]
fn header_edits_reach_the_upstream_head() {
    let p = planned(&snapshot(), &get("/headers", "x-remove: gone\r\nx-keep: kept\r\n"));
    let head = p.out.to_ascii_lowercase();
    assert!(head.contains("\r\nx-set: a\r\n"), "{head}");
    assert!(head.contains("\r\nx-keep: kept\r\n"), "{head}");
    assert!(!head.contains("x-remove"), "{head}");
    // Every forwarded request gets the gateway's own lines.
    assert!(head.contains("\r\nx-forwarded-for: 192.0.2.7\r\n"), "{head}");
    assert!(head.contains("\r\nx-request-id: "), "{head}");
}

#[test]
fn a_cors_preflight_is_answered_here_and_an_allowed_origin_echoed_upstream() {
    let snap = snapshot();
    let preflight = "OPTIONS /cors HTTP/1.1\r\nhost: plan.test\r\norigin: https://a.test\r\n\
                     access-control-request-method: POST\r\n\r\n";
    let p = planned(&snap, preflight);
    assert_eq!(p.local, Some((200, CORS_PREFLIGHT)));
    assert_eq!(p.line("access-control-allow-origin"), "https://a.test");
    assert_eq!(p.line("access-control-allow-methods").to_ascii_lowercase(), "get,post");

    let p = planned(&snap, &get("/cors", "origin: https://a.test\r\n"));
    let extras = p.extras.expect("forwarded");
    assert!(extras.cors.iter().any(|(n, v)| *n == "access-control-allow-origin" && v == "https://a.test"));
}

#[test]
fn a_fault_abort_is_drawn_and_the_upstream_head_still_written() {
    let p = planned(&snapshot(), &get("/fault", ""));
    assert_eq!(p.fault, Injected { delay: None, abort: Some(AbortStatus::Http(503)) });
    assert_eq!(p.local, None);
    let p = planned(&snapshot(), &get("/headers", ""));
    assert_eq!(p.fault, Injected::default());
}

#[test]
fn mirrors_are_drawn_by_their_percentage() {
    let p = planned(&snapshot(), &get("/mirror", ""));
    let mirrors = p.extras.expect("forwarded").mirrors;
    assert_eq!(mirrors.len(), 1, "the 100% mirror only");
    let copy = String::from_utf8_lossy(&mirrors[0].bytes).to_ascii_lowercase();
    assert!(copy.starts_with("get /mirror http/1.1\r\n"), "{copy}");
    assert!(copy.contains("\r\nconnection: close\r\n"), "{copy}");
}

#[test]
fn a_hashing_cluster_takes_its_key_from_the_request() {
    let snap = snapshot();
    let alice = planned(&snap, &get("/hash", "x-user: alice\r\n")).meta.affinity;
    let again = planned(&snap, &get("/hash", "x-user: alice\r\n")).meta.affinity;
    let bob = planned(&snap, &get("/hash", "x-user: bob\r\n")).meta.affinity;
    assert!(alice.is_some());
    assert_eq!(alice, again);
    assert_ne!(alice, bob);
    assert_eq!(planned(&snap, &get("/hash", "")).meta.affinity, None, "no key, no hash");
    assert_eq!(planned(&snap, &get("/rewrite", "x-user: alice\r\n")).meta.affinity, None, "not a hashing cluster");
}

#[test]
fn a_grpc_request_gets_its_local_answers_as_grpc_answers() {
    let snap = snapshot();
    let grpc = "content-type: application/grpc\r\n";
    let p = planned(&snap, &format!("POST /pkg.Svc/Call HTTP/1.1\r\nhost: other.test\r\n{grpc}\r\n"));
    assert!(p.meta.grpc);
    assert_eq!(p.local, Some((200, NO_ROUTE)), "Envoy's local replies to gRPC are 200");
    assert_eq!(p.line("content-type"), "application/grpc");
    assert_eq!(p.line("grpc-status"), "12", "404 maps to UNIMPLEMENTED");
    let p = planned(&snap, &get("/direct", grpc));
    assert_eq!(p.line("grpc-status"), "2", "418 maps to UNKNOWN");
    assert_eq!(p.line("grpc-message"), "teapot");
    assert_eq!(p.answer.as_ref().expect("a local answer").1, "", "trailers-only: no body");
    let p = planned(&snap, &get("/grpc-fault", grpc));
    assert_eq!(p.fault.abort, Some(AbortStatus::Grpc(8)));

    let p = planned(&snap, &get("/direct", "content-type: application/grpc-web\r\n"));
    assert!(!p.meta.grpc, "grpc-web is not gRPC");
    assert_eq!(p.local, Some((418, DIRECT)));
}

#[test]
fn request_ids_are_v4_uuids_as_uuid_writes_them() {
    let draws =
        [(0, 0, 0, 0), (u32::MAX, u32::MAX, u32::MAX, u32::MAX), (0x0123_4567, 0x89ab_cdef, 0xfedc_ba98, 0x7654_3210)];
    for (a, b, c, d) in draws {
        let id = RequestId::new(a, b, c, d);
        let mut bytes = [0u8; 16];
        for (i, w) in [a, b, c, d].into_iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        let want = uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string();
        assert_eq!(id.as_str(), want);
        assert_eq!(uuid::Uuid::parse_str(id.as_str()).unwrap().get_version_num(), 4);
    }
}

/// A RequestAuthentication whose key set (inline, empty) verifies no token.
const JWT: &str = r#"---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  jwtRules:
  - issuer: https://issuer.test
    jwks: '{"keys": []}'
    outputClaimToHeaders: [{header: x-user, claim: sub}]
"#;

#[test]
fn the_jwt_filter_runs_before_routing_and_refuses_a_grpc_request_with_a_grpc_answer() {
    let snap = snapshot_with(JWT);
    let bad = "authorization: Bearer a.b.c\r\n";
    let details = "jwt_authn_access_denied{Jwt_header_is_an_invalid_Base64url_encoded}";
    let p = planned(&snap, &format!("GET /x HTTP/1.1\r\nhost: other.test\r\n{bad}\r\n"));
    assert_eq!(p.local, Some((401, details)), "refused before a route is looked for");
    let p = planned(&snap, &get("/rewrite/x?q=1", &format!("{bad}content-type: application/grpc\r\n")));
    assert_eq!(p.local, Some((200, details)));
    assert_eq!(p.line("grpc-status"), "16", "401 maps to UNAUTHENTICATED");
    assert_eq!(p.line("www-authenticate"), "Bearer realm=\"http://plan.test/rewrite/x\", error=\"invalid_token\"");
    // No token: forwarded with no identity, and the client's own claim header is dropped.
    let p = planned(&snap, &get("/headers", "x-user: mallory\r\n"));
    assert_eq!(p.local, None);
    assert!(!p.out.to_ascii_lowercase().contains("x-user"), "{}", p.out);
    assert!(p.out.to_ascii_lowercase().contains("\r\nx-set: a\r\n"), "the route's edits still apply: {}", p.out);
}
