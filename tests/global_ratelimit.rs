//! Global rate limits end to end on both drivers: ASM's `ASMGlobalRateLimiter` through the real
//! binary with the counters in a real `redis-server` (`--redis`): the quota across two workers
//! and across three instances sharing one Redis, a new window admitting again, overrides by
//! header and query, a stopped Redis (fail-open, 500 with `--ratelimit-failure-mode-deny`, and
//! counting again once it is back), a Redis that never answers (the timeout), one pipelined
//! round trip per request (`INFO commandstats`), envoyproxy/ratelimit's key scheme, and a
//! config loaded without `--redis`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strait_test_support::{self as support, both_drivers, gateway};

use support::backend::Backend;
use support::client::{self, admitted, statuses};
use support::config::{docs, http_gateway, service_entry, virtual_service};
use support::redis::{RedisServer, SilentServer};
use support::{free_port, metric, wait_until, Driver, Gateway};

/// `app.test`'s routes: `limited` on a prefix, `open` for the rest.
const HTTP: &str = "  - name: limited
    match:
    - uri:
        prefix: /limited
    route:
    - destination:
        host: app.local
  - name: open
    route:
    - destination:
        host: app.local
";

/// ASM's gateway example ("Description of ASMGlobalRateLimiter fields"), with the gateway's
/// labels and this test's port, quota and unit; `more` goes under the config.
fn limiter(port: u16, quota: u32, unit: &str, more: &str) -> String {
    format!(
        "apiVersion: istio.alibabacloud.com/v1beta1
kind: ASMGlobalRateLimiter
metadata:
  name: global-test
  namespace: default
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  rateLimitService:
    host: ratelimit.default.svc.cluster.local
    port: 8081
    timeout:
      seconds: 5
  isGateway: true
  configs:
  - name: limited
    limit:
      unit: {unit}
      quota: {quota}
    match:
      vhost:
        name: app.test
        port: {port}
        route:
          name_match: limited
{more}"
    )
}

fn files(port: u16, backend: &Backend, limiter: &str) -> String {
    docs(&[
        http_gateway("gw", port, &["app.test"]),
        virtual_service("app", "gw", &["app.test"], HTTP),
        service_entry("app", "app.local", 80, &[backend.port()]),
        limiter.to_string(),
    ])
}

/// A gateway of two workers on a port of its own, its args and config as given.
fn start(driver: Driver, args: &[&str], config: impl Fn(u16) -> String) -> (Gateway, SocketAddr) {
    let port = free_port();
    let builder = args.iter().fold(gateway!(driver).workers(2), |g, a| g.arg(a));
    let gw = builder.file("gw.yaml", &config(port)).start();
    (gw, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn get(addr: SocketAddr, path: &str) -> client::Response {
    client::get(addr, "app.test", path)
}

fn stat(gw: &Gateway, name: &str) -> f64 {
    let (_, body) = gw.admin_get("/stats/prometheus");
    metric(&body, name).unwrap_or_else(|| panic!("no {name} in:\n{body}"))
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Waits, if need be, until at least `room` of the current `unit_s` window is left, so that a
/// test's requests all fall in one window.
fn fresh_window(unit_s: u64, room: Duration) {
    let window = Duration::from_secs(unit_s);
    let into = Duration::from_nanos((unix_now().as_nanos() % window.as_nanos()) as u64);
    if window - into < room {
        std::thread::sleep(window - into + Duration::from_millis(20));
    }
}

both_drivers! {
    fn quota_holds_across_workers_and_the_429_is_envoys(driver) {
        let redis = RedisServer::start();
        let b = Backend::start("app");
        let (gw, addr) = start(driver, &["--redis", &redis.url()], |port| files(port, &b, &limiter(port, 20, "HOUR", "")));
        fresh_window(3600, Duration::from_secs(60));
        // Eight clients at once, each on connections of its own, spread over both workers.
        let threads: Vec<_> = (0..8).map(|_| std::thread::spawn(move || statuses(addr, "app.test", "/limited", 15))).collect();
        let all: Vec<u16> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        assert_eq!(admitted(&all), 20, "a fixed window admits its quota, once: {all:?}");
        assert_eq!(all.iter().filter(|&&s| s == 429).count(), 100, "{all:?}");
        assert_eq!(b.count(), 20, "only admitted requests reach the backend");
        let limited = get(addr, "/limited");
        assert_eq!(limited.status, 429);
        assert_eq!(limited.header("x-envoy-ratelimited"), Some("true"));
        assert!(limited.body.is_empty(), "Envoy's ratelimit filter answers with no body");
        // Other routes of the virtual host are not limited, nor counted.
        assert_eq!(admitted(&statuses(addr, "app.test", "/", 10)), 10);
        assert_eq!(stat(&gw, "envoy_ratelimit_ok"), 20.0);
        assert_eq!(stat(&gw, "envoy_ratelimit_over_limit"), 101.0);
        assert_eq!(stat(&gw, "envoy_ratelimit_error"), 0.0);
        // envoyproxy/ratelimit's key: domain, the descriptor's entries, the window's start.
        let hour = unix_now().as_secs() / 3600 * 3600;
        let key = format!(
            "ratelimit.default.svc.cluster.local_generic_key_RateLimit[global-test.default]-Id[limited]_{hour}"
        );
        assert_eq!(redis.keys("*"), vec![key]);
    }

    fn http2_and_grpc_requests_get_envoys_answers_and_the_log_says_rl(driver) {
        let redis = RedisServer::start();
        let b = Backend::start("app");
        let (gw, addr) =
            start(driver, &["--redis", &redis.url(), "--access-log"], |port| files(port, &b, &limiter(port, 1, "HOUR", "")));
        fresh_window(3600, Duration::from_secs(60));
        assert_eq!(get(addr, "/limited").status, 200);
        // HTTP/2 (h2c with prior knowledge) counts in the same window.
        let out = std::process::Command::new("curl")
            .args(["-s", "-i", "--http2-prior-knowledge", "-H", "host: app.test", "--max-time", "10"])
            .arg(format!("http://{addr}/limited"))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(text.starts_with("http/2 429"), "{text}");
        assert!(text.contains("x-envoy-ratelimited: true"), "{text}");
        // A gRPC call gets the gRPC form of the 429: UNAVAILABLE, as Envoy maps it.
        let call = "POST /limited HTTP/1.1\r\nHost: app.test\r\ncontent-type: application/grpc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let refused = client::request(addr, call);
        assert_eq!((refused.status, refused.header("grpc-status")), (200, Some("14")));
        let logged = || gw.stdout().lines().filter(|l| l.contains(" 429 RL request_rate_limited ")).count();
        assert!(wait_until(Duration::from_secs(5), || logged() == 1).is_some(), "{}", gw.stdout());
    }

    fn three_instances_sharing_one_redis_admit_the_quota_once(driver) {
        let redis = RedisServer::start();
        let b = Backend::start("app");
        let gateways: Vec<(Gateway, SocketAddr)> = (0..3)
            .map(|_| start(driver, &["--redis", &redis.url()], |port| files(port, &b, &limiter(port, 100, "HOUR", ""))))
            .collect();
        fresh_window(3600, Duration::from_secs(60));
        // A load balancer's round robin: each client goes to the instances in turn.
        let addrs: Vec<SocketAddr> = gateways.iter().map(|(_, a)| *a).collect();
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let addrs = addrs.clone();
                std::thread::spawn(move || (0..60).map(|i| get(addrs[(t + i) % 3], "/limited").status).collect::<Vec<_>>())
            })
            .collect();
        let all: Vec<u16> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let ok = admitted(&all);
        assert!((95..=105).contains(&ok), "admitted {ok} of 360 across three instances (quota 100)");
        assert_eq!(all.iter().filter(|&&s| s == 429).count(), 360 - ok, "{all:?}");
        for (gw, _) in &gateways {
            assert!(stat(gw, "envoy_ratelimit_ok") > 0.0, "every instance admitted some");
        }
    }

    fn a_new_window_admits_again(driver) {
        let redis = RedisServer::start();
        let b = Backend::start("app");
        let (_gw, addr) = start(driver, &["--redis", &redis.url()], |port| files(port, &b, &limiter(port, 3, "SECOND", "")));
        // Six requests in one one-second window, twice; a batch that a busy machine spreads
        // over two windows proves nothing and is sent again in a later one.
        let batch_in_one_window = || {
            for _ in 0..10 {
                fresh_window(1, Duration::from_millis(990));
                let second = unix_now().as_secs();
                let all = statuses(addr, "app.test", "/limited", 6);
                if unix_now().as_secs() == second {
                    return (second, all);
                }
            }
            panic!("no six requests fit in one second");
        };
        let (one, first) = batch_in_one_window();
        let (two, second) = batch_in_one_window();
        assert!(two > one);
        assert_eq!((admitted(&first), admitted(&second)), (3, 3), "{first:?} {second:?}");
    }

    fn overrides_count_the_requests_they_match_in_windows_of_their_own(driver) {
        let redis = RedisServer::start();
        let b = Backend::start("app");
        let overrides = "    limit_overrides:
    - request_match:
        header_match:
        - name: x-user
          exact_match: alice
      limit:
        unit: HOUR
        quota: 2
    - request_match:
        query_match:
        - name: tier
          exact_match: free
      limit:
        unit: HOUR
        quota: 1
";
        let (_gw, addr) =
            start(driver, &["--redis", &redis.url()], |port| files(port, &b, &limiter(port, 100, "HOUR", overrides)));
        fresh_window(3600, Duration::from_secs(60));
        let as_user = |user: &str| {
            let raw = format!("GET /limited HTTP/1.1\r\nHost: app.test\r\nx-user: {user}\r\nConnection: close\r\n\r\n");
            (0..5).map(|_| client::request(addr, &raw).status).collect::<Vec<_>>()
        };
        assert_eq!(admitted(&as_user("alice")), 2);
        assert_eq!(admitted(&as_user("bob")), 5, "bob counts in the config's window of 100");
        assert_eq!(admitted(&statuses(addr, "app.test", "/limited?tier=free", 4)), 1);
        assert_eq!(redis.keys("*").len(), 3, "{:?}", redis.keys("*"));
    }

    fn a_stopped_redis_fails_open_then_counts_again_once_back(driver) {
        let mut redis = RedisServer::start();
        let b = Backend::start("app");
        let (gw, addr) = start(driver, &["--redis", &redis.url()], |port| files(port, &b, &limiter(port, 2, "HOUR", "")));
        fresh_window(3600, Duration::from_secs(60));
        assert_eq!(admitted(&statuses(addr, "app.test", "/limited", 4)), 2);
        redis.stop();
        assert_eq!(admitted(&statuses(addr, "app.test", "/limited", 10)), 10, "fail-open: nothing is limited");
        assert!(stat(&gw, "envoy_ratelimit_failure_mode_allowed") >= 10.0);
        redis.restart();
        // The workers reconnect (with backoff); the new Redis's window is empty again.
        let limited = wait_until(Duration::from_secs(10), || get(addr, "/limited").status == 429);
        assert!(limited.is_some(), "counting never resumed:\n{}", gw.logs());
    }

    fn failure_mode_deny_answers_500_when_redis_is_stopped(driver) {
        let mut redis = RedisServer::start();
        let b = Backend::start("app");
        let args = ["--redis", &redis.url(), "--ratelimit-failure-mode-deny", "--access-log"];
        let (gw, addr) = start(driver, &args, |port| files(port, &b, &limiter(port, 100, "HOUR", "")));
        assert_eq!(get(addr, "/limited").status, 200);
        redis.stop();
        assert_eq!(statuses(addr, "app.test", "/limited", 3), vec![500; 3]);
        assert_eq!(get(addr, "/").status, 200, "a route with no global limit asks nothing");
        assert!(stat(&gw, "envoy_ratelimit_error") >= 3.0);
        assert_eq!(stat(&gw, "envoy_ratelimit_failure_mode_allowed"), 0.0);
        let logged = wait_until(Duration::from_secs(5), || gw.stdout().contains("\" 500 RLSE rate_limiter_error "));
        assert!(logged.is_some(), "{}", gw.stdout());
    }

    fn a_redis_that_never_answers_is_a_timeout(driver) {
        let silent = SilentServer::start();
        let b = Backend::start("app");
        let url = format!("redis://127.0.0.1:{}", silent.port);
        // No `rateLimitService.timeout`: Envoy's 20 ms.
        let no_timeout = |port| limiter(port, 1, "HOUR", "").replace("    timeout:\n      seconds: 5\n", "");
        let (gw, addr) = start(driver, &["--redis", &url], |port| files(port, &b, &no_timeout(port)));
        let began = std::time::Instant::now();
        assert_eq!(admitted(&statuses(addr, "app.test", "/limited", 5)), 5, "fail-open after the timeout");
        assert!(began.elapsed() < Duration::from_secs(4), "20 ms each, not ASM's example's 5 s");
        assert_eq!(stat(&gw, "envoy_ratelimit_timeout"), 5.0);
        assert_eq!(stat(&gw, "envoy_ratelimit_failure_mode_allowed"), 5.0);
        let (deny, deny_addr) =
            start(driver, &["--redis", &url, "--ratelimit-failure-mode-deny"], |port| files(port, &b, &no_timeout(port)));
        assert_eq!(get(deny_addr, "/limited").status, 500);
        assert_eq!(stat(&deny, "envoy_ratelimit_timeout"), 1.0);
    }

    fn a_connection_that_stays_silent_is_made_again(driver) {
        // A hung Redis (or a half-open connection) must not keep every check at its timeout
        // for good: after a second with no reply the connection is dropped and made again.
        let silent = SilentServer::start();
        let b = Backend::start("app");
        let url = format!("redis://127.0.0.1:{}", silent.port);
        let no_timeout = |port| limiter(port, 1, "HOUR", "").replace("    timeout:\n      seconds: 5\n", "");
        let (gw, addr) = start(driver, &["--redis", &url], |port| files(port, &b, &no_timeout(port)));
        // Two workers, a connection each, then one made again.
        let reconnected = wait_until(Duration::from_secs(10), || {
            assert_eq!(get(addr, "/limited").status, 200, "fail-open");
            silent.accepted() > 2
        });
        assert!(reconnected.is_some(), "the silent connection was kept: {}", gw.logs());
        assert!(gw.logs().contains("redis: no reply for"), "{}", gw.logs());
    }

    fn each_request_is_one_pipelined_incrby_and_expire(driver) {
        let redis = RedisServer::start();
        let b = Backend::start("app");
        let (_gw, addr) = start(driver, &["--redis", &redis.url()], |port| files(port, &b, &limiter(port, 5, "HOUR", "")));
        let before = redis.command_calls();
        let all = statuses(addr, "app.test", "/limited", 10);
        let after = redis.command_calls();
        let calls = |c: &str| after.get(c).copied().unwrap_or(0) - before.get(c).copied().unwrap_or(0);
        assert_eq!((calls("incrby"), calls("expire")), (10, 10), "{before:?} {after:?} {all:?}");
        let others: u64 = after.iter().filter(|(c, _)| !["incrby", "expire", "info"].contains(&c.as_str())).map(|(_, n)| n).sum();
        assert_eq!(others, 1, "nothing else but the helper's PING: {after:?}");
    }

    fn without_redis_the_limits_load_and_limit_nothing(driver) {
        let b = Backend::start("app");
        let (gw, addr) = start(driver, &[], |port| files(port, &b, &limiter(port, 1, "HOUR", "")));
        assert_eq!(admitted(&statuses(addr, "app.test", "/limited", 3)), 3);
        let warned = gw.logs();
        assert!(warned.contains("ASMGlobalRateLimiter limits nothing without --redis"), "{warned}");
        assert!(warned.contains("gw.yaml"), "the warning names the file: {warned}");
    }
}

#[test]
fn a_bad_unit_is_refused_naming_the_field() {
    let b = Backend::start("app");
    let port = free_port();
    let (status, logs) =
        gateway!(Driver::Legacy).file("gw.yaml", &files(port, &b, &limiter(port, 1, "WEEK", ""))).start_refused();
    assert!(!status.success());
    assert!(logs.contains("spec.configs[0].limit.unit"), "{logs}");
    assert!(logs.contains("WEEK"), "{logs}");
}

/// README's ASM example, as README gives it.
const README_EXAMPLE: &str = r#"apiVersion: istio.alibabacloud.com/v1beta1
kind: ASMGlobalRateLimiter
metadata:
  name: global-test
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      app: istio-ingressgateway
  rateLimitService:
    host: ratelimit.default.svc.cluster.local
    port: 8081
    timeout:
      seconds: 5
  isGateway: true
  configs:
  - name: httpbin
    limit:
      unit: MINUTE
      quota: 2
    match:
      vhost:
        name: '*'
        port: 80
        route:
          name_match: httpbin
    limit_overrides:
    - request_match:
        header_match:
        - name: x-user
          exact_match: vip
      limit:
        unit: MINUTE
        quota: 10
"#;

both_drivers! {
    fn the_readmes_asm_example_works_as_it_is(driver) {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        assert!(readme.contains(README_EXAMPLE), "README's example is this test's");
        let redis = RedisServer::start();
        let b = Backend::start("httpbin");
        let port = free_port();
        let gateway = http_gateway("gw", port, &["*"])
            .replace("istio: ingressgateway", "app: istio-ingressgateway")
            .replace("namespace: default", "namespace: istio-system");
        let route = "  - name: httpbin\n    route:\n    - destination:\n        host: httpbin.local\n";
        let vs = virtual_service("httpbin", "gw", &["*"], route).replace("namespace: default", "namespace: istio-system");
        let se = service_entry("httpbin", "httpbin.local", 80, &[b.port()])
            .replace("namespace: default", "namespace: istio-system");
        // The only change: the listener's port, which a test cannot take at 80.
        let files = docs(&[gateway, vs, se, README_EXAMPLE.replace("port: 80", &format!("port: {port}"))]);
        let args = ["--label", "app=istio-ingressgateway", "--namespace", "istio-system", "--redis", &redis.url()];
        let _gw = args.iter().fold(gateway!(driver), |g, a| g.arg(a)).file("gw.yaml", &files).start();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        fresh_window(60, Duration::from_secs(20));
        let any: Vec<u16> = (0..4).map(|_| client::get(addr, "any.example.com", "/get").status).collect();
        assert_eq!(admitted(&any), 2, "{any:?}");
        let raw = "GET /get HTTP/1.1\r\nHost: any.example.com\r\nx-user: vip\r\nConnection: close\r\n\r\n";
        let vip: Vec<u16> = (0..4).map(|_| client::request(addr, raw).status).collect();
        assert_eq!(admitted(&vip), 4, "the override's window is its own: {vip:?}");
    }
}
