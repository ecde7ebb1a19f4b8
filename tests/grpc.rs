//! gRPC semantics the HTTP/2 codec does not decide, end to end over HTTP/1.1 with raw requests
//! carrying `content-type: application/grpc`: the gateway's own answers as gRPC answers,
//! `retryOn` gRPC conditions, and `grpc-timeout` as Envoy handles it under istiod's config;
//! and gRPC in Istio's metrics and the access log, from HTTP/1.1 and HTTP/2 clients.

use strait_test_support::{self as support, both_drivers, gateway};

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use support::backend::{Backend, Mode};
use support::client::{self, Response};
use support::config::{app_behind_rule, service_entry};
use support::tcp::sample_with;
use support::{free_port, wait_until, Driver, Gateway};

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

/// A gRPC call from an HTTP/2 client (h2's own, h2c with prior knowledge): its request body
/// (`messages`) in DATA frames of `frame` bytes; the status, the response body and the
/// response's `grpc-status` (trailers, else head).
fn h2_call(addr: SocketAddr, path: &str, messages: &[u8], frame: usize) -> (u16, Vec<u8>, Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let request = http::Request::post(format!("http://app.test{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(request, false).unwrap();
        let frames: Vec<&[u8]> = messages.chunks(frame).collect();
        for (i, piece) in frames.iter().enumerate() {
            send.send_data(Bytes::copy_from_slice(piece), i + 1 == frames.len()).unwrap();
        }
        let response = response.await.unwrap();
        let status = response.status().as_u16();
        let head_status = response.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_string());
        let mut body = response.into_body();
        let mut data = Vec::new();
        while let Some(piece) = body.data().await {
            let piece = piece.unwrap();
            let _ = body.flow_control().release_capacity(piece.len());
            data.extend_from_slice(&piece);
        }
        let trailers = body.trailers().await.unwrap();
        let trailer_status = trailers.and_then(|t| t.get("grpc-status").map(|v| v.to_str().unwrap().to_string()));
        (status, data, trailer_status.or(head_status))
    })
}

/// Two gRPC messages (3 and 0 bytes), as a client sends them.
const TWO_MESSAGES: &[u8] = b"\0\0\0\0\x03abc\0\0\0\0\0";

/// A gateway routing gRPC to a backend answering with messages and `grpc-status` in trailers
/// (`/grpc-trailers/N` to `app.local`), one answering trailers-only PERMISSION_DENIED
/// (`/pkg.Denied/` to `denied.local`), and nothing else (so no route: UNIMPLEMENTED).
fn grpc_gateway(driver: Driver, app: &Backend, denied: &Backend, args: &[&str]) -> (Gateway, SocketAddr) {
    let http = [route("/grpc-trailers/", "app.local", ""), route("/pkg.Denied/", "denied.local", "")].concat();
    let extra = vec![
        service_entry("app", "app.local", 80, &[app.port()]),
        service_entry("denied", "denied.local", 80, &[denied.port()]),
    ];
    start(driver, &http, extra, args)
}

/// Makes the same calls over HTTP/1.1 and HTTP/2: a response with 3 messages and status 5
/// (NOT_FOUND) in trailers, a trailers-only PERMISSION_DENIED, the gateway's own UNIMPLEMENTED
/// (no route), and a POST that is not gRPC.
fn make_grpc_calls(addr: SocketAddr) {
    let resp = call(addr, "/grpc-trailers/5", "");
    assert_eq!((resp.status, resp.body.len()), (200, 20), "{resp:?}");
    assert_eq!(call(addr, "/pkg.Denied/Call", "").header("grpc-status"), Some("7"));
    assert_grpc_answer(&call(addr, "/pkg.Nowhere/Call", ""), "12", None);
    assert_eq!(post(addr, "/grpc-trailers/5").status, 200);
    let (status, body, grpc_status) = h2_call(addr, "/grpc-trailers/5", TWO_MESSAGES, 3);
    assert_eq!((status, body.len(), grpc_status.as_deref()), (200, 20, Some("5")));
    let denied = h2_call(addr, "/pkg.Denied/Call", TWO_MESSAGES, 100);
    assert_eq!((denied.0, denied.2.as_deref()), (200, Some("7")));
    let nowhere = h2_call(addr, "/pkg.Nowhere/Call", TWO_MESSAGES, 100);
    assert_eq!((nowhere.0, nowhere.2.as_deref()), (200, Some("12")));
}

both_drivers! {
    fn grpc_requests_are_counted_with_their_protocol_status_and_messages(driver) {
        let app = Backend::start("app");
        let denied = Backend::with_mode("denied", Mode::Grpc(7));
        let (gw, addr) = grpc_gateway(driver, &app, &denied, &[]);
        make_grpc_calls(addr);

        let scrape = || gw.admin_get("/stats/prometheus").1;
        let requests = |labels: &[&str]| sample_with(&scrape(), "istio_requests_total", labels);
        let grpc = |status: &str| format!("request_protocol=\"grpc\",response_flags=\"-\",grpc_response_status=\"{status}\"");
        let app_service = "destination_service=\"app.local\"";
        // A request is counted once its answer is out, a moment after the client may have it.
        let nr = "request_protocol=\"grpc\",response_flags=\"NR\",grpc_response_status=\"12\"";
        wait_until(Duration::from_secs(5), || requests(&[nr]) == Some(2.0));
        // The status in the trailers, over either protocol; the head's, trailers-only; the
        // gateway's own (a 200, as Envoy counts it).
        assert_eq!(requests(&[app_service, "response_code=\"200\"", &grpc("5")]), Some(2.0), "{}", scrape());
        assert_eq!(requests(&["destination_service=\"denied.local\"", &grpc("7")]), Some(2.0), "{}", scrape());
        assert_eq!(requests(&["response_code=\"200\"", "destination_service=\"unknown\"", nr]), Some(2.0));
        let http = "request_protocol=\"http\",response_flags=\"-\",grpc_response_status=\"\"";
        assert_eq!(requests(&[app_service, http]), Some(1.0), "not gRPC: {}", scrape());

        // Messages each way, per destination only, as Istio's stats filter labels them.
        let messages = |family: &str, service: &str| {
            let body = scrape();
            let line = body.lines().find(|l| l.starts_with(family) && l.contains(service));
            assert!(line.is_none_or(|l| !l.contains("request_protocol") && !l.contains("response_code")), "{line:?}");
            sample_with(&body, family, &[service])
        };
        // 1 from the HTTP/1.1 client, 2 from the HTTP/2 one; 3 back to each.
        assert_eq!(messages("istio_request_messages_total", app_service), Some(3.0), "{}", scrape());
        assert_eq!(messages("istio_response_messages_total", app_service), Some(6.0));
        assert_eq!(messages("istio_request_messages_total", "destination_service=\"denied.local\""), Some(3.0));
        assert_eq!(messages("istio_response_messages_total", "destination_service=\"denied.local\""), Some(0.0));
    }

    fn grpc_status_is_logged_as_envoys_grpc_status(driver) {
        let app = Backend::start("app");
        let denied = Backend::with_mode("denied", Mode::Grpc(7));
        let (gw, addr) = grpc_gateway(driver, &app, &denied, &["--access-log", "--access-log-encoding", "json"]);
        make_grpc_calls(addr);
        let lines = || gw.stdout().lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<serde_json::Value>>();
        assert!(wait_until(Duration::from_secs(5), || lines().len() == 7).is_some(), "{}", gw.stdout());
        let mut logged: Vec<(String, String, serde_json::Value)> = lines()
            .into_iter()
            .map(|l| (l["path"].as_str().unwrap().to_string(), l["protocol"].as_str().unwrap().to_string(), l["grpc_status"].clone()))
            .collect();
        logged.sort_by(|a, b| (&a.0, &a.1, a.2.to_string()).cmp(&(&b.0, &b.1, b.2.to_string())));
        let text = |s: &str| serde_json::Value::String(s.to_string());
        let expected = [
            ("/grpc-trailers/5", "HTTP/1.1", text("NotFound")),
            ("/grpc-trailers/5", "HTTP/1.1", serde_json::Value::Null),
            ("/grpc-trailers/5", "HTTP/2", text("NotFound")),
            ("/pkg.Denied/Call", "HTTP/1.1", text("PermissionDenied")),
            ("/pkg.Denied/Call", "HTTP/2", text("PermissionDenied")),
            ("/pkg.Nowhere/Call", "HTTP/1.1", text("Unimplemented")),
            ("/pkg.Nowhere/Call", "HTTP/2", text("Unimplemented")),
        ]
        .map(|(p, v, s)| (p.to_string(), v.to_string(), s));
        assert_eq!(logged, expected);
    }

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
