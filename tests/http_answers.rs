//! The gateway's own answers and the headers an Istio gateway sets, end to end on both drivers.

use strait_test_support::{self as support, both_drivers, gateway};

use support::backend::Backend;
use support::client::{self, Conn};
use support::config::{docs, http_gateway, service_entry, virtual_service};
use support::{free_port, wait_until, Driver, Gateway};

/// A gateway on a fresh port routing `/` of `app.test` to one backend, plus special routes.
fn setup(driver: Driver, backend: &Backend) -> (Gateway, std::net::SocketAddr) {
    setup_with(driver, backend, &[])
}

fn setup_with(driver: Driver, backend: &Backend, args: &[&str]) -> (Gateway, std::net::SocketAddr) {
    let port = free_port();
    let dead = support::closed_port();
    let http = "  - name: slow
    match:
    - uri:
        prefix: /timeout/
    timeout: 0.3s
    rewrite:
      uri: /delay/
    route:
    - destination:
        host: app.local
  - name: refused
    match:
    - uri:
        prefix: /refused
    route:
    - destination:
        host: dead.local
  - name: empty
    match:
    - uri:
        prefix: /empty
    route:
    - destination:
        host: empty.local
  - name: dangling
    match:
    - uri:
        prefix: /dangling
    route:
    - destination:
        host: nothing.local
  - name: direct
    match:
    - uri:
        exact: /direct
    directResponse:
      status: 418
      body:
        string: short and stout
  - name: moved
    match:
    - uri:
        prefix: /old
    redirect:
      uri: /new
      authority: other.test
  - name: app
    match:
    - uri:
        prefix: /
    route:
    - destination:
        host: app.local
";
    let yaml = docs(&[
        http_gateway("gw", port, &["app.test", "*.wild.test"]),
        virtual_service("app", "gw", &["app.test", "*.wild.test"], http),
        service_entry("app", "app.local", 80, &[backend.port()]),
        service_entry("dead", "dead.local", 80, &[dead]),
        service_entry("empty", "empty.local", 80, &[]),
    ]);
    let gw = args.iter().fold(gateway!(driver).file("gw.yaml", &yaml), |g, a| g.arg(a)).start();
    (gw, format!("127.0.0.1:{port}").parse().unwrap())
}

both_drivers! {
    fn forwards_with_istio_headers(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b);
        let resp = client::request(addr, "GET /hello?x=1 HTTP/1.1\r\nHost: APP.test:8080\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Envoy-Retry-On: 5xx\r\nConnection: close, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n\r\n");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("x-backend"), Some("app"));
        assert_eq!(resp.header("server"), Some("istio-envoy"));
        assert!(resp.header("x-envoy-upstream-service-time").is_some_and(|v| v.parse::<u64>().is_ok()));
        let got = b.last();
        assert_eq!(got.target, "/hello?x=1");
        assert_eq!(got.header("host"), Some("APP.test:8080"));
        assert_eq!(got.header("x-forwarded-for"), Some("10.0.0.1, 127.0.0.1"));
        assert_eq!(got.header("x-forwarded-proto"), Some("http"));
        assert_eq!(got.header("x-request-id").map(str::len), Some(36));
        assert_eq!(got.header("x-envoy-external-address"), Some("127.0.0.1"));
        assert_eq!(got.header("x-envoy-retry-on"), None, "client x-envoy-* headers are stripped");
        assert_eq!(got.header("x-hop"), None, "headers named in Connection are hop-by-hop");
        assert_eq!(got.header("keep-alive"), None);
    }

    fn every_client_is_external(driver) {
        // Envoy 1.40 on istiod's gateway config trusts no address, loopback included: the
        // client's request id is replaced and its address passed on as external.
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b);
        let mut c = Conn::open(addr);
        let mut ids = Vec::new();
        for _ in 0..2 {
            c.send(b"GET / HTTP/1.1\r\nHost: app.test\r\nx-request-id: abc-123\r\nx-envoy-internal: true\r\n\r\n");
            assert_eq!(c.read_response(false).status, 200);
            let got = b.last();
            let id = got.header("x-request-id").unwrap().to_string();
            assert!(id.len() == 36 && id.as_bytes()[14] == b'4', "a fresh UUID v4: {id}");
            assert_eq!(got.header("x-envoy-external-address"), Some("127.0.0.1"));
            assert_eq!(got.header("x-envoy-internal"), None, "neither added nor passed on");
            ids.push(id);
        }
        assert_ne!(ids[0], ids[1], "each request its own id");
    }

    fn forwarded_answers_carry_a_date(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b);
        // The backend sends none: the gateway's is added, as Envoy's connection manager does.
        let resp = client::get(addr, "app.test", "/");
        let dates = resp.header_all("date");
        assert_eq!(dates.len(), 1, "{:?}", resp.headers);
        assert!(dates[0].len() == 29 && dates[0].ends_with(" GMT"), "an IMF-fixdate: {}", dates[0]);
        // The backend's own is kept, alone.
        let resp = client::get(addr, "app.test", "/dated");
        assert_eq!(resp.header_all("date"), [support::backend::DATE]);
    }

    fn http10_clients_get_http11_answers_kept_alive_when_asked(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b);
        let mut c = Conn::open(addr);
        // The gateway's own answers (no route, a direct response) and a forwarded one, all on
        // one connection the client asked to keep.
        for (host, path, status) in [("unknown.test", "/", 404), ("app.test", "/direct", 418), ("app.test", "/", 200)] {
            c.send(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n").as_bytes());
            let resp = c.read_response(false);
            assert_eq!((resp.status, resp.version), (status, 1), "{path}: HTTP/1.1 status line");
            assert_eq!(resp.header("connection"), Some("keep-alive"), "{path}: {:?}", resp.headers);
        }
        // Without keep-alive the answer closes the connection, as HTTP/1.0 does by default.
        c.send(b"GET / HTTP/1.0\r\nHost: unknown.test\r\n\r\n");
        let resp = c.read_response(false);
        assert_eq!((resp.status, resp.version, resp.header("connection")), (404, 1, Some("close")));
        assert!(c.try_read_response(false).is_none(), "closed");
    }

    fn an_answer_before_the_body_is_read_closes_and_lingers(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b);
        let part = vec![b'x'; 64 * 1024];
        for (host, path, status) in [("unknown.test", "/", 404), ("app.test", "/direct", 418)] {
            let mut c = Conn::open(addr);
            // Ten megabytes announced, one part sent: the gateway answers without reading on.
            c.send(format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10000000\r\n\r\n").as_bytes());
            c.send(&part);
            let resp = c.read_response(false);
            assert_eq!((resp.status, resp.header("connection")), (status, Some("close")), "{path}");
            // What the client still sends is read and dropped, not met with a reset.
            let rest = c.keep_sending_then_finish(&part, 3).expect("the close lingers");
            assert!(rest.is_empty(), "nothing after the answer");
        }
        assert_eq!(b.count(), 0);
    }

    fn wildcard_host_routes(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b);
        assert_eq!(client::get(addr, "a.b.wild.test", "/").status, 200);
        assert_eq!(client::get(addr, "wild.test", "/").status, 404);
    }

    fn not_found_without_host_or_route(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b);
        let resp = client::get(addr, "unknown.test", "/");
        assert_eq!(resp.status, 404);
        assert!(resp.body.is_empty());
        assert_eq!(b.count(), 0);
    }

    fn direct_response_and_redirect(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b);
        let resp = client::get(addr, "app.test", "/direct");
        assert_eq!(resp.status, 418);
        assert_eq!(resp.body_text(), "short and stout");
        assert_eq!(resp.header("content-type"), Some("text/plain"));
        let resp = client::get(addr, "app.test", "/old/path?q=1");
        assert_eq!(resp.status, 301);
        assert_eq!(resp.header("location"), Some("http://other.test/new?q=1"));
    }

    fn no_healthy_upstream(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b);
        let resp = client::get(addr, "app.test", "/empty");
        assert_eq!(resp.status, 503);
        assert_eq!(resp.body_text(), "no healthy upstream");
    }

    fn connect_failure_is_503(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b);
        let resp = client::get(addr, "app.test", "/refused");
        assert_eq!(resp.status, 503);
        assert!(resp.body_text().starts_with("upstream connect error or disconnect/reset before headers"), "{}", resp.body_text());
    }

    fn access_log_lines_in_istio_format(driver) {
        let b = Backend::start("app");
        let (gw, addr) = setup_with(driver, &b, &["--access-log"]);
        let ok = client::request(
            addr,
            "GET /size/7?q=1 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: t/1\r\nX-Request-Id: abc\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(ok.status, 200);
        assert_eq!(client::get(addr, "unknown.test", "/nowhere").status, 404);
        assert_eq!(client::get(addr, "app.test", "/refused").status, 503);
        wait_until(std::time::Duration::from_secs(5), || gw.stdout().lines().count() == 3)
            .unwrap_or_else(|| panic!("three lines expected:\n{}", gw.stdout()));
        let out = gw.stdout();
        // Workers flush their own buffers: lines come in per-worker order only.
        let line = |path: &str| out.lines().find(|l| l.contains(&format!(" {path} "))).unwrap().to_owned();
        let lines = [line("/size/7?q=1"), line("/nowhere"), line("/refused")];
        let fields = |line: &str| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let ok = fields(&lines[0]);
        assert!(ok[0].starts_with('[') && ok[0].ends_with("Z]"), "{}", lines[0]);
        assert_eq!(&ok[1..11], ["\"GET", "/size/7?q=1", "HTTP/1.1\"", "200", "-", "via_upstream", "-", "\"-\"", "0", "7"]);
        // x-forwarded-for as the gateway forwarded it, and the request id the upstream saw: the
        // gateway's own, the client's `abc` replaced.
        let sent_id = b.last().header("x-request-id").unwrap().to_string();
        assert_eq!(&ok[13..16], ["\"127.0.0.1\"".to_string(), "\"t/1\"".to_string(), format!("\"{sent_id}\"")]);
        assert_eq!(ok[16], "\"app.test\"");
        assert_eq!(ok[17], format!("\"127.0.0.1:{}\"", b.port()));
        assert_eq!(ok[18], "outbound|80||app.local");
        assert_eq!(ok[ok.len() - 1], "app", "route name: {}", lines[0]);
        let nr = fields(&lines[1]);
        assert_eq!(&nr[4..7], ["404", "NR", "route_not_found"], "{}", lines[1]);
        // The gateway's own answers log the id Envoy gives every request.
        for answered in [&nr, &fields(&lines[2])] {
            let id = answered[15].trim_matches('"');
            assert!(id.len() == 36 && id != sent_id, "a request id of its own: {answered:?}");
        }
        let uf = fields(&lines[2]);
        // Istio's default policy retried the refused connect twice: Envoy logs both flags.
        assert_eq!(&uf[4..6], ["503", "UF,URX"], "{}", lines[2]);
    }

    fn dangling_destination_is_503(driver) {
        let b = Backend::start("app");
        let (gw, addr) = setup(driver, &b);
        assert_eq!(client::get(addr, "app.test", "/dangling").status, 503);
        assert!(gw.logs().contains("nothing.local"), "the dangling host is named in a warning:\n{}", gw.logs());
    }

    fn connect_and_asterisk_options_find_no_route(driver) {
        let b = Backend::start("app");
        let port = free_port();
        let bare = "  - route:\n    - destination:\n        host: app.local\n";
        let prefix = "  - match:\n    - uri:\n        prefix: /\n    route:\n    - destination:\n        host: app.local\n";
        let yaml = docs(&[
            http_gateway("gw", port, &["*"]),
            // istiod writes a route without `match` as `prefix: /`, which CONNECT and
            // `OPTIONS *` (no `/`-rooted path) never match: 404, as Envoy answers.
            virtual_service("bare", "gw", &["bare.test"], bare),
            virtual_service("prefix", "gw", &["prefix.test"], prefix),
            service_entry("app", "app.local", 80, &[b.port()]),
        ]);
        let _gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        for host in ["bare.test", "prefix.test"] {
            let connect = client::request(addr, &format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n"));
            assert_eq!(connect.status, 404, "CONNECT {host}");
            let options = client::request(addr, &format!("OPTIONS * HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
            assert_eq!(options.status, 404, "OPTIONS * to {host}");
            assert_eq!(b.count(), 0, "{host}: the backend saw nothing");
        }
        // The same routes take a request with a path.
        for host in ["bare.test", "prefix.test"] {
            assert_eq!(client::get(addr, host, "/").status, 200, "{host}");
        }
        assert_eq!(b.count(), 2);
    }

    fn upstream_timeout_is_504(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b);
        let mut c = Conn::open(addr);
        let resp = c.get("/timeout/2000", "app.test");
        assert_eq!(resp.status, 504);
        assert_eq!(resp.body_text(), "upstream request timeout");
        // The connection survives a 504 and serves the next request.
        assert_eq!(c.get("/", "app.test").status, 200);
    }

    fn ambiguous_framing_is_400_and_closed(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b);
        for raw in [
            "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: app.test\r\nBad\x01Name: x\r\n\r\n",
        ] {
            let mut s = support::connect_send(addr, raw.as_bytes());
            let got = String::from_utf8_lossy(&support::read_to_close(&mut s, std::time::Duration::from_secs(5))).into_owned();
            assert!(got.starts_with("HTTP/1.1 400 "), "{raw:?} -> {got:?}");
        }
        assert_eq!(b.count(), 0, "nothing ambiguous reaches the upstream");
    }

    fn oversized_head_and_uri(driver) {
        let b = Backend::start("app");
        let (_gw, addr) = setup(driver, &b);
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: app.test\r\n\r\n", "a".repeat(20 * 1024));
        assert_eq!(client::request(addr, &long_uri).status, 414);
        let big_head = format!("GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n", "b".repeat(70 * 1024));
        assert_eq!(client::request(addr, &big_head).status, 431);
    }
}
