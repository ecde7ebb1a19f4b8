//! gRPC semantics the HTTP/2 codec does not decide, end to end over HTTP/1.1 with raw requests
//! carrying `content-type: application/grpc`: the gateway's own answers as gRPC answers,
//! `retryOn` gRPC conditions, and `grpc-timeout` as Envoy handles it under istiod's config.

use strait_test_support::{self as support, both_drivers, gateway};

use std::net::SocketAddr;
use std::time::Duration;

use support::backend::{Backend, Mode};
use support::client::{self, Response};
use support::config::{app_behind_rule, service_entry};
use support::{free_port, Driver, Gateway};

/// A gateway on a fresh port for `app.test` with the `http:` routes given, plus `extra`
/// documents (ServiceEntries for the hosts the routes name).
fn start(driver: Driver, http: &str, extra: Vec<String>, args: &[&str]) -> (Gateway, SocketAddr) {
    args.iter().fold(gateway!(driver), |g, a| g.arg(a)).start_app(http, extra)
}

/// A route on uri prefix `prefix` to `host`, with `more` YAML (indented for the route).
fn route(prefix: &str, host: &str, more: &str) -> String {
    format!("  - match:\n    - uri:\n        prefix: {prefix}\n{more}    route:\n    - destination:\n        host: {host}\n")
}

/// A unary gRPC call as HTTP/1.1 carries it: POST, `application/grpc`, one empty message;
/// `lines` are added to the head.
fn call(addr: SocketAddr, path: &str, lines: &str) -> Response {
    client::request(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: app.test\r\ncontent-type: application/grpc\r\nte: trailers\r\n{lines}\
             content-length: 5\r\nConnection: close\r\n\r\n\0\0\0\0\0"
        ),
    )
}

/// The same request, not gRPC.
fn post(addr: SocketAddr, path: &str) -> Response {
    client::request(
        addr,
        &format!("POST {path} HTTP/1.1\r\nHost: app.test\r\ncontent-length: 5\r\nConnection: close\r\n\r\n\0\0\0\0\0"),
    )
}

/// A gRPC answer of the gateway's own: 200, trailers-only (no body), this `grpc-status` and
/// `grpc-message`.
fn assert_grpc_answer(resp: &Response, status: &str, message: Option<&str>) {
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("content-type"), Some("application/grpc"), "{resp:?}");
    assert_eq!(resp.header("grpc-status"), Some(status), "{resp:?}");
    assert_eq!(resp.header("grpc-message"), message, "{resp:?}");
    assert_eq!(resp.header("content-length"), Some("0"), "{resp:?}");
    assert!(resp.body.is_empty(), "{resp:?}");
}

both_drivers! {
    fn the_gateways_own_answers_to_grpc_are_grpc_answers(driver) {
        let app = Backend::start("app");
        let stall = Backend::with_mode("stall", Mode::Stall(Duration::from_secs(3)));
        let fault = |abort: &str| format!("    fault:\n      abort:\n        {abort}\n        percentage:\n          value: 100\n");
        let http = [
            route("/pkg.Slow/", "stall.local", "    timeout: 0.2s\n"),
            route("/pkg.Empty/", "empty.local", ""),
            route("/pkg.Refused/", "dead.local", ""),
            route("/pkg.Abort/", "app.local", &fault("grpcStatus: RESOURCE_EXHAUSTED")),
            route("/pkg.HttpAbort/", "app.local", &fault("httpStatus: 403")),
            route("/pkg.App/", "app.local", ""),
        ]
        .concat();
        let extra = vec![
            service_entry("app", "app.local", 80, &[app.port()]),
            service_entry("stall", "stall.local", 80, &[stall.port()]),
            service_entry("empty", "empty.local", 80, &[]),
            service_entry("dead", "dead.local", 80, &[support::closed_port()]),
        ];
        let (gw, addr) = start(driver, &http, extra, &[]);

        // No route: Envoy's 404 is UNIMPLEMENTED, with no message (its body is empty).
        assert_grpc_answer(&call(addr, "/pkg.Nowhere/Call", ""), "12", None);
        assert_grpc_answer(&call(addr, "/pkg.Empty/Call", ""), "14", Some("no healthy upstream"));
        let refused = "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
        assert_grpc_answer(&call(addr, "/pkg.Refused/Call", ""), "14", Some(refused));
        // The route's timeout is the router's 504, which Envoy maps to UNAVAILABLE.
        assert_grpc_answer(&call(addr, "/pkg.Slow/Call", ""), "14", Some("upstream request timeout"));
        assert_grpc_answer(&call(addr, "/pkg.Abort/Call", ""), "8", Some("fault filter abort"));
        assert_grpc_answer(&call(addr, "/pkg.HttpAbort/Call", ""), "7", Some("fault filter abort"));
        assert_eq!(app.count(), 0);
        let resp = call(addr, "/pkg.App/Call", "");
        assert_eq!((resp.status, resp.body_text().as_str()), (200, "app"), "the upstream's answer passes as it is");
        // Counted as the 200 they are, as Envoy counts them.
        let (_, stats) = gw.admin_get("/stats/prometheus");
        let counted = |code: &str| {
            let label = format!("envoy_response_code=\"{code}\"");
            stats.lines().any(|l| l.starts_with("envoy_http_downstream_rq{") && l.contains(&label))
        };
        assert!(counted("200") && !counted("404") && !counted("503") && !counted("504"), "{stats}");

        // Not gRPC: the same answers as ever.
        let resp = post(addr, "/pkg.Nowhere/Call");
        assert_eq!((resp.status, resp.header("content-length"), resp.header("grpc-status")), (404, Some("0"), None));
        let resp = post(addr, "/pkg.Slow/Call");
        assert_eq!((resp.status, resp.body_text().as_str()), (504, "upstream request timeout"));
        // A grpcStatus abort is an HTTP 200 to a client that is not gRPC, as Envoy's fault filter answers.
        let resp = post(addr, "/pkg.Abort/Call");
        assert_eq!((resp.status, resp.body_text().as_str(), resp.header("grpc-status")), (200, "fault filter abort", None));
        let resp = client::request(
            addr,
            "POST /pkg.Nowhere/Call HTTP/1.1\r\nHost: app.test\r\ncontent-type: application/grpc-web\r\ncontent-length: 0\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(resp.status, 404, "grpc-web is not gRPC");
    }

    fn the_maximum_request_duration_is_deadline_exceeded(driver) {
        let stall = Backend::with_mode("stall", Mode::Stall(Duration::from_secs(3)));
        let http = route("/", "stall.local", "");
        let extra = vec![service_entry("stall", "stall.local", 80, &[stall.port()])];
        let (_gw, addr) = start(driver, &http, extra, &["--max-request-duration", "0.3s"]);
        // Envoy's connection manager gives DEADLINE_EXCEEDED where it is not mapped from its 408.
        assert_grpc_answer(&call(addr, "/pkg.Svc/Call", ""), "4", Some("downstream duration timeout"));
        let resp = post(addr, "/pkg.Svc/Call");
        assert_eq!((resp.status, resp.body_text().as_str()), (408, "downstream duration timeout"));
    }

    fn retry_on_grpc_conditions_reads_the_status_in_the_response_head(driver) {
        let unavailable = Backend::with_mode("unavailable", Mode::Grpc(14));
        let good = Backend::start("good");
        let retries = |on: &str| format!("    retries:\n      attempts: 2\n      retryOn: {on}\n");
        let http = [
            route("/pkg.Mixed/", "mixed.local", &retries("unavailable")),
            route("/pkg.Internal/", "bad.local", &retries("internal,cancelled")),
            route("/pkg.Bad/", "bad.local", &retries("unavailable")),
            route("/pkg.Default/", "bad.local", ""),
            route("/grpc-trailers/", "good.local", &retries("unavailable")),
        ]
        .concat();
        let extra = vec![
            service_entry("mixed", "mixed.local", 80, &[unavailable.port(), good.port()]),
            service_entry("bad", "bad.local", 80, &[unavailable.port()]),
            service_entry("good", "good.local", 80, &[good.port()]),
        ];
        let (gw, addr) = start(driver, &http, extra, &["--access-log"]);

        for _ in 0..12 {
            let resp = call(addr, "/pkg.Mixed/Call", "");
            assert_eq!((resp.status, resp.header("grpc-status"), resp.body_text().as_str()), (200, None, "good"));
        }
        assert!(unavailable.count() > 0, "least-request spread the first tries over both hosts");

        let counted = |path: &str| {
            let before = (unavailable.count(), good.count());
            let resp = call(addr, path, "");
            (resp.status, resp.header("grpc-status").map(str::to_string), unavailable.count() - before.0, good.count() - before.1)
        };
        let fourteen = Some("14".to_string());
        assert_eq!(counted("/pkg.Internal/Call"), (200, fourteen.clone(), 1, 0), "UNAVAILABLE is not INTERNAL");
        assert_eq!(counted("/pkg.Bad/Call"), (200, fourteen.clone(), 3, 0), "two retries, then the last answer is relayed");
        assert_eq!(counted("/pkg.Default/Call"), (200, fourteen, 3, 0), "Istio's default policy retries UNAVAILABLE");
        let before = unavailable.count();
        assert_eq!(post(addr, "/pkg.Default/Call").header("grpc-status"), Some("14"));
        assert_eq!(unavailable.count() - before, 1, "the response to a request that is not gRPC is not read for it");
        // Retries ran out on a status the policy retries: Envoy's URX, the status as relayed.
        let logged = |path: &str| {
            let find = || gw.stdout().lines().find(|l| l.contains(&format!(" {path} "))).map(str::to_owned);
            support::wait_until(Duration::from_secs(5), || find().is_some());
            let line = find().unwrap_or_else(|| panic!("no {path} in\n{}", gw.stdout()));
            line.split(' ').skip(4).take(2).map(str::to_owned).collect::<Vec<_>>()
        };
        assert_eq!(logged("/pkg.Bad/Call"), ["200", "URX"]);
        assert_eq!(logged("/pkg.Internal/Call"), ["200", "-"], "not a status the policy retries");
        // The status after the body: the response began, Envoy does not retry it.
        let before = good.count();
        let resp = call(addr, "/grpc-trailers/14", "");
        assert_eq!((resp.status, resp.header("content-type")), (200, Some("application/grpc")));
        assert_eq!(good.count() - before, 1, "one try");
    }

    fn a_grpc_status_in_the_response_head_counts_for_outlier_detection(driver) {
        let unavailable = Backend::with_mode("unavailable", Mode::Grpc(14));
        let good = Backend::start("good");
        let port = free_port();
        let http = "  - retries:\n      attempts: 0\n    route:\n    - destination:\n        host: app.local\n";
        let policy = "    loadBalancer:\n      simple: ROUND_ROBIN\n    outlierDetection:\n      consecutive5xxErrors: 2\n      baseEjectionTime: 60s\n";
        let yaml = app_behind_rule(port, &[unavailable.port(), good.port()], http, policy);
        let _gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // UNAVAILABLE stands for 503, as Envoy's router tells outlier detection.
        for _ in 0..20 {
            if unavailable.count() == 2 {
                break;
            }
            call(addr, "/pkg.Svc/Call", "");
        }
        assert_eq!(unavailable.count(), 2);
        for _ in 0..6 {
            assert_eq!(call(addr, "/pkg.Svc/Call", "").body_text(), "good");
        }
        assert_eq!(unavailable.count(), 2, "ejected after two");
    }

    fn grpc_timeout_is_the_timeout_capped_by_the_routes_as_istiod_configures_envoy(driver) {
        let app = Backend::start("app");
        let stall = Backend::with_mode("stall", Mode::Stall(Duration::from_millis(1500)));
        let capped = "    timeout: 0.3s\n";
        let http = [
            route("/pkg.Fast/", "app.local", ""),
            route("/pkg.Capped/", "app.local", capped),
            route("/pkg.Slow/", "stall.local", ""),
            route("/pkg.SlowCapped/", "stall.local", capped),
        ]
        .concat();
        let extra = vec![
            service_entry("app", "app.local", 80, &[app.port()]),
            service_entry("stall", "stall.local", 80, &[stall.port()]),
        ];
        let (_gw, addr) = start(driver, &http, extra, &[]);
        let seen = |path: &str, lines: &str| {
            assert_eq!(call(addr, path, lines).status, 200);
            let last = app.last();
            let line = |n: &str| last.header_all(n).iter().map(|v| v.to_string()).collect::<Vec<_>>();
            (line("grpc-timeout"), line("x-envoy-expected-rq-timeout-ms"))
        };
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Envoy's router rewrites grpc-timeout to the time the upstream really has.
        assert_eq!(seen("/pkg.Fast/Call", "grpc-timeout: 2S\r\n"), (strings(&["2000m"]), strings(&["2000"])));
        assert_eq!(seen("/pkg.Fast/Call", ""), (vec![], vec![]), "no timeout at all: none said");
        assert_eq!(seen("/pkg.Fast/Call", "grpc-timeout: soon\r\n"), (strings(&["soon"]), vec![]), "left as sent");
        assert_eq!(seen("/pkg.Capped/Call", "grpc-timeout: 10S\r\n"), (strings(&["300m"]), strings(&["300"])));
        assert_eq!(seen("/pkg.Capped/Call", "grpc-timeout: 100m\r\n"), (strings(&["100m"]), strings(&["100"])));
        assert_eq!(seen("/pkg.Capped/Call", ""), (strings(&["300m"]), strings(&["300"])));
        let resp = post(addr, "/pkg.Capped/Call");
        assert_eq!((resp.status, app.last().header("grpc-timeout")), (200, None), "not gRPC: no grpc-timeout");

        // The deadline is enforced: the router's timeout, UNAVAILABLE as Envoy maps its 504.
        let timed_out = |path: &str, lines: &str| {
            let resp = call(addr, path, lines);
            (resp.header("grpc-status").map(str::to_string), resp.header("grpc-message").map(str::to_string))
        };
        let expired = (Some("14".to_string()), Some("upstream request timeout".to_string()));
        assert_eq!(timed_out("/pkg.Slow/Call", "grpc-timeout: 200m\r\n"), expired, "no route timeout: grpc-timeout's");
        assert_eq!(timed_out("/pkg.SlowCapped/Call", "grpc-timeout: 1H\r\n"), expired, "capped by the route's");
        assert_eq!(timed_out("/pkg.Slow/Call", ""), (None, None), "neither: the answer waits");
        let resp = client::request(
            addr,
            "GET /pkg.Slow/Call HTTP/1.1\r\nHost: app.test\r\ngrpc-timeout: 100m\r\nConnection: close\r\n\r\n",
        );
        assert_eq!((resp.status, resp.body_text().as_str()), (200, "stall"), "not gRPC: grpc-timeout is not read");
    }
}
