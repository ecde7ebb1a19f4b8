//! What operators watch, end to end on both drivers: Istio's standard metrics after known
//! traffic (parsed by a Prometheus text parser), and the access log's lines and response flags
//! in both encodings.

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};
use support::backend::Backend;
use support::client::{self, Conn};
use support::config::{docs, http_gateway, service_entry, virtual_service};
use support::tcp::{listen_port, tcp_gateway, tcp_route, tcp_service_entry, tcp_virtual_service, TcpBackend};
use support::{free_port, wait_until, Driver, Gateway};

const HTTP: &str = "  - match:
    - uri:
        prefix: /empty
    route:
    - destination:
        host: empty.local
  - match:
    - uri:
        prefix: /retry
    rewrite:
      uri: /status/503
    retries:
      attempts: 2
      retryOn: 5xx
    route:
    - destination:
        host: app.local
  - match:
    - uri:
        prefix: /slow
    timeout: 0.2s
    rewrite:
      uri: /delay/2000
    route:
    - destination:
        host: app.local
  - route:
    - destination:
        host: app.local
";

/// A gateway with an HTTP server for `app.test` (routes in [`HTTP`]) and a TCP server spliced
/// to an echo backend; returns it with the HTTP and TCP addresses.
fn start(driver: Driver, app: &Backend, echo: &TcpBackend, args: &[&str]) -> (Gateway, SocketAddr, SocketAddr) {
    let (http, tcp) = (free_port(), listen_port());
    let yaml = docs(&[
        http_gateway("gw", http, &["app.test"]),
        virtual_service("app", "gw", &["app.test"], HTTP),
        service_entry("app", "app.local", 80, &[app.port()]),
        service_entry("empty", "empty.local", 80, &[]),
        tcp_gateway("db", tcp, "TCP"),
        tcp_virtual_service(
            "db",
            "db",
            "  - route:\n    - destination:\n        host: db.local\n        port:\n          number: 7000\n",
        ),
        tcp_service_entry("db", "db.local", 7000, &[echo.port()]),
    ]);
    let gw = args.iter().fold(gateway!(driver).file("gw.yaml", &yaml), |g, a| g.arg(a)).start();
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    (gw, at(http), at(tcp))
}

fn scrape(gw: &Gateway) -> Vec<Sample> {
    let (status, body) = gw.admin_get("/stats/prometheus");
    assert_eq!(status, 200);
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text").samples
}

/// The value of the one sample of `metric` whose labels include every pair in `labels`.
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert!(found.len() <= 1, "{metric} {labels:?} matches {} series", found.len());
    found.first().map(|s| match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
        Value::Summary(_) => panic!("no summaries here"),
    })
}

/// Echoes `n` bytes through the TCP route and closes.
fn echo_through(addr: SocketAddr, n: usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&vec![7u8; n]).unwrap();
    let mut back = vec![0u8; n];
    s.read_exact(&mut back).unwrap();
}

/// Asks for a large body, reads the head, and hangs up mid-body: Envoy's DC.
fn disconnect_mid_body(addr: SocketAddr) {
    let mut c = Conn::open(addr);
    c.send(b"GET /size/50000000 HTTP/1.1\r\nHost: app.test\r\n\r\n");
    let mut first = [0u8; 1024];
    let _ = c.reader.get_mut().read(&mut first).unwrap();
    drop(c);
}

both_drivers! {
    fn istio_standard_metrics_count_known_traffic(driver) {
        let app = Backend::start("app");
        let echo = TcpBackend::echo();
        let (gw, http, tcp) = start(driver, &app, &echo, &[]);
        for _ in 0..3 {
            assert_eq!(client::get(http, "app.test", "/ok").status, 200);
        }
        for _ in 0..2 {
            assert_eq!(client::get(http, "nowhere.test", "/").status, 404);
        }
        assert_eq!(client::get(http, "app.test", "/empty").status, 503);
        echo_through(tcp, 1000);

        let ok = [("destination_service", "app.local"), ("response_code", "200")];
        // A request is counted once its answer is out, a moment after the client may have it.
        let uh = [("destination_service", "empty.local"), ("response_code", "503"), ("response_flags", "UH")];
        wait_until(Duration::from_secs(5), || value(&scrape(&gw), "istio_requests_total", &uh).is_some())
            .expect("the last request counted");
        let samples = scrape(&gw);
        assert_eq!(value(&samples, "istio_requests_total", &ok), Some(3.0));
        let first = samples
            .iter()
            .find(|s| s.metric == "istio_requests_total" && s.labels.get("response_code") == Some("200"))
            .unwrap();
        for (k, v) in [
            ("reporter", "source"),
            ("request_protocol", "http"),
            ("response_flags", "-"),
            ("destination_service_name", "app.local"),
            ("destination_service_namespace", "default"),
            ("source_workload", "istio-ingressgateway"),
            // The gateway's own namespace (`--namespace`, here its default), as Istio labels it.
            ("source_workload_namespace", "default"),
        ] {
            assert_eq!(first.labels.get(k), Some(v), "{k}");
        }
        let nr = [("destination_service", "unknown"), ("response_code", "404"), ("response_flags", "NR")];
        assert_eq!(value(&samples, "istio_requests_total", &nr), Some(2.0));
        assert_eq!(value(&samples, "istio_requests_total", &uh), Some(1.0));
        assert_eq!(value(&samples, "istio_request_duration_milliseconds_count", &ok), Some(3.0));
        assert_eq!(value(&samples, "istio_request_duration_milliseconds", &ok), Some(3.0), "the +Inf bucket");
        let sizes = value(&samples, "istio_response_bytes_sum", &ok).unwrap();
        assert!(sizes > 3.0 * 3.0, "response heads and bodies: {sizes}");
        assert_eq!(value(&samples, "istio_request_bytes_count", &nr), Some(2.0));

        let db = [("destination_service", "db.local"), ("request_protocol", "tcp")];
        assert!(wait_until(Duration::from_secs(5), || {
            value(&scrape(&gw), "istio_tcp_connections_closed_total", &db) == Some(1.0)
        })
        .is_some());
        let samples = scrape(&gw);
        assert_eq!(value(&samples, "istio_tcp_connections_opened_total", &db), Some(1.0));
        assert_eq!(value(&samples, "istio_tcp_received_bytes_total", &db), Some(1000.0));
        assert_eq!(value(&samples, "istio_tcp_sent_bytes_total", &db), Some(1000.0));
    }

    fn access_log_flags_in_text(driver) {
        let app = Backend::start("app");
        let echo = TcpBackend::echo();
        let (gw, http, _) = start(driver, &app, &echo, &["--access-log"]);
        assert_eq!(client::get(http, "app.test", "/ok").status, 200);
        assert_eq!(client::get(http, "nowhere.test", "/").status, 404);
        assert_eq!(client::get(http, "app.test", "/empty").status, 503);
        assert_eq!(client::get(http, "app.test", "/slow").status, 504);
        disconnect_mid_body(http);
        let lines = || gw.stdout().lines().map(str::to_string).collect::<Vec<_>>();
        assert!(wait_until(Duration::from_secs(5), || lines().len() == 5).is_some(), "{:?}", lines());
        let line = |path: &str| lines().into_iter().find(|l| l.contains(&format!(" {path} HTTP/1.1\""))).unwrap();
        let status_flags = |path: &str| {
            let l = line(path);
            let after = l.split("HTTP/1.1\" ").nth(1).unwrap().to_string();
            let mut parts = after.split(' ');
            (parts.next().unwrap().to_string(), parts.next().unwrap().to_string())
        };
        assert_eq!(status_flags("/ok"), ("200".into(), "-".into()));
        assert_eq!(status_flags("/"), ("404".into(), "NR".into()));
        assert_eq!(status_flags("/empty"), ("503".into(), "UH".into()));
        // The cluster exists though no endpoint serves it: %UPSTREAM_CLUSTER% names it, as the
        // metrics' destination_service does.
        let uh = line("/empty");
        assert!(uh.contains(" \"-\" outbound|80||empty.local "), "no upstream host, the cluster named: {uh}");
        assert_eq!(status_flags("/slow"), ("504".into(), "UT".into()));
        assert_eq!(status_flags("/size/50000000"), ("200".into(), "DC".into()));
    }

    fn access_log_in_json(driver) {
        let app = Backend::start("app");
        let echo = TcpBackend::echo();
        let (gw, http, _) = start(driver, &app, &echo, &["--access-log", "--access-log-encoding", "json"]);
        assert_eq!(client::get(http, "app.test", "/ok?x=1").status, 200);
        assert_eq!(client::get(http, "nowhere.test", "/").status, 404);
        let lines = || gw.stdout().lines().map(str::to_string).collect::<Vec<_>>();
        assert!(wait_until(Duration::from_secs(5), || lines().len() == 2).is_some(), "{:?}", lines());
        let parsed: Vec<serde_json::Value> = lines().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        // Workers log on their own: lines of different connections come in any order.
        let by_code = |code: u64| parsed.iter().find(|l| l["response_code"] == code).unwrap();
        let ok = by_code(200);
        assert_eq!(ok["method"], "GET");
        assert_eq!(ok["path"], "/ok?x=1");
        assert_eq!(ok["response_code"], 200);
        assert_eq!(ok["response_flags"], "-");
        assert_eq!(ok["bytes_sent"], 3);
        assert_eq!(ok["authority"], "app.test");
        assert_eq!(ok["upstream_cluster"], "outbound|80||app.local");
        assert!(ok["upstream_host"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(ok["start_time"].as_str().unwrap().ends_with('Z'));
        let nr = by_code(404);
        assert_eq!((nr["response_code"].as_u64(), nr["response_flags"].as_str()), (Some(404), Some("NR")));
        assert_eq!(nr["upstream_host"], serde_json::Value::Null);
    }

    fn envoy_cluster_stats_by_cluster_class_and_code(driver) {
        let app = Backend::start("app");
        let echo = TcpBackend::echo();
        let (gw, http, tcp) = start(driver, &app, &echo, &[]);
        for _ in 0..3 {
            assert_eq!(client::get(http, "app.test", "/ok").status, 200);
        }
        assert_eq!(client::get(http, "app.test", "/status/404").status, 404);
        // Two retries, then the third 503 is relayed: Envoy counts that one in upstream_rq_503.
        assert_eq!(client::get(http, "app.test", "/retry").status, 503);
        // The route's timeout: the gateway's 504 is charged to the cluster, as Envoy's router does.
        assert_eq!(client::get(http, "app.test", "/slow").status, 504);
        echo_through(tcp, 10);

        let app_cluster = ("envoy_cluster_name", "outbound|80||app.local");
        let samples = scrape(&gw);
        let count = |metric: &str, labels: &[(&str, &str)]| {
            let labels: Vec<(&str, &str)> = labels.iter().copied().chain([app_cluster]).collect();
            value(&samples, metric, &labels)
        };
        assert_eq!(count("envoy_cluster_upstream_rq_total", &[]), Some(8.0), "3 + 1 + 3 tries + 1");
        assert_eq!(count("envoy_cluster_upstream_rq_retry", &[]), Some(2.0));
        for (class, n) in [("2", 3.0), ("3", 0.0), ("4", 1.0), ("5", 2.0)] {
            assert_eq!(count("envoy_cluster_upstream_rq_xx", &[("envoy_response_code_class", class)]), Some(n), "{class}xx");
        }
        for (code, n) in [("200", 3.0), ("404", 1.0), ("503", 1.0), ("504", 1.0)] {
            assert_eq!(count("envoy_cluster_upstream_rq", &[("envoy_response_code", code)]), Some(n), "{code}");
        }
        assert!(count("envoy_cluster_upstream_cx_total", &[]).is_some_and(|n| n >= 1.0));
        let db = [("envoy_cluster_name", "outbound|7000||db.local")];
        assert_eq!(value(&samples, "envoy_cluster_upstream_cx_total", &db), Some(1.0));
        assert_eq!(value(&samples, "envoy_cluster_upstream_rq_total", &db), None, "a TCP cluster has no requests");

        // The same counters under Envoy's plain names, filtered and as JSON.
        let (status, plain) = gw.admin_get("/stats?filter=upstream_rq_(2xx|200)$");
        assert_eq!(status, 200, "{plain}");
        assert_eq!(
            plain,
            "cluster.outbound|80||app.local.upstream_rq_200: 3\ncluster.outbound|80||app.local.upstream_rq_2xx: 3\n"
        );
        let (status, body) = gw.admin_get("/stats?format=json&filter=%5Ecluster%5C.outbound%5C%7C80%5C%7C%5C%7Capp%5C.local%5C.upstream_rq_5");
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"stats": [
                {"name": "cluster.outbound|80||app.local.upstream_rq_503", "value": 1},
                {"name": "cluster.outbound|80||app.local.upstream_rq_504", "value": 1},
                {"name": "cluster.outbound|80||app.local.upstream_rq_5xx", "value": 2},
            ]})
        );
        let (_, prom) = gw.admin_get("/stats/prometheus?filter=rq_retry");
        assert_eq!(
            prom,
            "# TYPE envoy_cluster_upstream_rq_retry counter\n\
             envoy_cluster_upstream_rq_retry{envoy_cluster_name=\"outbound|80||app.local\"} 2\n"
        );
        assert_eq!(gw.admin_get("/stats?filter=(").0, 400, "a regex that does not compile");
    }

    fn tcp_connections_in_the_access_log(driver) {
        let echo = TcpBackend::echo();
        let (db, dead, nobody) = (listen_port(), listen_port(), support::closed_port());
        let yaml = docs(&[
            tcp_gateway("db", db, "TCP"),
            tcp_gateway("dead", dead, "TCP"),
            tcp_virtual_service("db", "db", &tcp_route("", 7000, &[("db.local", 100)])),
            tcp_virtual_service("dead", "dead", &tcp_route("", 7001, &[("dead.local", 100)])),
            tcp_service_entry("db", "db.local", 7000, &[echo.port()]),
            tcp_service_entry("dead", "dead.local", 7001, &[nobody]),
        ]);
        let gw = gateway!(driver).arg("--access-log").file("gw.yaml", &yaml).start();
        echo_through(SocketAddr::from(([127, 0, 0, 1], db)), 10);
        let mut refused = TcpStream::connect(("127.0.0.1", dead)).unwrap();
        assert_eq!(support::read_to_close(&mut refused, Duration::from_secs(10)), b"", "closed at once");

        let lines = || gw.stdout().lines().map(str::to_string).collect::<Vec<_>>();
        wait_until(Duration::from_secs(10), || lines().len() == 2).unwrap_or_else(|| panic!("{:?}", lines()));
        // Istio's line with `-` for every HTTP field and 0 for the response code, as Envoy's
        // tcp_proxy writes it; a connect that fails is UF,URX (no connect attempt left).
        let time = r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\]";
        let proxied = format!(
            r#"^{time} "- - -" 0 - - - "-" 10 10 \d+ - "-" "-" "-" "-" "127\.0\.0\.1:{}" outbound\|7000\|\|db\.local 127\.0\.0\.1:\d+ 127\.0\.0\.1:{db} 127\.0\.0\.1:\d+ - -$"#,
            echo.port()
        );
        let failed = format!(
            r#"^{time} "- - -" 0 UF,URX - - "-" 0 0 \d+ - "-" "-" "-" "-" "127\.0\.0\.1:{nobody}" outbound\|7001\|\|dead\.local - 127\.0\.0\.1:{dead} 127\.0\.0\.1:\d+ - -$"#
        );
        for pattern in [proxied, failed] {
            let re = regex::Regex::new(&pattern).unwrap();
            assert!(lines().iter().any(|l| re.is_match(l)), "no line matches {pattern}:\n{}", lines().join("\n"));
        }
    }
}
