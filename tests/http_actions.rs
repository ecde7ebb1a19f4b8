//! VirtualService HTTP route actions end to end, as an Istio gateway applies them: rewrites,
//! redirects, direct responses, header edits, retries, faults, mirrors and CORS, each checked
//! on what the client and the backends see.

use strait_test_support::{self as support, both_drivers, gateway};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::backend::{Backend, Mode};
use support::client::{self, Conn};
use support::config::{docs, head, http_gateway, service_entry, virtual_service};
use support::{free_port, wait_until, Driver, Gateway};

/// A gateway on a fresh port for `app.test` with the `http:` routes given, plus `extra`
/// documents (ServiceEntries for the hosts the routes name).
fn start(driver: Driver, http: &str, extra: Vec<String>, args: &[&str]) -> (Gateway, SocketAddr) {
    args.iter().fold(gateway!(driver), |g, a| g.arg(a)).start_app(http, extra)
}

fn get(addr: SocketAddr, path: &str) -> client::Response {
    client::get(addr, "app.test", path)
}

fn post(addr: SocketAddr, path: &str, body: &[u8]) -> client::Response {
    let mut c = Conn::open(addr);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    c.send(head.as_bytes());
    c.send(body);
    c.read_response(false)
}

/// A route `name` on uri prefix `prefix` to `host`, with `more` YAML (indented for the route).
fn route(prefix: &str, host: &str, more: &str) -> String {
    format!("  - match:\n    - uri:\n        prefix: {prefix}\n{more}    route:\n    - destination:\n        host: {host}\n")
}

both_drivers! {
    fn uri_and_authority_rewrites(driver) {
        let b = Backend::start("app");
        let http = [
            route("/strip", "app.local", "    rewrite:\n      uri: /\n"),
            "  - match:\n    - headers:\n        x-rw:\n          exact: \"1\"\n    rewrite:\n      uri: /v3\n    route:\n    - destination:\n        host: app.local\n".to_string(),
            "  - match:\n    - uri:\n        exact: /exact\n    rewrite:\n      uri: /replaced\n      authority: new.test\n    route:\n    - destination:\n        host: app.local\n".to_string(),
            route("/service/", "app.local", "    rewrite:\n      uriRegexRewrite:\n        match: ^/service/([^/]+)(/.*)$\n        rewrite: '/customprefix/\\2/\\1'\n"),
        ]
        .concat();
        let (_gw, addr) = start(driver, &http, vec![service_entry("app", "app.local", 80, &[b.port()])], &[]);

        assert_eq!(get(addr, "/strip/foo?q=1").status, 200);
        assert_eq!(b.last().target, "//foo?q=1", "the matched prefix is replaced literally");
        let resp = client::request(addr, "GET /foo HTTP/1.1\r\nHost: app.test\r\nx-rw: 1\r\nConnection: close\r\n\r\n");
        assert_eq!(resp.status, 200);
        assert_eq!(b.last().target, "/v3foo", "no uri match: the implicit prefix is /");
        assert_eq!(get(addr, "/exact?a=b").status, 200);
        let seen = b.last();
        assert_eq!(seen.target, "/replaced?a=b");
        assert_eq!(seen.header("host"), Some("new.test"));
        assert_eq!(get(addr, "/service/v1/api/update?x").status, 200);
        assert_eq!(b.last().target, "/customprefix//api/update/v1?x");
    }

    fn weights_are_relative_at_start_and_reload(driver) {
        let backends = [Backend::start("a"), Backend::start("b"), Backend::start("c")];
        let port = free_port();
        let config = |weights: [(&str, u32); 2]| {
            let http: String = weights
                .iter()
                .map(|(host, w)| format!("    - destination:\n        host: {host}.local\n      weight: {w}\n"))
                .collect();
            let mut parts = vec![http_gateway("gw", port, &["app.test"]), virtual_service("app", "gw", &["app.test"], &format!("  - route:\n{http}"))];
            parts.extend(backends.iter().map(|b| service_entry(&b.name, &format!("{}.local", b.name), 80, &[b.port()])));
            docs(&parts)
        };
        // Each destination gets weight/sum, as Envoy's weighted clusters; istiod refuses only
        // a total of 0. Binomial(400, 1/4): 100 expected, a standard deviation under 9.
        let split = |c: &mut Conn| {
            let mut got = std::collections::BTreeMap::new();
            for _ in 0..400 {
                let resp = c.get("/", "app.test");
                assert_eq!(resp.status, 200);
                *got.entry(resp.header("x-backend").unwrap().to_string()).or_insert(0) += 1;
            }
            got
        };
        let gw = gateway!(driver).file("gw.yaml", &config([("a", 1), ("b", 3)])).start();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut c = Conn::open(addr);
        let got = split(&mut c);
        assert!((50..=150).contains(&got["a"]) && got["a"] + got["b"] == 400, "weights 1 and 3: {got:?}");

        // A reload to 30 and 10 (40 in all) is applied too.
        gw.wait_generation(1);
        gw.write_config("gw.yaml", &config([("c", 30), ("a", 10)]));
        gw.signal("HUP");
        gw.wait_generation(2);
        // This connection's worker serves the new routes once it has answered from c.
        wait_until(Duration::from_secs(5), || c.get("/", "app.test").header("x-backend") == Some("c"))
            .unwrap_or_else(|| panic!("the reload never reached the worker; logs:\n{}", gw.logs()));
        let got = split(&mut c);
        assert!((50..=150).contains(&got["a"]) && got["a"] + got["c"] == 400, "weights 30 and 10: {got:?}");
    }

    fn redirects_and_their_precedence_over_later_rewrites(driver) {
        let port = free_port();
        let redirect = |prefix: &str, spec: &str| {
            format!("  - match:\n    - uri:\n        prefix: {prefix}\n    redirect:\n{spec}")
        };
        let http = [
            redirect("/tls", "      scheme: https\n      port: 8443\n      uri: /secure\n"),
            redirect("/here", "      authority: other.test\n      derivePort: FROM_REQUEST_PORT\n"),
            redirect("/https", "      scheme: https\n"),
            redirect("/temp", "      uri: /elsewhere\n      redirectCode: 308\n"),
            redirect("/both", "      uri: /redirected\n"),
            route("/both", "app.local", "    rewrite:\n      uri: /rewritten\n"),
            route("/rw", "app.local", "    rewrite:\n      uri: /rewritten\n"),
            redirect("/rw", "      uri: /redirected\n"),
        ]
        .concat();
        let b = Backend::start("app");
        let secure = format!(
            "{}  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: {port}\n      name: http-{port}\n      protocol: HTTP\n    hosts:\n    - secure.test\n    tls:\n      httpsRedirect: true\n",
            head("Gateway", "secure")
        );
        let (_gw, addr) = start(driver, &http, vec![service_entry("app", "app.local", 80, &[b.port()]), secure], &[]);

        let resp = get(addr, "/tls/x?q=1");
        assert_eq!((resp.status, resp.header("location")), (301, Some("https://app.test:8443/secure?q=1")));
        let resp = get(addr, "/here/x");
        let expected = format!("http://other.test:{}/here/x", addr.port());
        assert_eq!(resp.header("location"), Some(expected.as_str()));
        let resp = client::get(addr, "app.test:80", "/https/p?k=v");
        assert_eq!(resp.header("location"), Some("https://app.test:80/https/p?k=v"), "the request's port is kept");
        let resp = get(addr, "/https/p");
        assert_eq!(resp.header("location"), Some("https://app.test/https/p"));
        let resp = get(addr, "/temp");
        assert_eq!((resp.status, resp.header("location")), (308, Some("http://app.test/elsewhere")));
        assert!(resp.body.is_empty());

        let resp = get(addr, "/both");
        assert_eq!((resp.status, resp.header("location")), (301, Some("http://app.test/redirected")));
        assert_eq!(get(addr, "/rw").status, 200);
        assert_eq!(b.last().target, "/rewritten", "the first matching route wins");
        assert_eq!(b.count(), 1);

        let other: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let resp = client::get(other, "secure.test:8080", "/a/b?c=d");
        assert_eq!((resp.status, resp.header("location")), (301, Some("https://secure.test:8080/a/b?c=d")));
    }

    fn direct_responses(driver) {
        let direct = |path: &str, spec: &str| {
            format!("  - match:\n    - uri:\n        exact: {path}\n    directResponse:\n{spec}")
        };
        let http = [
            direct("/text", "      status: 200\n      body:\n        string: hello there\n"),
            direct("/bytes", "      status: 503\n      body:\n        bytes: aGVsbG8=\n"),
            direct("/empty", "      status: 204\n"),
            direct("/unchanged", "      status: 304\n"),
            format!(
                "{}    headers:\n      response:\n        set:\n          x-direct: yes\n",
                direct("/edited", "      status: 200\n      body:\n        string: edited\n")
            ),
            format!(
                "{}    headers:\n      response:\n        set:\n          content-type: application/json\n",
                direct("/typed", "      status: 200\n      body:\n        string: \"{}\"\n")
            ),
        ]
        .concat();
        let (_gw, addr) = start(driver, &http, vec![], &[]);
        let resp = get(addr, "/text");
        assert_eq!((resp.status, resp.body_text().as_str()), (200, "hello there"));
        assert_eq!(resp.header("content-type"), Some("text/plain"));
        let resp = get(addr, "/bytes");
        assert_eq!((resp.status, resp.body_text().as_str()), (503, "hello"));
        let resp = get(addr, "/empty");
        assert_eq!(resp.status, 204);
        assert_eq!(resp.header("content-type"), None);
        // A 304 says nothing of a length (it would be the representation's): the next answer
        // on the connection follows its head.
        let mut c = Conn::open(addr);
        let resp = c.get("/unchanged", "app.test");
        assert_eq!((resp.status, resp.header("content-length")), (304, None), "{:?}", resp.headers);
        assert_eq!(c.get("/text", "app.test").body_text(), "hello there");
        let resp = client::request(addr, "HEAD /text HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
        assert_eq!((resp.status, resp.header("content-length")), (200, Some("11")));
        assert!(resp.body.is_empty());
        let resp = get(addr, "/edited");
        assert_eq!((resp.header("x-direct"), resp.body_text().as_str()), (Some("yes"), "edited"));
        let resp = get(addr, "/typed");
        assert_eq!(resp.header_all("content-type"), ["application/json"], "the route's set replaces the default");
        assert_eq!(resp.body_text(), "{}");
    }

    fn header_edits_at_route_and_destination(driver) {
        let b = Backend::start("app");
        let http = "  - match:
    - uri:
        prefix: /h
    headers:
      request:
        set:
          x-set: route
          x-both: route
        add:
          x-add: route
        remove:
        - x-drop
      response:
        set:
          x-resp-set: route
        add:
          x-resp-add: route
        remove:
        - x-backend
    route:
    - destination:
        host: app.local
      headers:
        request:
          set:
            x-both: dest
            x-dest: dest
        response:
          set:
            x-resp-dest: dest
  - match:
    - uri:
        prefix: /authority
    headers:
      request:
        set:
          host: set.test
    route:
    - destination:
        host: app.local
";
        let (_gw, addr) = start(driver, http, vec![service_entry("app", "app.local", 80, &[b.port()])], &[]);
        let resp = client::request(
            addr,
            "GET /h HTTP/1.1\r\nHost: app.test\r\nx-set: client\r\nx-add: client\r\nx-drop: bye\r\nx-keep: yes\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(resp.status, 200);
        let seen = b.last();
        assert_eq!(seen.header_all("x-set"), ["route"]);
        assert_eq!(seen.header_all("x-add"), ["client", "route"]);
        assert_eq!(seen.header_all("x-both"), ["route"], "the route's set wins over the destination's");
        assert_eq!(seen.header_all("x-dest"), ["dest"]);
        assert_eq!(seen.header("x-drop"), None);
        assert_eq!(seen.header("x-keep"), Some("yes"));
        assert_eq!(resp.header_all("x-resp-set"), ["route"]);
        assert_eq!(resp.header_all("x-resp-add"), ["route"]);
        assert_eq!(resp.header_all("x-resp-dest"), ["dest"]);
        assert_eq!(resp.header("x-backend"), None);
        assert_eq!(resp.body_text(), "app");

        assert_eq!(get(addr, "/authority").status, 200);
        assert_eq!(b.last().header_all("host"), ["set.test"]);
    }

    fn retries_as_istio_configures_them(driver) {
        let bad = Backend::with_mode("bad", Mode::Status(503));
        let good = Backend::start("good");
        let stall = Backend::with_mode("stall", Mode::Stall(Duration::from_secs(3)));
        let retries = |spec: &str| format!("    retries:\n{spec}");
        let http = [
            route("/r5xx", "mixed.local", &retries("      attempts: 2\n      retryOn: 5xx\n")),
            route("/default", "bad.local", ""),
            route("/exhaust", "bad.local", &retries("      attempts: 2\n      retryOn: gateway-error\n")),
            route("/codes", "bad.local", &retries("      attempts: 1\n      retryOn: retriable-status-codes,503\n")),
            route("/off", "bad.local", &retries("      attempts: 0\n")),
            route("/pertry", "slowmix.local", &retries("      attempts: 2\n      perTryTimeout: 0.3s\n      retryOn: 5xx\n")),
            route("/stalled", "stall.local", &retries("      attempts: 1\n      perTryTimeout: 0.2s\n      retryOn: reset\n")),
        ]
        .concat();
        let extra = vec![
            service_entry("mixed", "mixed.local", 80, &[bad.port(), good.port()]),
            service_entry("bad", "bad.local", 80, &[bad.port()]),
            service_entry("slowmix", "slowmix.local", 80, &[stall.port(), good.port()]),
            service_entry("stall", "stall.local", 80, &[stall.port()]),
        ];
        let (gw, addr) = start(driver, &http, extra, &[]);

        for _ in 0..12 {
            let resp = get(addr, "/r5xx");
            assert_eq!((resp.status, resp.body_text().as_str()), (200, "good"), "a 503 is retried on the other host");
        }
        assert!(bad.count() > 0, "least-request spread the first tries over both hosts");

        let counted = |path: &str, body: &[u8]| {
            let before = bad.count();
            let resp = if body.is_empty() { get(addr, path) } else { post(addr, path, body) };
            (resp.status, bad.count() - before)
        };
        assert_eq!(counted("/default", b""), (503, 1), "Istio's default policy does not retry a 503");
        assert_eq!(counted("/exhaust", b""), (503, 3), "two retries, then the last answer is relayed");
        assert_eq!(counted("/codes", b""), (503, 2));
        assert_eq!(counted("/off", b""), (503, 1));
        let small = vec![b'x'; 9000];
        assert_eq!(counted("/exhaust", &small), (503, 3), "a body held whole is replayed");
        assert!(bad.requests().iter().rev().take(3).all(|r| r.body == small));
        let large = vec![b'y'; 200_000];
        assert_eq!(counted("/exhaust", &large), (503, 1), "a body streamed through is not retried");

        let began = Instant::now();
        for _ in 0..6 {
            let resp = get(addr, "/pertry");
            assert_eq!((resp.status, resp.body_text().as_str()), (200, "good"), "a try that times out is retried");
        }
        assert!(began.elapsed() < Duration::from_secs(3), "no try waited for the stalled host");
        let stalled = stall.count();
        assert!(stalled > 0);

        let began = Instant::now();
        let resp = get(addr, "/stalled");
        assert_eq!((resp.status, resp.body_text().as_str()), (504, "upstream request timeout"));
        assert!(began.elapsed() < Duration::from_secs(2));
        assert!(wait_until(Duration::from_secs(2), || stall.count() == stalled + 2).is_some(), "two tries reached it");

        let (_, stats) = gw.admin_get("/stats/prometheus");
        let retried = support::metric_sum(&stats, "envoy_cluster_upstream_rq_retry");
        assert!(retried >= 8.0, "retries counted: {retried}");
    }

    fn tries_carry_attempt_count_and_expected_timeout(driver) {
        let bad = Backend::with_mode("bad", Mode::Status(503));
        let good = Backend::start("good");
        let http = [
            route(
                "/tries",
                "bad.local",
                "    timeout: 5s\n    retries:\n      attempts: 2\n      perTryTimeout: 1s\n      retryOn: 5xx\n",
            ),
            route("/timed", "good.local", "    timeout: 2s\n"),
            route("/", "good.local", ""),
        ]
        .concat();
        let extra =
            vec![service_entry("bad", "bad.local", 80, &[bad.port()]), service_entry("good", "good.local", 80, &[good.port()])];
        let (_gw, addr) = start(driver, &http, extra, &[]);

        // Each try is stamped anew, the body replayed behind the rewritten head; the per-try
        // timeout is the shorter one, and far from the route's end.
        let body = vec![b'z'; 9000];
        let mut c = Conn::open(addr);
        c.send(format!("POST /tries HTTP/1.1\r\nHost: app.test\r\nx-envoy-attempt-count: 9\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
        c.send(&body);
        assert_eq!(c.read_response(false).status, 503);
        let tries = bad.requests();
        let stamp = |r: &support::backend::Received| {
            (r.header_all("x-envoy-attempt-count").join(","), r.header("x-envoy-expected-rq-timeout-ms").map(str::to_string))
        };
        let stamps: Vec<_> = tries.iter().map(stamp).collect();
        let want: Vec<_> = ["1", "2", "3"].iter().map(|n| (n.to_string(), Some("1000".to_string()))).collect();
        assert_eq!(stamps, want);
        assert!(tries.iter().all(|r| r.body == body), "the body follows each rewritten head");

        assert_eq!(get(addr, "/timed").status, 200);
        assert_eq!(stamp(&good.last()), ("1".to_string(), Some("2000".to_string())), "the route's timeout");
        assert_eq!(get(addr, "/plain").status, 200);
        assert_eq!(stamp(&good.last()), ("1".to_string(), None), "no timeout, none expected");
    }

    fn faults_abort_and_delay(driver) {
        let b = Backend::start("app");
        let fault = |spec: &str| format!("    fault:\n{spec}");
        let http = [
            route("/abort", "app.local", &fault("      abort:\n        httpStatus: 418\n        percentage:\n          value: 100\n")),
            route("/unset", "app.local", &fault("      abort:\n        httpStatus: 500\n")),
            route("/delay", "app.local", &fault("      delay:\n        fixedDelay: 0.3s\n        percentage:\n          value: 100\n")),
            route("/half", "app.local", &fault("      abort:\n        httpStatus: 503\n        percentage:\n          value: 50\n")),
        ]
        .concat();
        let (_gw, addr) = start(driver, &http, vec![service_entry("app", "app.local", 80, &[b.port()])], &[]);

        let resp = get(addr, "/abort");
        assert_eq!((resp.status, resp.body_text().as_str()), (418, "fault filter abort"));
        assert_eq!(resp.header("content-type"), Some("text/plain"));
        assert_eq!(b.count(), 0, "an abort never reaches the upstream");
        assert_eq!(get(addr, "/unset").status, 200, "no percentage means 0%");

        let began = Instant::now();
        assert_eq!(get(addr, "/delay").status, 200);
        assert!(began.elapsed() >= Duration::from_millis(300));

        let mut c = Conn::open(addr);
        let aborted = (0..200).filter(|_| c.get("/half", "app.test").status == 503).count();
        assert!((60..=140).contains(&aborted), "about half aborted: {aborted}");
    }

    fn mirrors_are_fire_and_forget(driver) {
        let primary = Backend::start("primary");
        let mirror = Backend::start("mirror");
        let slow = Backend::with_mode("slow", Mode::Stall(Duration::from_secs(3)));
        let bad = Backend::with_mode("bad", Mode::Status(503));
        let mirrored = |host: &str, pct: &str| format!("    mirror:\n      host: {host}\n{pct}");
        let http = [
            route("/m", "primary.local", &mirrored("mirror.local", "")),
            route("/slow", "primary.local", &mirrored("slow.local", "")),
            route("/none", "primary.local", &mirrored("mirror.local", "    mirrorPercentage:\n      value: 0\n")),
            route(
                "/retried",
                "mixed.local",
                &format!("{}    retries:\n      attempts: 1\n      retryOn: 5xx\n", mirrored("mirror.local", "")),
            ),
        ]
        .concat();
        let extra = vec![
            service_entry("primary", "primary.local", 80, &[primary.port()]),
            service_entry("mirror", "mirror.local", 80, &[mirror.port()]),
            service_entry("slow", "slow.local", 80, &[slow.port()]),
            service_entry("mixed", "mixed.local", 80, &[bad.port(), primary.port()]),
        ];
        let (_gw, addr) = start(driver, &http, extra, &[]);

        let resp = post(addr, "/m/x?q=1", b"payload");
        assert_eq!((resp.status, resp.body_text().as_str()), (200, "primary"));
        assert!(wait_until(Duration::from_secs(5), || mirror.count() == 1).is_some());
        let (copy, original) = (mirror.last(), primary.last());
        assert_eq!(copy.target, "/m/x?q=1");
        assert_eq!(copy.header("host"), Some("app.test"), "Istio ≥ 1.28 keeps the Host");
        assert_eq!(copy.body, b"payload");
        assert_eq!(copy.header("x-request-id"), original.header("x-request-id"));

        let began = Instant::now();
        for _ in 0..3 {
            assert_eq!(get(addr, "/slow").body_text(), "primary");
        }
        assert!(began.elapsed() < Duration::from_secs(2), "a stalled mirror never delays the primary");

        assert_eq!(get(addr, "/none").status, 200);
        let before = mirror.count();
        for _ in 0..4 {
            assert_eq!(get(addr, "/retried").body_text(), "primary");
        }
        assert!(wait_until(Duration::from_secs(5), || mirror.count() == before + 4).is_some());
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(mirror.count(), before + 4, "one copy per request, retried or not; none for 0%");
    }

    fn mirror_host_with_the_shadow_suffix(driver) {
        let primary = Backend::start("primary");
        let mirror = Backend::start("mirror");
        let http = route("/", "primary.local", "    mirror:\n      host: mirror.local\n");
        let extra = vec![
            service_entry("primary", "primary.local", 80, &[primary.port()]),
            service_entry("mirror", "mirror.local", 80, &[mirror.port()]),
        ];
        let (_gw, addr) = start(driver, &http, extra, &["--mirror-shadow-suffix"]);
        assert_eq!(client::get(addr, "app.test:8080", "/").status, 200);
        assert!(wait_until(Duration::from_secs(5), || mirror.count() == 1).is_some());
        assert_eq!(mirror.last().header("host"), Some("app.test-shadow:8080"));
        assert_eq!(primary.last().header("host"), Some("app.test:8080"));
    }

    fn cors_preflights_and_actual_responses(driver) {
        let b = Backend::start("app");
        let cors = |extra: &str| {
            format!(
                "    corsPolicy:
      allowOrigins:
      - exact: https://a.example
      - prefix: https://b.
      - regex: https://c[0-9]\\.example
      allowMethods:
      - GET
      - POST
      allowHeaders:
      - x-one
      - x-two
      exposeHeaders:
      - x-exposed
      maxAge: 90s
      allowCredentials: true
{extra}"
            )
        };
        let http = [
            route("/ignore", "app.local", &cors("      unmatchedPreflights: IGNORE\n")),
            format!(
                "  - match:\n    - uri:\n        exact: /direct\n    directResponse:\n      status: 200\n{}",
                cors("")
            ),
            route("/", "app.local", &cors("")),
        ]
        .concat();
        let (_gw, addr) = start(driver, &http, vec![service_entry("app", "app.local", 80, &[b.port()])], &[]);
        let preflight = |path: &str, origin: &str| {
            client::request(
                addr,
                &format!("OPTIONS {path} HTTP/1.1\r\nHost: app.test\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"),
            )
        };
        for origin in ["https://a.example", "https://b.anything", "https://c7.example"] {
            let resp = preflight("/x", origin);
            assert_eq!(resp.status, 200);
            assert_eq!(resp.header("access-control-allow-origin"), Some(origin));
            assert_eq!(resp.header("access-control-allow-methods"), Some("GET,POST"));
            assert_eq!(resp.header("access-control-allow-headers"), Some("x-one,x-two"));
            assert_eq!(resp.header("access-control-max-age"), Some("90"));
            assert_eq!(resp.header("access-control-allow-credentials"), Some("true"));
        }
        assert_eq!(b.count(), 0, "allowed preflights are answered at the gateway");

        let resp = preflight("/x", "https://evil.example");
        assert_eq!((resp.status, resp.body_text().as_str()), (200, "app"), "unmatched preflights are forwarded");
        assert_eq!(resp.header("access-control-allow-origin"), None);
        assert_eq!(b.count(), 1);
        let resp = preflight("/ignore", "https://evil.example");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("access-control-allow-origin"), None);
        assert_eq!(b.count(), 1, "IGNORE answers at the gateway");

        let resp = client::request(addr, "GET /y HTTP/1.1\r\nHost: app.test\r\nOrigin: https://a.example\r\nConnection: close\r\n\r\n");
        assert_eq!((resp.status, resp.body_text().as_str()), (200, "app"));
        assert_eq!(resp.header("access-control-allow-origin"), Some("https://a.example"));
        assert_eq!(resp.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(resp.header("access-control-expose-headers"), Some("x-exposed"));
        let resp = client::request(addr, "GET /y HTTP/1.1\r\nHost: app.test\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n");
        assert_eq!(resp.header("access-control-allow-origin"), None);
        assert_eq!(get(addr, "/y").header("access-control-allow-origin"), None, "no Origin, no CORS");
        let resp = client::request(addr, "GET /direct HTTP/1.1\r\nHost: app.test\r\nOrigin: https://c1.example\r\nConnection: close\r\n\r\n");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("access-control-allow-origin"), Some("https://c1.example"), "the gateway's own answers too");
    }
}
