//! HTTP/2 from clients, end to end on both drivers: h2c with prior knowledge beside HTTP/1.1 on
//! an HTTP port, `h2` by ALPN on an HTTPS port, through the real binary to real HTTP/1.1
//! backends, driven by curl (built with nghttp2).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use strait_test_support::{self as support, both_drivers, gateway};

use support::backend::Backend;
use support::client;
use support::config::{docs, http_gateway, service_entry, virtual_service};
use support::h2::{block, frame, request, END_HEADERS, END_STREAM, GOAWAY, H2, HEADERS};
use support::tcp::TcpBackend;
use support::tls::{route_all, server, simple_tls, Ca};
use support::{free_port, wait_until, Driver, Gateway};

/// The routes of `app.test`: edits both ways on `/`, a direct response, a fault abort, and a
/// route to a backend that answers with trailers.
const HTTP: &str = "  - name: direct
    match:
    - uri:
        exact: /direct
    directResponse:
      status: 418
      body:
        string: short and stout
  - name: abort
    match:
    - uri:
        exact: /abort
    fault:
      abort:
        httpStatus: 503
        percentage:
          value: 100
    route:
    - destination:
        host: app.local
  - name: retried
    match:
    - uri:
        prefix: /retried
    rewrite:
      uri: /upload
    retries:
      attempts: 2
      retryOn: 5xx,reset
    route:
    - destination:
        host: app.local
  - name: trailers
    match:
    - uri:
        exact: /trailers
    route:
    - destination:
        host: trailers.local
  - name: app
    match:
    - uri:
        prefix: /
    headers:
      request:
        set:
          x-route: on
      response:
        set:
          x-answer: edited
    route:
    - destination:
        host: app.local
";

/// A gateway on an HTTP port routing `app.test` to `app` (and `/trailers` to `trailers`).
fn setup(driver: Driver, app: &Backend, trailers: &TcpBackend, args: &[&str]) -> (Gateway, SocketAddr) {
    let port = free_port();
    let yaml = docs(&[
        http_gateway("gw", port, &["app.test"]),
        virtual_service("app", "gw", &["app.test"], HTTP),
        service_entry("app", "app.local", 80, &[app.port()]),
        service_entry("trailers", "trailers.local", 80, &[trailers.port()]),
    ]);
    let gw = args.iter().fold(gateway!(driver).file("gw.yaml", &yaml), |g, a| g.arg(a)).start();
    (gw, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A backend answering every request with early hints, then a chunked body and trailers (as
/// a gRPC server's HTTP/1.1 counterpart would).
fn trailers_backend() -> TcpBackend {
    TcpBackend::start(|mut s, _| {
        if support::read_raw_head(&mut s).is_none() {
            return;
        }
        let _ = s.write_all(
            b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
              5\r\nhello\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n",
        );
    })
}

/// What curl printed: the response heads (`-D -`, trailers included) and body on stdout.
struct Curl {
    out: String,
    err: String,
}

fn curl(args: &[&str]) -> Curl {
    let out = Command::new("curl").args(["-sS", "-m", "20"]).args(args).output().expect("curl runs");
    Curl { out: String::from_utf8_lossy(&out.stdout).into(), err: String::from_utf8_lossy(&out.stderr).into() }
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// curl over h2c with prior knowledge, `app.test` as `:authority`.
fn h2c(addr: SocketAddr, path: &str, extra: &[&str]) -> Curl {
    let u = url(addr, path);
    let mut args = vec!["--http2-prior-knowledge", "-D", "-", "-H", "host: app.test", u.as_str()];
    args.extend_from_slice(extra);
    curl(&args)
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// Opens an h2c connection (preface and empty SETTINGS) and reads frames until a GOAWAY
/// (type 7) comes, or the connection ends or stays silent for `wait`: whether one came.
fn goaway_after(addr: SocketAddr, wait: Duration, act: impl FnOnce()) -> bool {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let mut header = [0u8; 9];
    // The server's SETTINGS, before anything is asked of it.
    s.read_exact(&mut header).unwrap();
    assert_eq!(header[3], 4, "the server's preface is a SETTINGS frame");
    let mut payload = vec![0u8; u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize];
    s.read_exact(&mut payload).unwrap();
    act();
    loop {
        if s.read_exact(&mut header).is_err() {
            return false;
        }
        if header[3] == 7 {
            return true;
        }
        let mut payload = vec![0u8; u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize];
        if s.read_exact(&mut payload).is_err() {
            return false;
        }
    }
}

both_drivers! {
    fn h2c_reaches_the_backend_with_the_routes_edits_beside_http1(driver) {
        let app = Backend::start("app");
        let trailers = trailers_backend();
        let (_gw, addr) = setup(driver, &app, &trailers, &[]);
        let r = h2c(addr, "/hello?x=1", &[]);
        assert!(r.out.starts_with("HTTP/2 200"), "{}{}", r.out, r.err);
        assert!(r.out.contains("\r\nx-answer: edited\r\n"), "the route's response edit: {}", r.out);
        assert!(r.out.contains("\r\nx-backend: app\r\n"), "{}", r.out);
        assert!(r.out.ends_with("\r\n\r\napp"), "the backend's body: {}", r.out);
        let seen = app.last();
        assert_eq!((seen.method.as_str(), seen.target.as_str()), ("GET", "/hello?x=1"));
        assert_eq!(seen.header("host"), Some("app.test"), ":authority as host");
        assert_eq!(seen.header("x-route"), Some("on"), "the route's request edit");
        assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
        // The same port still speaks HTTP/1.1.
        let h1 = client::get(addr, "app.test", "/again");
        assert_eq!((h1.status, h1.body_text().as_str()), (200, "app"));
        assert_eq!(h1.header("x-answer"), Some("edited"));
    }

    fn h2c_local_answers(driver) {
        let app = Backend::start("app");
        let trailers = trailers_backend();
        let (_gw, addr) = setup(driver, &app, &trailers, &[]);
        let u = url(addr, "/");
        let r = curl(&["--http2-prior-knowledge", "-D", "-", "-H", "host: nowhere.test", u.as_str()]);
        assert!(r.out.starts_with("HTTP/2 404"), "no route: {}{}", r.out, r.err);
        let r = h2c(addr, "/direct", &[]);
        assert!(r.out.starts_with("HTTP/2 418"), "{}{}", r.out, r.err);
        assert!(r.out.ends_with("\r\n\r\nshort and stout"), "{}", r.out);
        let r = h2c(addr, "/abort", &[]);
        assert!(r.out.starts_with("HTTP/2 503"), "{}{}", r.out, r.err);
        assert!(r.out.ends_with("fault filter abort"), "{}", r.out);
        // A gRPC request's are gRPC answers: 200, its status in grpc-status, headers only.
        let grpc = ["-X", "POST", "-H", "content-type: application/grpc", "--data-binary", ""];
        let r = curl(&[&["--http2-prior-knowledge", "-D", "-", "-H", "host: nowhere.test", u.as_str()][..], &grpc].concat());
        assert!(r.out.starts_with("HTTP/2 200"), "{}{}", r.out, r.err);
        assert!(r.out.contains("grpc-status: 12\r\n"), "no route is UNIMPLEMENTED: {}", r.out);
        let r = h2c(addr, "/abort", &grpc);
        assert!(r.out.contains("grpc-status: 14\r\n"), "an aborted 503 is UNAVAILABLE: {}", r.out);
        assert_eq!(app.count(), 0, "no local answer asked the backend");
    }

    fn h2c_request_bodies_reach_the_backend_intact(driver) {
        let app = Backend::start("app");
        let trailers = trailers_backend();
        let (_gw, addr) = setup(driver, &app, &trailers, &[]);
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let file = write_file(dir.path(), "body", &body);
        // With a length (curl says content-length).
        let data = format!("@{file}");
        let r = h2c(addr, "/upload", &["--data-binary", data.as_str()]);
        assert!(r.out.starts_with("HTTP/2 200"), "{}{}", r.out, r.err);
        let seen = app.last();
        assert_eq!(seen.header("content-length"), Some("300000"));
        assert!(seen.body == body, "the body with a length arrived intact ({} bytes)", seen.body.len());
        // Without one (an upload from a pipe): chunked upstream.
        let u = url(addr, "/upload");
        let mut child = Command::new("curl")
            .args(["-sS", "-m", "20", "--http2-prior-knowledge", "-D", "-", "-H", "host: app.test", "-T", "-", u.as_str()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&body).unwrap();
        let out = child.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.starts_with("HTTP/2 200"), "{out}");
        let seen = app.last();
        assert_eq!(seen.method, "PUT");
        assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
        assert_eq!(seen.header("content-length"), None);
        assert!(seen.body == body, "the body without a length arrived intact ({} bytes)", seen.body.len());
        // A small body under a retry policy is read whole first (replayable), and sent with the
        // head, framed as the client framed it.
        let small = write_file(dir.path(), "small", b"a small body");
        let data = format!("@{small}");
        let r = h2c(addr, "/retried", &["--data-binary", data.as_str()]);
        assert!(r.out.contains("HTTP/2 200"), "{}{}", r.out, r.err);
        let seen = app.last();
        assert_eq!((seen.header("content-length"), seen.body.as_slice()), (Some("12"), &b"a small body"[..]));
        let r = h2c(addr, "/retried", &["-T", small.as_str(), "-H", "content-length:"]);
        assert!(r.out.contains("HTTP/2 200"), "{}{}", r.out, r.err);
        let seen = app.last();
        assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
        assert_eq!(seen.body, b"a small body");
    }

    fn large_answers_stream_within_the_clients_window(driver) {
        let app = Backend::start("app");
        let trailers = trailers_backend();
        let (_gw, addr) = setup(driver, &app, &trailers, &[]);
        // Many DATA frames, beyond the send buffer bound: sent as the window allows.
        for path in ["/size/3000000", "/chunked/3000000"] {
            let r = h2c(addr, path, &["-o", "/dev/null", "-w", "%{http_version} %{response_code} %{size_download}"]);
            assert!(r.out.ends_with("2 200 3000000"), "{path}: {}{}", r.out, r.err);
        }
        let r = h2c(addr, "/size/1000", &["-I"]);
        assert!(r.out.starts_with("HTTP/2 200"), "HEAD: {}{}", r.out, r.err);
        assert!(r.out.contains("\r\ncontent-length: 1000\r\n"), "HEAD keeps the length: {}", r.out);
    }

    fn h2c_streams_run_concurrently_on_one_connection(driver) {
        let app = Backend::start("app");
        let trailers = trailers_backend();
        let (_gw, addr) = setup(driver, &app, &trailers, &[]);
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
        let statuses = rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(connection);
            let ask = |client: &mut h2::client::SendRequest<bytes::Bytes>, path: &str| {
                let request = http::Request::get(format!("http://app.test{path}")).body(()).unwrap();
                client.send_request(request, true).unwrap().0
            };
            // 40 streams open at once, each held by the backend for a while.
            let mut waiting = Vec::new();
            for i in 0..40 {
                client = client.ready().await.unwrap();
                waiting.push(ask(&mut client, &format!("/delay/300?n={i}")));
            }
            let mut statuses = Vec::new();
            for response in waiting {
                statuses.push(response.await.unwrap().status().as_u16());
            }
            // And one more after them, on the same connection.
            client = client.ready().await.unwrap();
            statuses.push(ask(&mut client, "/after").await.unwrap().status().as_u16());
            statuses
        });
        assert_eq!(statuses, vec![200; 41]);
        assert_eq!(app.count(), 41);
        // Held at once, the streams each took an upstream connection of their own.
        assert!(app.connections.load(std::sync::atomic::Ordering::Relaxed) > 1, "the streams ran concurrently");
    }

    fn interim_answers_and_chunked_trailers_pass_as_http2(driver) {
        let app = Backend::start("app");
        let trailers = trailers_backend();
        let (_gw, addr) = setup(driver, &app, &trailers, &[]);
        let r = h2c(addr, "/trailers", &[]);
        assert!(r.out.starts_with("HTTP/2 103"), "{}{}", r.out, r.err);
        assert!(r.out.contains("link: </style.css>"), "{}", r.out);
        assert!(r.out.contains("HTTP/2 200"), "{}", r.out);
        assert!(r.out.contains("hello"), "{}", r.out);
        assert!(r.out.contains("grpc-status: 0"), "the trailers: {}", r.out);
        assert!(r.out.contains("grpc-message: fine"), "{}", r.out);
        assert!(!r.out.contains("transfer-encoding"), "no HTTP/1.1 framing in HTTP/2: {}", r.out);
        assert!(!r.out.contains("connection:"), "no connection-specific field: {}", r.out);
    }

    fn h2_streams_are_logged_as_http2(driver) {
        let app = Backend::start("app");
        let trailers = trailers_backend();
        let (gw, addr) = setup(driver, &app, &trailers, &["--access-log"]);
        assert!(h2c(addr, "/logged", &[]).out.starts_with("HTTP/2 200"));
        let lines = || gw.stdout().lines().map(str::to_string).collect::<Vec<_>>();
        assert!(wait_until(Duration::from_secs(5), || lines().len() == 1).is_some(), "{:?}", lines());
        let line = &lines()[0];
        assert!(line.contains("\"GET /logged HTTP/2\" 200 - via_upstream"), "{line}");
    }

    fn goaway_on_idle_timeout_port_removal_and_drain(driver) {
        let app = Backend::start("app");
        let trailers = trailers_backend();
        let (_idle, addr) = setup(driver, &app, &trailers, &["--idle-timeout", "1s"]);
        assert!(goaway_after(addr, Duration::from_secs(5), || {}), "an idle connection is told to go");
        let (gw, addr) = setup(driver, &app, &trailers, &[]);
        let elsewhere = docs(&[
            http_gateway("gw", free_port(), &["app.test"]),
            virtual_service("app", "gw", &["app.test"], HTTP),
            service_entry("app", "app.local", 80, &[app.port()]),
            service_entry("trailers", "trailers.local", 80, &[trailers.port()]),
        ]);
        let removed = goaway_after(addr, Duration::from_secs(5), || {
            gw.write_config("gw.yaml", &elsewhere);
            gw.signal("HUP");
        });
        assert!(removed, "a reload that removes the port tells the client");
        let (gw, addr) = setup(driver, &app, &trailers, &[]);
        assert!(goaway_after(addr, Duration::from_secs(5), || gw.signal("TERM")), "a drain tells the client");
    }

    fn a_busy_connection_is_told_to_go_on_a_drain(driver) {
        // Streams arriving more often than the connection's 1 s watch must not keep it from
        // ever hearing of the drain.
        let app = Backend::start("app");
        let trailers = trailers_backend();
        let (gw, addr) = setup(driver, &app, &trailers, &["--drain-timeout", "10s"]);
        let mut h2 = H2::connect(addr);
        let mut writer = h2.stream.try_clone().unwrap();
        let told = std::thread::spawn(move || h2.until(|f| f.kind == GOAWAY).is_some());
        gw.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(6);
        let mut id = 1;
        while !told.is_finished() && Instant::now() < deadline {
            let request = frame(HEADERS, END_HEADERS | END_STREAM, id, &block(&request("GET", "app.test", "/")));
            if writer.write_all(&request).is_err() {
                break;
            }
            id += 2;
            std::thread::sleep(Duration::from_millis(200));
        }
        // Asked while the connection was still busy, not once the load stopped.
        let in_time = told.is_finished();
        assert!(in_time && told.join().unwrap(), "no GOAWAY on a connection busy through the drain:\n{}", gw.logs());
    }

    fn https_offers_h2_by_alpn(driver) {
        let app = Backend::start("app");
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("h2 test ca");
        let (crt, key) = ca.server(&["app.test"]).write(dir.path(), "server");
        let port = free_port();
        let yaml = docs(&[
            support::tls::gateway("gw", &[server(port, "https", "HTTPS", &["*"], &simple_tls(&crt, &key))]),
            route_all("app", &["gw"], &["*"], "app.local"),
            service_entry("app", "app.local", 80, &[app.port()]),
        ]);
        let _gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let resolve = format!("app.test:{port}:127.0.0.1");
        let u = format!("https://app.test:{port}/secure");
        let fetch = |version: &str| {
            curl(&[version, "-k", "--resolve", resolve.as_str(), "-w", "\\n%{http_version}", u.as_str()])
        };
        let r = fetch("--http2");
        assert_eq!(r.out, "app\n2", "{}", r.err);
        assert_eq!(app.last().header("x-forwarded-proto"), Some("https"));
        let r = fetch("--http1.1");
        assert_eq!(r.out, "app\n1.1", "{}", r.err);
        // Many streams at once on one connection (curl 7.88's h2c reuse is broken, curl#10634:
        // over TLS it multiplexes). The backend holds each answer, so they overlap.
        let urls: Vec<String> = (0..40).map(|i| format!("https://app.test:{port}/delay/200?n={i}")).collect();
        let mut args = vec!["--http2", "-k", "--resolve", resolve.as_str(), "-Z", "--parallel-max", "40"];
        args.extend(["-w", "%{http_version} %{response_code} %{num_connects}\\n"]);
        for u in &urls {
            args.extend(["-o", "/dev/null", u.as_str()]);
        }
        let r = curl(&args);
        let lines: Vec<&str> = r.out.lines().collect();
        assert_eq!(lines.len(), 40, "{}{}", r.out, r.err);
        assert!(lines.iter().all(|l| l.starts_with("2 200 ")), "{}", r.out);
        let connects: u32 = lines.iter().map(|l| l.rsplit(' ').next().unwrap().parse::<u32>().unwrap()).sum();
        assert_eq!(connects, 1, "all streams on one connection: {}", r.out);
    }

    fn a_coalesced_request_for_another_servers_host_gets_421(driver) {
        let app = Backend::start("app");
        let dir = tempfile::tempdir().unwrap();
        // One certificate for both hosts, as a browser coalesces over.
        let ca = Ca::new("h2 test ca");
        let (crt, key) = ca.server(&["a.test", "b.test", "c.test"]).write(dir.path(), "shared");
        let port = free_port();
        let tls = simple_tls(&crt, &key);
        let yaml = docs(&[
            support::tls::gateway(
                "gw",
                &[server(port, "https-a", "HTTPS", &["a.test"], &tls), server(port, "https-b", "HTTPS", &["b.test"], &tls)],
            ),
            route_all("app", &["gw"], &["a.test", "b.test"], "app.local"),
            service_entry("app", "app.local", 80, &[app.port()]),
        ]);
        let _gw = gateway!(driver).file("gw.yaml", &yaml).start();
        // SNI a.test; curl sends a Host header as `:authority` over HTTP/2.
        let resolve = format!("a.test:{port}:127.0.0.1");
        let u = format!("https://a.test:{port}/");
        let fetch = |version: &str, host: &str| {
            let host = format!("host: {host}");
            let r = curl(&[version, "-k", "--resolve", &resolve, "-H", &host, "-o", "/dev/null", "-w", "%{http_version} %{response_code}", &u]);
            assert!(r.err.is_empty(), "{}", r.err);
            r.out
        };
        assert_eq!(fetch("--http2", "a.test"), "2 200");
        assert_eq!(fetch("--http2", "b.test"), "2 421", "b.test is another server's: a connection of its own");
        // No server of the port serves c.test: a new connection would fare no better.
        assert_eq!(fetch("--http2", "c.test"), "2 404");
        // An HTTP/1.1 client chose this SNI for this request itself: Envoy's 404.
        assert_eq!(fetch("--http1.1", "b.test"), "1.1 404");
    }

    fn https_http2_disabled_offers_http1_only_and_follows_reloads(driver) {
        let app = Backend::start("app");
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("h2 test ca");
        let (crt, key) = ca.server(&["app.test"]).write(dir.path(), "server");
        let (port, plain) = (free_port(), free_port());
        let yaml = docs(&[
            support::tls::gateway(
                "gw",
                &[server(port, "https", "HTTPS", &["*"], &simple_tls(&crt, &key)), server(plain, "http", "HTTP", &["*"], "")],
            ),
            route_all("app", &["gw"], &["*"], "app.local"),
            service_entry("app", "app.local", 80, &[app.port()]),
        ]);
        // ASM's switch in an Istio ProxyConfig resource, outside the --config directory.
        let proxy_config = |disabled: bool| {
            format!(
                "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata:\n  name: gw\n\
                 spec:\n  httpsHttp2Disabled: {disabled}\n"
            )
        };
        let proxy = write_file(dir.path(), "proxy.yaml", proxy_config(true).as_bytes());
        let gw = gateway!(driver).file("gw.yaml", &yaml).arg("--proxy-config").arg(&proxy).start();
        let resolve = format!("app.test:{port}:127.0.0.1");
        let u = format!("https://app.test:{port}/secure");
        let fetch = || curl(&["--http2", "-k", "--resolve", resolve.as_str(), "-w", "\\n%{http_version}", u.as_str()]);
        let r = fetch();
        assert_eq!(r.out, "app\n1.1", "ALPN offers http/1.1 only: {}", r.err);
        // Plain HTTP ports keep h2c, as ASM documents the switch.
        let r = curl(&["--http2-prior-knowledge", "-w", "\\n%{http_version}", &url(SocketAddr::from(([127, 0, 0, 1], plain)), "/")]);
        assert_eq!(r.out, "app\n2", "{}", r.err);
        // Read again on SIGHUP, as the rest of the config is.
        std::fs::write(&proxy, proxy_config(false)).unwrap();
        gw.signal("HUP");
        gw.wait_generation(2);
        let r = fetch();
        assert_eq!(r.out, "app\n2", "{}", r.err);
    }
}
