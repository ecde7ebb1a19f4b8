//! Local rate limits end to end on both drivers: ASM's `ASMLocalRateLimiter` through the real
//! binary, over real sockets, with two workers sharing one token bucket: the quota under
//! concurrent load, refill, overrides by header and query, per-connection buckets, the 429's
//! body and lines (HTTP/1.1 and HTTP/2), Envoy's stats, and a reload keeping the bucket; and
//! the EnvoyFilter of Istio's "Enabling Rate Limits using Envoy" task (the inserted filter's
//! bucket, per-route configs replacing it) onto the same machinery.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use strait_test_support::{self as support, both_drivers, gateway};

use support::backend::Backend;
use support::client::{self, admitted, statuses, Conn};
use support::config::{docs, http_gateway, service_entry, virtual_service};
use support::{free_port, metric, Driver, Gateway};

/// `app.test`'s routes: `limited` and `open` on prefixes, both to `app.local`.
const HTTP: &str = "  - name: limited
    match:
    - uri:
        prefix: /limited
    route:
    - destination:
        host: app.local
  - name: other
    match:
    - uri:
        prefix: /other
    route:
    - destination:
        host: app.local
  - name: open
    route:
    - destination:
        host: app.local
";

/// An ASMLocalRateLimiter for the gateway's `app.test` on `port`: `configs` is its YAML list
/// (indented for `configs:`).
fn limiter(configs: &str) -> String {
    format!(
        "apiVersion: istio.alibabacloud.com/v1
kind: ASMLocalRateLimiter
metadata:
  name: limits
  namespace: default
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  isGateway: true
  configs:
{configs}"
    )
}

/// One config for route `route` (none: the whole virtual host) with `quota` per `seconds`,
/// `more` YAML under `limit:` and `rest` beside it (indented for the config).
fn config(port: u16, route: Option<&str>, quota: u32, seconds: u32, more: &str, rest: &str) -> String {
    let route = route.map(|r| format!("        route:\n          name_match: {r}\n")).unwrap_or_default();
    format!(
        "  - name: c
    match:
      vhost:
        name: app.test
        port: {port}
{route}    limit:
      fill_interval:
        seconds: {seconds}
      quota: {quota}
{more}{rest}"
    )
}

fn yaml(port: u16, backend: &Backend, configs: &str) -> String {
    docs(&[
        http_gateway("gw", port, &["app.test"]),
        virtual_service("app", "gw", &["app.test"], HTTP),
        service_entry("app", "app.local", 80, &[backend.port()]),
        limiter(configs),
    ])
}

fn start(driver: Driver, backend: &Backend, configs: impl Fn(u16) -> String) -> (Gateway, SocketAddr) {
    start_with(driver, backend, &[], configs)
}

fn start_with(
    driver: Driver,
    backend: &Backend,
    args: &[&str],
    configs: impl Fn(u16) -> String,
) -> (Gateway, SocketAddr) {
    let port = free_port();
    let builder = args.iter().fold(gateway!(driver).workers(2), |g, a| g.arg(a));
    let gw = builder.file("gw.yaml", &yaml(port, backend, &configs(port))).start();
    (gw, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn get(addr: SocketAddr, path: &str) -> client::Response {
    client::get(addr, "app.test", path)
}

/// The value of `family` for the ASM filter's stat prefix.
fn limit_stat(gw: &Gateway, stat: &str) -> f64 {
    let (_, body) = gw.admin_get("/stats/prometheus");
    let name =
        format!("envoy_http_local_rate_limit_{stat}{{envoy_local_http_ratelimit_prefix=\"http_local_rate_limiter\"}}");
    body.lines().find_map(|l| l.strip_prefix(&name)).and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| {
        panic!("no {name} in:\n{body}");
    })
}

/// Eight clients at once, `each` requests apiece on connections of their own, spread over both
/// workers, against `quota` a minute: what is admitted is the quota and what refilled meanwhile,
/// and every count agrees.
fn quota_holds(driver: Driver, quota: usize, each: usize) {
    let b = Backend::start("app");
    let (gw, addr) = start(driver, &b, |port| config(port, Some("limited"), quota as u32, 60, "", ""));
    let began = Instant::now();
    let threads: Vec<_> =
        (0..8).map(|_| std::thread::spawn(move || statuses(addr, "app.test", "/limited", each))).collect();
    let all: Vec<u16> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let refilled = (began.elapsed().as_secs_f64() * quota as f64 / 60.0).ceil() as usize;
    let (ok, sent) = (admitted(&all), 8 * each);
    assert!((quota..=quota + refilled).contains(&ok), "admitted {ok} of {sent} (quota {quota}, {refilled} refilled)");
    assert_eq!(all.iter().filter(|&&s| s == 429).count(), sent - ok, "{all:?}");
    assert_eq!(b.count(), ok, "only admitted requests reach the backend");
    // Other routes of the virtual host are not limited.
    assert_eq!(admitted(&statuses(addr, "app.test", "/", 30)), 30);
    let limited = get(addr, "/limited");
    let refused = limited.status == 429;
    if refused {
        assert_eq!(limited.body_text(), "local_rate_limited");
    }
    let ok = ok + usize::from(!refused);
    assert_eq!(limit_stat(&gw, "enabled"), (sent + 1) as f64);
    assert_eq!(limit_stat(&gw, "ok"), ok as f64);
    assert_eq!(limit_stat(&gw, "rate_limited"), (sent + 1 - ok) as f64);
    assert_eq!(limit_stat(&gw, "enforced"), (sent + 1 - ok) as f64);
}

/// ASM's first example ("ASMLocalRateLimiter CRD fields", gateway rate limiting), as the page
/// gives it.
const ASM_EXAMPLE: &str = r#"apiVersion: istio.alibabacloud.com/v1beta1
kind: ASMLocalRateLimiter
metadata:
  name: for-api-test
  namespace: default
spec:
  workloadSelector:
    labels:
      app: istio-ingressgateway
  isGateway: true
  configs:
    - match:
        vhost:
          name: "www.example1.com"   # If multiple vhosts are configured on the gateway, enter the name of the last vhost.
          port: 80
          route:
            name_match: "test1"   # The name of the route in the VirtualService.
      limit:
         fill_interval:
            seconds: 1
         quota: 10
    - match:
        vhost:
          name: "www.example2.com"
          port: 80
          route:
            name_match: "test1"
      limit:
         fill_interval:
            seconds: 1
         quota: 100
"#;

both_drivers! {
    fn asms_example_works_as_it_is(driver) {
        let b = Backend::start("app");
        let port = free_port();
        let gateway = http_gateway("gw", port, &["www.example1.com", "www.example2.com"])
            .replace("istio: ingressgateway", "app: istio-ingressgateway");
        let route = "  - name: test1\n    route:\n    - destination:\n        host: app.local\n";
        let files = docs(&[
            gateway,
            virtual_service("example", "gw", &["www.example1.com", "www.example2.com"], route),
            service_entry("app", "app.local", 80, &[b.port()]),
            // The only change: the listener's port, which a test cannot take at 80.
            ASM_EXAMPLE.replace("port: 80", &format!("port: {port}")),
        ]);
        let _gw = gateway!(driver).arg("--label").arg("app=istio-ingressgateway").file("gw.yaml", &files).start();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let began = Instant::now();
        let one: Vec<u16> = (0..15).map(|_| client::get(addr, "www.example1.com", "/").status).collect();
        let refilled = (began.elapsed().as_secs_f64() * 10.0).ceil() as usize;
        assert!((10..=10 + refilled).contains(&admitted(&one)), "{one:?}");
        let two: Vec<u16> = (0..15).map(|_| client::get(addr, "www.example2.com", "/").status).collect();
        assert_eq!(admitted(&two), 15, "www.example2.com has a quota of its own, of 100");
    }

    fn quota_holds_under_concurrent_load_across_workers(driver) {
        quota_holds(driver, 20, 15);
    }

    // Large enough that each worker draws its tokens in batches (see `SharedBucket`).
    fn a_large_quota_holds_though_workers_draw_tokens_in_batches(driver) {
        quota_holds(driver, 960, 200);
    }

    fn the_bucket_refills_at_quota_per_fill_interval(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = start(driver, &b, |port| config(port, Some("limited"), 2, 1, "", ""));
        assert_eq!(statuses(addr, "app.test", "/limited", 4)[2..], [429, 429]);
        std::thread::sleep(Duration::from_millis(1200));
        // A whole interval later the bucket is full again (2), never fuller.
        let again = statuses(addr, "app.test", "/limited", 5);
        assert_eq!(again[0], 200, "{again:?}");
        assert!((2..=3).contains(&admitted(&again)), "{again:?}");
    }

    fn a_virtual_host_config_shares_one_bucket_across_its_routes(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = start(driver, &b, |port| config(port, None, 3, 60, "", ""));
        let mixed: Vec<u16> = ["/limited", "/other", "/", "/limited", "/other", "/"].iter().map(|p| get(addr, p).status).collect();
        assert_eq!(mixed, [200, 200, 200, 429, 429, 429]);
    }

    fn overrides_by_header_and_query_take_their_own_quota(driver) {
        let b = Backend::start("app");
        let overrides = "    limit_overrides:
    - request_match:
        header_match:
        - name: x-user
          exact_match: vip
      limit:
        fill_interval:
          seconds: 60
        quota: 4
    - request_match:
        query_match:
        - name: tier
          exact_match: gold
      limit:
        fill_interval:
          seconds: 60
        quota: 2
";
        let (_gw, addr) = start(driver, &b, |port| config(port, Some("limited"), 1, 60, "", overrides));
        let vip = |addr| client::request(addr, "GET /limited HTTP/1.1\r\nHost: app.test\r\nx-user: vip\r\nConnection: close\r\n\r\n").status;
        assert_eq!((0..6).map(|_| vip(addr)).collect::<Vec<_>>(), [200, 200, 200, 200, 429, 429]);
        assert_eq!(statuses(addr, "app.test", "/limited?tier=gold", 3), [200, 200, 429]);
        assert_eq!(statuses(addr, "app.test", "/limited?tier=silver", 2), [200, 429], "the config's own quota, untouched by the overrides");
    }

    fn per_downstream_connection_gives_each_connection_its_bucket(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = start(driver, &b, |port| config(port, Some("limited"), 2, 60, "      per_downstream_connection: true\n", ""));
        let on = |c: &mut Conn| (0..3).map(|_| c.get("/limited", "app.test").status).collect::<Vec<_>>();
        let (mut first, mut second) = (Conn::open(addr), Conn::open(addr));
        assert_eq!(on(&mut first), [200, 200, 429]);
        assert_eq!(on(&mut second), [200, 200, 429], "a second connection has a full bucket of its own");
    }

    fn custom_body_and_headers_on_both_protocols(driver) {
        let b = Backend::start("app");
        let more = "      custom_response_body: '{\"ret_code\": 429, \"message\": \"Your request be limited\"}'
      response_header_to_add:
        x-local-rate-limit: 'true'
";
        let (gw, addr) = start_with(driver, &b, &["--access-log"], |port| config(port, Some("limited"), 1, 60, more, ""));
        assert_eq!(get(addr, "/limited").status, 200);
        let limited = get(addr, "/limited");
        assert_eq!(limited.status, 429);
        assert_eq!(limited.header("x-local-rate-limit"), Some("true"));
        assert_eq!(limited.body_text(), "{\"ret_code\": 429, \"message\": \"Your request be limited\"}");
        // HTTP/2 (h2c with prior knowledge) gets the same answer from the same bucket.
        let out = Command::new("curl")
            .args(["-s", "-i", "--http2-prior-knowledge", "-H", "host: app.test", "--max-time", "10"])
            .arg(format!("http://{addr}/limited"))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(text.starts_with("http/2 429"), "{text}");
        assert!(text.contains("x-local-rate-limit: true"), "{text}");
        assert!(text.ends_with("your request be limited\"}"), "{text}");
        // Envoy's response flag and details for the access log.
        let logged = || gw.stdout().lines().filter(|l| l.contains(" 429 RL local_rate_limited ")).count();
        assert!(support::wait_until(Duration::from_secs(5), || logged() == 2).is_some(), "{}", gw.stdout());
    }

    fn a_grpc_request_is_refused_with_grpc_status_unavailable(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = start(driver, &b, |port| config(port, Some("limited"), 1, 60, "", ""));
        let call = "POST /limited HTTP/1.1\r\nHost: app.test\r\ncontent-type: application/grpc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        assert_eq!(client::request(addr, call).header("grpc-status"), None, "the first call is admitted");
        let refused = client::request(addr, call);
        assert_eq!(refused.status, 200, "Envoy's gRPC form of the local reply");
        assert_eq!(refused.header("grpc-status"), Some("14"));
        assert_eq!(refused.header("grpc-message"), Some("local_rate_limited"));
    }

    fn a_reload_keeps_an_unchanged_bucket_and_refills_a_changed_one(driver) {
        let b = Backend::start("app");
        let (gw, addr) = start(driver, &b, |port| config(port, Some("limited"), 3, 60, "", ""));
        gw.wait_generation(1);
        assert_eq!(statuses(addr, "app.test", "/limited", 4), [200, 200, 200, 429]);
        // Another resource changes; the limit does not: its bucket stays empty.
        let port = addr.port();
        let other = service_entry("other", "other.local", 80, &[b.port()]);
        let same = yaml(port, &b, &config(port, Some("limited"), 3, 60, "", ""));
        gw.write_config("gw.yaml", &docs(&[same, other.clone()]));
        gw.signal("HUP");
        gw.wait_generation(2);
        assert_eq!(get(addr, "/limited").status, 429, "the reload kept the emptied bucket");
        // A new quota is a new bucket, full.
        let changed = yaml(port, &b, &config(port, Some("limited"), 5, 60, "", ""));
        gw.write_config("gw.yaml", &docs(&[changed, other]));
        gw.signal("HUP");
        gw.wait_generation(3);
        assert_eq!(admitted(&statuses(addr, "app.test", "/limited", 7)), 5);
        assert!(metric(&gw.admin_get("/stats/prometheus").1, "envoy_http_local_rate_limit_enabled").is_some());
    }

    fn a_config_envoy_would_refuse_is_refused_naming_the_field(driver) {
        let b = Backend::start("app");
        let port = free_port();
        let bad = yaml(port, &b, &config(port, Some("limited"), 0, 1, "", ""));
        let (status, logs) = gateway!(driver).file("gw.yaml", &bad).start_refused();
        assert!(!status.success());
        assert!(logs.contains("spec.configs[0].limit.quota"), "{logs}");
        assert!(logs.contains("ASMLocalRateLimiter"), "{logs}");
    }
}

/// The local rate limit of Istio's "Enabling Rate Limits using Envoy" task (its `value:`),
/// indented by `pad` spaces: 4 per minute, enabled and enforced for every request, and the
/// `x-local-rate-limit: true` line on the 429.
fn istio_limit(pad: usize, max_tokens: u32) -> String {
    let value = format!(
        "stat_prefix: http_local_rate_limiter
token_bucket:
  max_tokens: {max_tokens}
  tokens_per_fill: {max_tokens}
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
response_headers_to_add:
  - append: false
    header:
      key: x-local-rate-limit
      value: 'true'
"
    );
    value.lines().map(|l| format!("{:pad$}{l}\n", "")).collect()
}

/// The task's EnvoyFilter for a gateway: the filter inserted into the HTTP connection manager
/// with `filter_value` (the `value:` of its TypedStruct, indented for it), then `routes` (more
/// patches, indented for `configPatches:`).
fn istio_filter(filter_value: &str, routes: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1alpha3
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
{filter_value}{routes}"#
    )
}

/// The task's `HTTP_ROUTE` patch for the gateway's virtual host `vhost` (istiod's
/// `host:port`), its `route:` match as `route`.
fn istio_route(vhost: &str, route: &str) -> String {
    format!(
        r#"    - applyTo: HTTP_ROUTE
      match:
        context: GATEWAY
        routeConfiguration:
          vhost:
            name: "{vhost}"
            route:
              {route}
      patch:
        operation: MERGE
        value:
          typed_per_filter_config:
            envoy.filters.http.local_ratelimit:
              "@type": type.googleapis.com/udpa.type.v1.TypedStruct
              type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              value:
{}"#,
        istio_limit(16, 4)
    )
}

/// `app.test`'s gateway with the EnvoyFilter `filter(port)` and no ASMLocalRateLimiter.
fn start_filtered(driver: Driver, backend: &Backend, filter: impl Fn(u16) -> String) -> (Gateway, SocketAddr) {
    let port = free_port();
    let gw = gateway!(driver).workers(2).file("gw.yaml", &filtered(port, backend, &filter(port))).start();
    (gw, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn filtered(port: u16, backend: &Backend, filter: &str) -> String {
    docs(&[
        http_gateway("gw", port, &["app.test"]),
        virtual_service("app", "gw", &["app.test"], HTTP),
        service_entry("app", "app.local", 80, &[backend.port()]),
        filter.to_string(),
    ])
}

/// The filter without a bucket (`stat_prefix` only), as the task inserts it.
const BARE: &str = "              stat_prefix: http_local_rate_limiter\n";

both_drivers! {
    fn istios_envoy_filter_limits_each_route_as_documented(driver) {
        let b = Backend::start("app");
        let (gw, addr) =
            start_filtered(driver, &b, |port| istio_filter(BARE, &istio_route(&format!("app.test:{port}"), "action: ANY")));
        // `action: ANY` gives every route of the virtual host a config, and a bucket, of its own.
        assert_eq!(statuses(addr, "app.test", "/limited", 6), [200, 200, 200, 200, 429, 429]);
        assert_eq!(statuses(addr, "app.test", "/other", 5), [200, 200, 200, 200, 429]);
        let limited = get(addr, "/limited");
        assert_eq!((limited.status, limited.body_text().as_str()), (429, "local_rate_limited"));
        assert_eq!(limited.header("x-local-rate-limit"), Some("true"));
        assert_eq!(b.count(), 8, "only admitted requests reach the backend");
        assert_eq!(limit_stat(&gw, "enabled"), 12.0);
        assert_eq!(limit_stat(&gw, "ok"), 8.0);
        assert_eq!(limit_stat(&gw, "rate_limited"), 4.0);
        assert_eq!(limit_stat(&gw, "enforced"), 4.0);
    }

    fn a_route_without_per_route_config_under_a_bare_filter_is_not_limited(driver) {
        let b = Backend::start("app");
        let (_gw, addr) =
            start_filtered(driver, &b, |port| istio_filter(BARE, &istio_route(&format!("app.test:{port}"), "name: limited")));
        assert_eq!(admitted(&statuses(addr, "app.test", "/limited", 6)), 4);
        assert_eq!(admitted(&statuses(addr, "app.test", "/", 10)), 10, "the filter has no bucket of its own");
        // A virtual host name istiod would not give (no port) reaches no route.
        let (_gw, addr) = start_filtered(driver, &b, |_| istio_filter(BARE, &istio_route("app.test", "action: ANY")));
        assert_eq!(admitted(&statuses(addr, "app.test", "/limited", 6)), 6);
    }

    fn the_filters_own_bucket_is_shared_by_every_route_of_the_listener(driver) {
        let b = Backend::start("app");
        let (gw, addr) = start_filtered(driver, &b, |_| istio_filter(&istio_limit(14, 4), ""));
        let mixed: Vec<u16> = ["/limited", "/other", "/", "/limited", "/other", "/"].iter().map(|p| get(addr, p).status).collect();
        assert_eq!(mixed, [200, 200, 200, 200, 429, 429]);
        assert_eq!(get(addr, "/").header("x-local-rate-limit"), Some("true"));
        assert_eq!(limit_stat(&gw, "rate_limited"), 3.0);
    }

    fn a_reload_that_changes_the_filters_bucket_refills_it(driver) {
        let b = Backend::start("app");
        let (gw, addr) = start_filtered(driver, &b, |_| istio_filter(&istio_limit(14, 2), ""));
        gw.wait_generation(1);
        assert_eq!(statuses(addr, "app.test", "/", 3), [200, 200, 429]);
        let port = addr.port();
        let other = service_entry("other", "other.local", 80, &[b.port()]);
        let same = filtered(port, &b, &istio_filter(&istio_limit(14, 2), ""));
        gw.write_config("gw.yaml", &docs(&[same, other.clone()]));
        gw.signal("HUP");
        gw.wait_generation(2);
        assert_eq!(get(addr, "/").status, 429, "an unchanged config keeps its emptied bucket");
        let changed = filtered(port, &b, &istio_filter(&istio_limit(14, 5), ""));
        gw.write_config("gw.yaml", &docs(&[changed, other]));
        gw.signal("HUP");
        gw.wait_generation(3);
        assert_eq!(statuses(addr, "app.test", "/", 6), [200, 200, 200, 200, 200, 429]);
    }
}

/// `strait validate` takes the task's EnvoyFilter as enforced: nothing about it is listed.
#[test]
fn validate_lists_nothing_of_istios_envoy_filter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ef.yaml");
    std::fs::write(&path, istio_filter(BARE, &istio_route("app.test:80", "action: ANY"))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strait")).args(["validate", "--config"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("filter-local-ratelimit-svc"), "{text}");
}
