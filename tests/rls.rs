//! Envoy's rate limit service filter and route `rate_limits` end to end, on both drivers: the
//! EnvoyFilters of Istio's "Enabling Rate Limits using Envoy" task (global part: the
//! `envoy.filters.http.ratelimit` insert naming `outbound|8081||ratelimit.default.svc.cluster.local`,
//! reached through a ServiceEntry, and the virtual host's `:path` action) against a rate limit
//! service the test starts (tests/grpc_py/ratelimit.py, envoy.service.ratelimit.v3 on grpcio;
//! needs `python3` with `grpcio`, as tests/grpc_python.rs): the quota it answers holds, the
//! descriptors it receives are those Envoy's actions write, a service that is down fails open
//! or, with `failure_mode_deny`, answers 500; and the task's local part: `descriptors` of the
//! local rate limit take their own bucket per path.

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::backend::Backend;
use support::client::{self, statuses};
use support::config::{docs, http_gateway, service_entry, virtual_service};
use support::{free_port, metric, wait_until, Driver, Gateway};

/// The rate limit service's host and port, as the task deploys it.
const RLS_HOST: &str = "ratelimit.default.svc.cluster.local";
const RLS_CLUSTER: &str = "outbound|8081||ratelimit.default.svc.cluster.local";

/// tests/grpc_py/ratelimit.py with `quotas` (see its header): every request it got, as JSON.
struct RateLimitService {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    seen: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl RateLimitService {
    fn start(quotas: &[&str]) -> RateLimitService {
        let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_py/ratelimit.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(quotas)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("ratelimit.py printed nothing (python3 with grpcio is needed)").unwrap();
        let port = first.strip_prefix("port ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{first}"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        RateLimitService { child, _stdin: stdin, port, seen }
    }

    /// The descriptors of each of the first `n` requests, as `[[key, value], ...]` lists.
    fn descriptors(&self, n: usize) -> Vec<serde_json::Value> {
        self.requests(n).iter().map(|r| r["descriptors"].clone()).collect()
    }

    /// The first `n` requests, once their lines are read (the service prints each before it
    /// answers, but the reading thread may not have taken it yet).
    fn requests(&self, n: usize) -> Vec<serde_json::Value> {
        let seen = || self.seen.lock().unwrap().clone();
        wait_until(Duration::from_secs(5), || seen().len() >= n).unwrap_or_else(|| panic!("{:?}", seen()));
        seen()[..n].to_vec()
    }
}

impl Drop for RateLimitService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `app.test`'s routes: `api` on a prefix, `rest` for the others, both to `app.local`.
const HTTP: &str = "  - name: api
    match:
    - uri:
        prefix: /api
    route:
    - destination:
        host: app.local
  - name: rest
    route:
    - destination:
        host: app.local
";

/// The task's `filter-ratelimit` EnvoyFilter, `failure_mode_deny` as given.
fn rls_filter(failure_mode_deny: bool) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-ratelimit
  namespace: istio-system
spec:
  workloadSelector:
    # select by label in the same namespace
    labels:
      istio: ingressgateway
  configPatches:
    # The Envoy config you want to modify
    - applyTo: HTTP_FILTER
      match:
        context: GATEWAY
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
              subFilter:
                name: "envoy.filters.http.router"
      patch:
        operation: INSERT_BEFORE
        # Adds the Envoy Rate Limit Filter in HTTP filter chain.
        value:
          name: envoy.filters.http.ratelimit
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
            # domain can be anything! Match it to the ratelimter service config
            domain: ratelimit
            failure_mode_deny: {failure_mode_deny}
            timeout: 10s
            rate_limit_service:
              grpc_service:
                envoy_grpc:
                  cluster_name: {RLS_CLUSTER}
                  authority: {RLS_HOST}
              transport_api_version: V3
"#
    )
}

/// The task's `filter-ratelimit-svc` EnvoyFilter: every virtual host's requests described by
/// their `:path`.
const RLS_ACTIONS: &str = r#"apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-ratelimit-svc
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  configPatches:
    - applyTo: VIRTUAL_HOST
      match:
        context: GATEWAY
        routeConfiguration:
          vhost:
            name: ""
            route:
              action: ANY
      patch:
        operation: MERGE
        # Applies the rate limit rules.
        value:
          rate_limits:
            - actions: # any actions in here
              - request_headers:
                  header_name: ":path"
                  descriptor_key: "PATH"
"#;

/// The gateway for `app.test` with `extra` documents, the rate limit service's ServiceEntry
/// pointing at `rls_port`; its address.
fn start(driver: Driver, app: &Backend, rls_port: u16, extra: &[String]) -> (Gateway, SocketAddr) {
    let port = free_port();
    let rls = service_entry("ratelimit", RLS_HOST, 8081, &[rls_port]).replace("protocol: HTTP", "protocol: GRPC");
    let mut all = vec![
        http_gateway("gw", port, &["app.test"]),
        virtual_service("app", "gw", &["app.test"], HTTP),
        service_entry("app", "app.local", 80, &[app.port()]),
        rls,
    ];
    all.extend(extra.iter().cloned());
    let gw = gateway!(driver).workers(2).arg("--access-log").file("gw.yaml", &docs(&all)).start();
    (gw, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn get(addr: SocketAddr, path: &str) -> client::Response {
    client::get(addr, "app.test", path)
}

fn stat(gw: &Gateway, name: &str) -> f64 {
    let (_, body) = gw.admin_get("/stats/prometheus");
    let full = format!("{name}{{envoy_cluster_name=\"{RLS_CLUSTER}\"}}");
    metric(&body, &full).unwrap_or_else(|| panic!("no {full} in:\n{body}"))
}

fn h2(addr: SocketAddr, path: &str) -> String {
    let url = format!("http://{addr}{path}");
    let args = ["-sS", "-m", "20", "--http2-prior-knowledge", "-H", "host: app.test", "-w", "|%{http_code}", &url];
    let out = Command::new("curl").args(args).output().expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    free_port()
}

both_drivers! {
    fn istios_global_rate_limit_limits_as_the_service_answers(driver) {
        let app = Backend::start("app");
        // The task's ratelimit config: `/productpage` once a minute, any other path 100 times.
        let rls = RateLimitService::start(&["PATH=/productpage:1", "PATH:100"]);
        let (gw, addr) = start(driver, &app, rls.port, &[rls_filter(true), RLS_ACTIONS.to_string()]);

        let first = get(addr, "/productpage");
        assert_eq!(first.status, 200, "{}", gw.logs());
        assert_eq!(app.last().header("x-ratelimit-checked"), Some("ok"), "the service's request_headers_to_add go upstream");
        let limited = get(addr, "/productpage");
        assert_eq!((limited.status, limited.body_text().as_str()), (429, "over quota"));
        assert_eq!(limited.header("x-envoy-ratelimited"), Some("true"));
        assert_eq!(limited.header("x-ratelimit-limit"), Some("1"), "the service's response_headers_to_add");
        assert_eq!(h2(addr, "/productpage"), "over quota|429", "HTTP/2 requests meet the same filter");
        assert_eq!(statuses(addr, "app.test", "/api/v1/products?x=1", 3), [200, 200, 200]);
        assert_eq!(app.count(), 4, "a limited request never reaches the backend");

        let expected: Vec<serde_json::Value> = ["/productpage", "/productpage", "/productpage", "/api/v1/products?x=1"]
            .iter()
            .map(|p| serde_json::json!([[["PATH", p]]]))
            .collect();
        assert_eq!(rls.descriptors(4), expected, "Envoy's `:path` is the path with its query");
        assert_eq!(rls.requests(1)[0]["domain"], "ratelimit");
        assert_eq!(stat(&gw, "envoy_cluster_ratelimit_ok"), 4.0);
        assert_eq!(stat(&gw, "envoy_cluster_ratelimit_over_limit"), 2.0);
        assert_eq!(stat(&gw, "envoy_cluster_ratelimit_error"), 0.0);
        let lines = || gw.stdout().lines().map(str::to_string).collect::<Vec<_>>();
        assert!(wait_until(Duration::from_secs(5), || lines().len() >= 6).is_some(), "{:?}", lines());
        let line = lines().into_iter().find(|l| l.contains("\" 429 ")).unwrap();
        assert!(line.contains("\" 429 RL request_rate_limited "), "{line}");
    }

    fn the_service_receives_the_descriptors_envoys_actions_write(driver) {
        let app = Backend::start("app");
        let rls = RateLimitService::start(&[]);
        // An HTTP_ROUTE patch on the `api` route: its actions replace the virtual host's there.
        let route = r#"apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: api-actions
  namespace: istio-system
spec:
  configPatches:
    - applyTo: HTTP_ROUTE
      match:
        context: GATEWAY
        routeConfiguration:
          vhost:
            route:
              name: api
      patch:
        operation: MERGE
        value:
          rate_limits:
            - actions:
              - generic_key: {descriptor_value: api}
              - remote_address: {}
              - request_headers: {header_name: x-user, descriptor_key: user, skip_if_absent: true}
            - actions:
              - destination_cluster: {}
              - source_cluster: {}
            - actions:
              - header_value_match:
                  descriptor_value: gold
                  headers: [{name: x-tier, string_match: {exact: gold}}]
            - actions:
              - request_headers: {header_name: x-user, descriptor_key: user}
              - query_parameters: {query_parameter_name: key, descriptor_key: api_key}
"#;
        let (_gw, addr) = start(driver, &app, rls.port, &[rls_filter(false), RLS_ACTIONS.to_string(), route.to_string()]);
        assert_eq!(get(addr, "/api/x").status, 200);
        let raw = "GET /api/y?key=k1 HTTP/1.1\r\nHost: app.test\r\nx-user: alice\r\nx-tier: gold\r\nConnection: close\r\n\r\n";
        assert_eq!(client::request(addr, raw).status, 200);
        assert_eq!(get(addr, "/other").status, 200);
        let cluster = serde_json::json!(["destination_cluster", "outbound|80||app.local"]);
        let source = serde_json::json!(["source_cluster", "istio-ingressgateway.default"]);
        let expected = serde_json::json!([
            // The gateway's node cluster is WORKLOAD.NAMESPACE (`--namespace`, default here).
            // No x-user: skipped from the first, the last dropped; no x-tier: no match.
            [
                [["generic_key", "api"], ["remote_address", "127.0.0.1"]],
                [cluster, source],
            ],
            [
                [["generic_key", "api"], ["remote_address", "127.0.0.1"], ["user", "alice"]],
                [cluster, source],
                [["header_match", "gold"]],
                [["user", "alice"], ["api_key", "k1"]],
            ],
            // The virtual host's action on the other route.
            [[["PATH", "/other"]]],
        ]);
        assert_eq!(serde_json::Value::Array(rls.descriptors(3)), expected);
        assert_eq!(rls.requests(3)[1]["hits_addend"], 1);
    }

    fn a_service_that_is_down_fails_open_unless_failure_mode_deny(driver) {
        let app = Backend::start("app");
        let down = closed_port();
        let (gw, addr) = start(driver, &app, down, &[rls_filter(false), RLS_ACTIONS.to_string()]);
        assert_eq!(statuses(addr, "app.test", "/productpage", 2), [200, 200], "{}", gw.logs());
        assert_eq!(stat(&gw, "envoy_cluster_ratelimit_error"), 2.0);
        assert_eq!(stat(&gw, "envoy_cluster_ratelimit_failure_mode_allowed"), 2.0);
        drop(gw);

        let (gw, addr) = start(driver, &app, down, &[rls_filter(true), RLS_ACTIONS.to_string()]);
        let denied = get(addr, "/productpage");
        assert_eq!(denied.status, 500, "{}", gw.logs());
        assert_eq!(h2(addr, "/productpage"), "|500");
        assert_eq!(stat(&gw, "envoy_cluster_ratelimit_error"), 2.0);
        assert_eq!(stat(&gw, "envoy_cluster_ratelimit_failure_mode_allowed"), 0.0);
        assert_eq!(app.count(), 2, "only the fail-open requests reached the backend");
        let lines = || gw.stdout().lines().map(str::to_string).collect::<Vec<_>>();
        assert!(wait_until(Duration::from_secs(5), || !lines().is_empty()).is_some());
        assert!(lines()[0].contains("\" 500 RLSE rate_limiter_error "), "{:?}", lines());
    }

    fn local_descriptors_take_their_own_bucket_per_path(driver) {
        let app = Backend::start("app");
        let (_gw, addr) = start(driver, &app, closed_port(), &[LOCAL.to_string()]);
        // `/productpage` has 2 of its own (taking the route's too); the route has 4.
        assert_eq!(statuses(addr, "app.test", "/productpage", 3), [200, 200, 429]);
        assert_eq!(statuses(addr, "app.test", "/reviews", 3), [200, 200, 429], "the descriptor's admitted requests took the route's tokens");
        let limited = get(addr, "/productpage");
        assert_eq!((limited.status, limited.body_text().as_str()), (429, "local_rate_limited"));
        // `/api` is another route, with a bucket of its own.
        assert_eq!(statuses(addr, "app.test", "/api/productpage", 5), [200, 200, 200, 200, 429]);
    }
}

/// The task's local rate limit with descriptors, for a gateway: the filter inserted, and each
/// route's config, with `:path` written as `path`, `/productpage` limited to 2 a minute and
/// every other request of the route to 4.
const LOCAL: &str = r#"apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-local-ratelimit-svc
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: GATEWAY
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: http_local_rate_limiter
    - applyTo: HTTP_ROUTE
      match:
        context: GATEWAY
        routeConfiguration:
          vhost:
            name: ""
            route:
              action: ANY
      patch:
        operation: MERGE
        value:
          rate_limits:
            - actions:
              - request_headers:
                  header_name: ":path"
                  descriptor_key: path
          typed_per_filter_config:
            envoy.filters.http.local_ratelimit:
              "@type": type.googleapis.com/udpa.type.v1.TypedStruct
              type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              value:
                stat_prefix: http_local_rate_limiter
                descriptors:
                  - entries:
                    - key: path
                      value: /productpage
                    token_bucket:
                      max_tokens: 2
                      tokens_per_fill: 2
                      fill_interval: 60s
                token_bucket:
                  max_tokens: 4
                  tokens_per_fill: 4
                  fill_interval: 60s
                filter_enabled:
                  runtime_key: local_rate_limit_enabled
                  default_value:
                    numerator: 100
                    denominator: HUNDRED
                filter_enforced:
                  runtime_key: local_rate_limit_enforced
                  default_value:
                    numerator: 100
                    denominator: HUNDRED
"#;

/// `strait validate` lists nothing of the task's global EnvoyFilters: they are enforced.
#[test]
fn validate_lists_nothing_of_istios_global_envoy_filters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ef.yaml");
    std::fs::write(&path, docs(&[rls_filter(true), RLS_ACTIONS.to_string(), LOCAL.to_string()])).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strait")).args(["validate", "--config"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("filter-ratelimit") && !text.contains("filter-local-ratelimit-svc"), "{text}");
}
