//! DestinationRule traffic policy end to end over three real backends, with four workers so
//! that requests on separate connections land on different cores: session affinity by
//! consistent hashing (ring hash and Maglev), round robin and least request, the connection
//! pool's settings, and port-level and subset overrides.

use strait_test_support::{self as support, both_drivers, gateway};

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use support::backend::{Backend, Mode};
use support::client::{self, Conn};
use support::config::{app_behind_rule, docs, head, http_gateway, service_entry, virtual_service};
use support::{free_port, wait_until, Driver, Gateway};

const ROUTE: &str = "  - route:\n    - destination:\n        host: app.local\n";

/// Three backends behind `app.local` with `policy` (YAML under `trafficPolicy:`).
fn start(driver: Driver, policy: &str) -> (Gateway, SocketAddr, [Backend; 3]) {
    let backends = [Backend::start("b0"), Backend::start("b1"), Backend::start("b2")];
    let port = free_port();
    let ports: Vec<u16> = backends.iter().map(Backend::port).collect();
    let config = app_behind_rule(port, &ports, ROUTE, policy);
    let gw = gateway!(driver).file("gw.yaml", &config).workers(4).start();
    (gw, format!("127.0.0.1:{port}").parse().unwrap(), backends)
}

/// One backend behind `app.local` with `policy`, served by one worker, whose pool is then the
/// only one.
fn start_single(driver: Driver, policy: &str) -> (Gateway, SocketAddr, Backend) {
    let backend = Backend::start("only");
    let port = free_port();
    let config = app_behind_rule(port, &[backend.port()], ROUTE, policy);
    let gw = gateway!(driver).file("gw.yaml", &config).workers(1).start();
    (gw, format!("127.0.0.1:{port}").parse().unwrap(), backend)
}

/// The backend that answered a request with the extra header `line` (empty for none), on a
/// fresh connection each time.
fn backend_for(addr: SocketAddr, path: &str, line: &str) -> String {
    let resp =
        client::request(addr, &format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n{line}Connection: close\r\n\r\n"));
    assert_eq!(resp.status, 200);
    resp.header("x-backend").expect("x-backend").to_string()
}

/// `n` requests on one client connection (one worker, so round robin takes each backend in
/// turn), then each backend's requests and upstream connections.
fn requests_and_connections(addr: SocketAddr, backends: &[Backend], n: usize) -> Vec<(usize, usize)> {
    let mut c = Conn::open(addr);
    for _ in 0..n {
        assert_eq!(c.get("/", "app.test").status, 200);
    }
    backends.iter().map(|b| (b.count(), b.connections.load(std::sync::atomic::Ordering::Relaxed))).collect()
}

/// Each of 12 keys sticks to one backend over 10 fresh connections, and the keys together
/// reach more than one backend.
fn assert_affinity(mut request: impl FnMut(usize) -> String) {
    let mut chosen = BTreeSet::new();
    for key in 0..12 {
        let first = request(key);
        for _ in 0..9 {
            assert_eq!(request(key), first, "key {key} moved");
        }
        chosen.insert(first);
    }
    assert!(chosen.len() > 1, "12 keys all hashed to {chosen:?}");
}

both_drivers! {
    fn header_hash_on_a_ring_sticks_across_workers(driver) {
        let (_gw, addr, _b) = start(driver, "    loadBalancer:\n      consistentHash:\n        httpHeaderName: x-user\n        ringHash:\n          minimumRingSize: 1024\n");
        assert_affinity(|key| backend_for(addr, "/", &format!("x-user: user-{key}\r\n")));
        // Without the key the cluster balances as without a hash policy: more than one backend.
        let spread: BTreeSet<String> = (0..12).map(|_| backend_for(addr, "/", "")).collect();
        assert!(spread.len() > 1, "{spread:?}");
    }

    fn query_parameter_hash_with_maglev(driver) {
        let (_gw, addr, _b) = start(driver, "    loadBalancer:\n      consistentHash:\n        httpQueryParameterName: user\n        maglev:\n          tableSize: 65537\n");
        assert_affinity(|key| backend_for(addr, &format!("/page?x=1&user={key}"), ""));
    }

    fn cookie_the_request_carries_is_hashed(driver) {
        let (_gw, addr, _b) = start(driver, "    loadBalancer:\n      consistentHash:\n        httpCookie:\n          name: session\n          ttl: 0s\n");
        let first = client::request(addr, "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
        assert!(first.header("set-cookie").unwrap().ends_with("\"; HttpOnly"), "ttl 0s: a session cookie");
        assert_affinity(|key| backend_for(addr, "/", &format!("Cookie: theme=dark; session=s{key}\r\n")));
    }

    fn absent_cookie_is_generated_and_then_pins_the_client(driver) {
        let (_gw, addr, backends) = start(driver, "    loadBalancer:\n      consistentHash:\n        httpCookie:\n          name: session\n          path: /\n          ttl: 3600s\n");
        let first = client::request(addr, "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
        let set = first.header("set-cookie").expect("the affinity cookie is set").to_string();
        let value = set.strip_prefix("session=\"").and_then(|v| v.split_once('"')).map(|(v, _)| v).expect("session=\"…\"");
        assert_eq!(set, format!("session=\"{value}\"; Max-Age=3600; Path=/; HttpOnly"));
        let chosen = first.header("x-backend").unwrap().to_string();
        let line = format!("Cookie: session=\"{value}\"\r\n");
        for _ in 0..1000 {
            assert_eq!(backend_for(addr, "/", &line), chosen, "the cookie pins the backend on every worker");
        }
        let counts: Vec<usize> = backends.iter().map(Backend::count).collect();
        assert_eq!(counts.iter().filter(|&&c| c > 0).count(), 1, "one backend served all 1,001: {counts:?}");
        // A request carrying the cookie gets no new one.
        let again = client::request(addr, &format!("GET / HTTP/1.1\r\nHost: app.test\r\n{line}Connection: close\r\n\r\n"));
        assert_eq!(again.header("set-cookie"), None);
    }

    fn source_ip_hash_sends_one_client_to_one_backend(driver) {
        let (_gw, addr, backends) = start(driver, "    loadBalancer:\n      consistentHash:\n        useSourceIp: true\n");
        let chosen: BTreeSet<String> = (0..30).map(|_| backend_for(addr, "/", "")).collect();
        assert_eq!(chosen.len(), 1, "one client address, one backend: {chosen:?}");
        assert_eq!(backends.iter().map(Backend::count).sum::<usize>(), 30);
    }

    fn max_requests_per_connection_closes_the_upstream_connection(driver) {
        let policy = "    loadBalancer:\n      simple: ROUND_ROBIN\n    connectionPool:\n      tcp:\n        tcpKeepalive:\n          time: 30s\n          interval: 5s\n          probes: 3\n      http:\n        maxRequestsPerConnection: 2\n";
        let (_gw, addr, backends) = start(driver, policy);
        // Four requests per backend, two per upstream connection.
        assert_eq!(requests_and_connections(addr, &backends, 12), [(4, 2); 3]);
    }

    fn clusters_page_counts_each_endpoints_connections_and_requests(driver) {
        let (gw, addr, backends) = start(driver, "    loadBalancer:\n      simple: ROUND_ROBIN\n");
        let mut c = Conn::open(addr);
        for _ in 0..12 {
            assert_eq!(c.get("/", "app.test").status, 200);
        }
        // One keep-alive client connection on one worker: each endpoint served 4 requests on
        // one upstream connection, which stays open in the pool. The worker ends its count just
        // after the client has its response, so the page is read until it settles.
        let expected: Vec<String> = backends
            .iter()
            .flat_map(|b| {
                [("rq_total", 4), ("rq_active", 0), ("cx_total", 1), ("cx_active", 1), ("cx_connect_fail", 0)]
                    .map(|(field, value)| format!("outbound|80||app.local::{}::{field}::{value}\n", b.addr))
            })
            .collect();
        let settled = wait_until(Duration::from_secs(5), || {
            let page = gw.admin_get("/clusters").1;
            expected.iter().all(|line| page.contains(line.as_str()))
        });
        assert!(settled.is_some(), "{expected:?} in:\n{}", gw.admin_get("/clusters").1);
    }

    fn max_connections_and_pending_requests_overflow_with_503(driver) {
        let policy = "    connectionPool:\n      tcp:\n        maxConnections: 1\n      http:\n        http1MaxPendingRequests: 1\n";
        let (_gw, addr, backend) = start_single(driver, policy);
        let slow = |c: &mut Conn| c.send(b"GET /delay/1500 HTTP/1.1\r\nHost: app.test\r\n\r\n");
        let (mut first, mut pending, mut over) = (Conn::open(addr), Conn::open(addr), Conn::open(addr));
        slow(&mut first);
        wait_until(Duration::from_secs(5), || backend.count() == 1).expect("the first request reached the backend");
        // The one connection is busy: the second request waits for it, the third has no room.
        slow(&mut pending);
        // Time for the gateway to queue it (generous on a busy machine; the first holds 1.5 s).
        std::thread::sleep(Duration::from_millis(300));
        slow(&mut over);
        let overflowed = over.read_response(false);
        assert_eq!(overflowed.status, 503);
        assert_eq!(overflowed.header("x-envoy-overloaded"), Some("true"));
        assert!(overflowed.body_text().ends_with("reset reason: overflow"), "{}", overflowed.body_text());
        assert_eq!(first.read_response(false).status, 200);
        // The pending request got the first one's connection when it was given back.
        assert_eq!(pending.read_response(false).status, 200);
        assert_eq!(backend.count(), 2);
        assert_eq!(backend.connections.load(std::sync::atomic::Ordering::Relaxed), 1);
        // With the load gone, requests flow again.
        assert_eq!(client::get(addr, "app.test", "/").status, 200);
    }

    fn max_retries_bounds_the_clusters_retries_in_flight(driver) {
        // Every try stalls past its 0.4 s per-try timeout and is retried, up to three times.
        let stall = Backend::with_mode("stall", Mode::Stall(Duration::from_secs(3)));
        let port = free_port();
        let http = "  - retries:\n      attempts: 3\n      perTryTimeout: 0.4s\n      retryOn: 5xx\n    route:\n    - destination:\n        host: stall.local\n";
        let rule = format!(
            "{}  host: stall.local\n  trafficPolicy:\n    connectionPool:\n      http:\n        maxRetries: 1\n",
            head("DestinationRule", "stall")
        );
        let parts = [
            http_gateway("gw", port, &["app.test"]),
            virtual_service("app", "gw", &["app.test"], http),
            service_entry("stall", "stall.local", 80, &[stall.port()]),
            rule,
        ];
        let _gw = gateway!(driver).file("gw.yaml", &docs(&parts)).start();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let request = b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n";
        let (mut first, mut second) = (Conn::open(addr), Conn::open(addr));
        first.send(request);
        // The second's first try times out at ~0.6 s, while the first's retries hold the one
        // retry the cluster allows (0.4 s to 1.6 s): it is not retried.
        std::thread::sleep(Duration::from_millis(200));
        second.send(request);
        assert_eq!(second.read_response(false).status, 504);
        assert_eq!(first.read_response(false).status, 504);
        assert_eq!(stall.count(), 4 + 1, "three retries for the first request, none for the second");
    }

    fn round_robin_is_even_across_workers(driver) {
        let (_gw, addr, backends) = start(driver, "    loadBalancer:\n      simple: ROUND_ROBIN\n");
        for _ in 0..300 {
            assert_eq!(client::get(addr, "app.test", "/").status, 200);
        }
        // Each worker takes the backends in turn: at most one off per worker.
        let counts: Vec<usize> = backends.iter().map(Backend::count).collect();
        assert!(counts.iter().all(|&c| c.abs_diff(100) <= 4), "{counts:?}");
    }

    fn least_request_favours_the_fast_backends(driver) {
        let fast = [Backend::start("fast1"), Backend::start("fast2")];
        let slow = Backend::with_mode("slow", Mode::Stall(Duration::from_millis(200)));
        // Eight clients in a closed loop for a second and a half: the slow backend's share of
        // the requests under each policy.
        let slow_share = |simple: &str| {
            let port = free_port();
            let policy = format!("    loadBalancer:\n      simple: {simple}\n");
            let config = app_behind_rule(port, &[fast[0].port(), fast[1].port(), slow.port()], ROUTE, &policy);
            let _gw = gateway!(driver).file("gw.yaml", &config).start();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let total = || fast.iter().chain([&slow]).map(Backend::count).sum::<usize>();
            let before = (total(), slow.count());
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| {
                        let mut c = Conn::open(addr);
                        let end = std::time::Instant::now() + Duration::from_millis(1500);
                        while std::time::Instant::now() < end {
                            assert_eq!(c.get("/", "app.test").status, 200);
                        }
                    });
                }
            });
            (slow.count() - before.1) as f64 / (total() - before.0) as f64
        };
        let round_robin = slow_share("ROUND_ROBIN");
        let least_request = slow_share("LEAST_REQUEST");
        assert!(round_robin > 0.3, "round robin takes each in turn: slow share {round_robin:.2}");
        // Power of two choices picks the busy one only when both choices fall on it (1 in 9).
        assert!(least_request < 0.2, "least request avoids the busy backend: slow share {least_request:.2}");
    }

    fn port_level_settings_replace_the_clusters_policy_wholesale(driver) {
        let policy = "    connectionPool:\n      http:\n        maxRequestsPerConnection: 1\n    portLevelSettings:\n    - port:\n        number: 80\n      loadBalancer:\n        simple: ROUND_ROBIN\n";
        let (_gw, addr, backends) = start(driver, policy);
        // Round robin from the port level; the cluster level's one request per connection is
        // not inherited (istiod's GetPortLevelTrafficPolicy): each backend keeps one connection.
        assert_eq!(requests_and_connections(addr, &backends, 6), [(2, 1); 3]);
    }

    fn a_subsets_policy_overrides_the_clusters(driver) {
        let backends = [Backend::start("b0"), Backend::start("b1"), Backend::start("b2")];
        let port = free_port();
        let ports: Vec<u16> = backends.iter().map(Backend::port).collect();
        let http = "  - match:\n    - headers:\n        x-subset:\n          exact: v1\n    route:\n    - destination:\n        host: app.local\n        subset: v1\n  - route:\n    - destination:\n        host: app.local\n        subset: v2\n";
        // The `subsets:` list follows the cluster's policy in the same rule.
        let policy = "    connectionPool:\n      http:\n        maxRequestsPerConnection: 1\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n    trafficPolicy:\n      connectionPool:\n        http:\n          maxRequestsPerConnection: 3\n  - name: v2\n    labels:\n      version: v2\n";
        let _gw = gateway!(driver).file("gw.yaml", &app_behind_rule(port, &ports, http, policy)).start();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut c = Conn::open(addr);
        for _ in 0..6 {
            c.send(b"GET / HTTP/1.1\r\nHost: app.test\r\nx-subset: v1\r\n\r\n");
            assert_eq!(c.read_response(false).header("x-backend"), Some("b1"));
            assert_eq!(c.get("/", "app.test").header("x-backend"), Some("b2"));
        }
        let connections = |b: &Backend| b.connections.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(connections(&backends[1]), 2, "subset v1: three requests per connection");
        assert_eq!(connections(&backends[2]), 6, "subset v2: the cluster's one request per connection");
    }
}
