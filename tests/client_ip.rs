//! The real client address, as an Istio ingress gateway (Envoy under istiod's
//! `use_remote_address: true` and `xff_num_trusted_hops`) derives it: ProxyConfig's
//! `gatewayTopology.numTrustedProxies` picks the Nth address from the right of
//! `x-forwarded-for`, and the result feeds `remoteIpBlocks`, `x-envoy-external-address` and the
//! access log; a spoofed `x-forwarded-for` from an untrusted client changes nothing.
//! `gatewayTopology.proxyProtocol` makes every listener read a PROXY v1 or v2 header first and
//! refuse a connection without one; the header's source is then the client, on TCP routes too
//! (`sourceSubnet`, `useSourceIp`). Behind trusted proxies the client's `x-forwarded-proto` is
//! kept, as Envoy keeps it, and `useSourceIp` hashes the client the proxies name.

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use support::backend::Backend;
use support::client;
use support::config::{docs, head, service_entry};
use support::tcp::{listen_port, tcp_gateway, tcp_route, tcp_service_entry, tcp_virtual_service, TcpBackend};
use support::{wait_until, Driver, Gateway};

/// Denies the client 1.2.3.4 by its derived address.
const DENY_REMOTE: &str =
    "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-remote\n  \
                           namespace: istio-system\nspec:\n  action: DENY\n  rules:\n  - from:\n    - source:\n        \
                           remoteIpBlocks: [1.2.3.4/32]\n";

/// The gateway for `app.test` with the JSON access log, `args` added; its address.
fn start(driver: Driver, app: &Backend, args: &[&str]) -> (Gateway, SocketAddr) {
    let http = "  - route:\n    - destination:\n        host: app.local\n";
    let builder = args
        .iter()
        .fold(gateway!(driver), |g, a| g.arg(a))
        .arg("--access-log")
        .arg("--access-log-encoding")
        .arg("json")
        .file("policies.yaml", &docs(&[DENY_REMOTE.to_owned()]));
    builder.start_app(http, vec![service_entry("app", "app.local", 80, &[app.port()])])
}

/// A GET of `path` carrying `xff` as `x-forwarded-for` (and `x-forwarded-proto: https`, as a
/// load balancer terminating TLS writes it); its status.
fn get_from(addr: SocketAddr, path: &str, xff: &str) -> u16 {
    client::request(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: {xff}\r\nX-Forwarded-Proto: https\r\nConnection: \
             close\r\n\r\n"
        ),
    )
    .status
}

/// The access log's `downstream_remote_address` of the request to `path`.
fn logged_remote(gw: &Gateway, path: &str) -> String {
    let line = || {
        gw.stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["path"] == path)
    };
    let logged = wait_until(Duration::from_secs(5), || line().is_some());
    assert!(logged.is_some(), "no log line for {path}:\n{}", gw.stdout());
    line().unwrap()["downstream_remote_address"].as_str().unwrap_or_default().to_owned()
}

/// A PROXY v2 header (PROXY command, TCP over IPv4) from `source` to 10.0.0.1:443.
fn proxy_v2(source: [u8; 4], port: u16) -> Vec<u8> {
    let signature = b"\r\n\r\n\0\r\nQUIT\n";
    [&signature[..], b"\x21\x11\x00\x0c", &source, &[10, 0, 0, 1], &port.to_be_bytes(), &443u16.to_be_bytes()].concat()
}

/// Sends `bytes` on a fresh connection and reads until the gateway closes it (or 5 s pass).
fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A GET of `path` that closes its connection, after `prefix` (a PROXY header).
fn get_after(addr: SocketAddr, prefix: &[u8], path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    exchange(addr, &[prefix, request.as_bytes()].concat())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

both_drivers! {
    fn an_untrusted_clients_x_forwarded_for_is_passed_on_but_not_believed(driver) {
        let app = Backend::start("app");
        let (gw, addr) = start(driver, &app, &[]);
        assert_eq!(get_from(addr, "/spoofed", "1.2.3.4"), 200, "{}", gw.logs());
        let got = app.last();
        assert_eq!(got.header("x-forwarded-for"), Some("1.2.3.4, 127.0.0.1"));
        assert_eq!(got.header("x-envoy-external-address"), Some("127.0.0.1"));
        assert_eq!(got.header_all("x-forwarded-proto"), ["http"], "an untrusted client's scheme is overwritten");
        assert!(logged_remote(&gw, "/spoofed").starts_with("127.0.0.1:"));
    }

    fn behind_trusted_proxies_the_client_is_the_nth_address_from_the_right(driver) {
        let dir = tempfile::tempdir().unwrap();
        // MeshConfig's defaultConfig says two; the gateway's own ProxyConfig overrides it to one.
        let mesh = write(dir.path(), "mesh.yaml", "defaultConfig:\n  gatewayTopology:\n    numTrustedProxies: 2\n");
        let proxy = write(dir.path(), "proxy.yaml", "gatewayTopology:\n  numTrustedProxies: 1\n");
        let app = Backend::start("app");
        let (gw, addr) = start(driver, &app, &["--mesh", &mesh, "--proxy-config", &proxy]);
        // The load balancer appended 1.2.3.4: the denied client.
        assert_eq!(get_from(addr, "/denied", "9.9.9.9, 1.2.3.4"), 403, "{}", gw.logs());
        // 1.2.3.4 wrote itself further left: a spoof the trusted hop does not vouch for.
        assert_eq!(get_from(addr, "/allowed", "1.2.3.4,9.9.9.9"), 200, "{}", gw.logs());
        let got = app.last();
        assert_eq!(got.header("x-forwarded-for"), Some("1.2.3.4,9.9.9.9, 127.0.0.1"));
        assert_eq!(got.header("x-envoy-external-address"), Some("9.9.9.9"));
        // Envoy keeps the scheme a trusted hop wrote (`xff_num_trusted_hops` > 0).
        assert_eq!(got.header_all("x-forwarded-proto"), ["https"]);
        assert_eq!(logged_remote(&gw, "/allowed"), "9.9.9.9:0");
        // Too short a chain: the peer is the client.
        assert_eq!(get_from(addr, "/bad", "not-an-address"), 200);
        assert_eq!(app.last().header("x-envoy-external-address"), Some("127.0.0.1"));
    }

    fn mesh_default_config_alone_sets_the_trusted_proxies(driver) {
        let dir = tempfile::tempdir().unwrap();
        let mesh = write(dir.path(), "mesh.yaml", "defaultConfig:\n  gatewayTopology:\n    numTrustedProxies: 2\n");
        let app = Backend::start("app");
        let (gw, addr) = start(driver, &app, &["--mesh", &mesh]);
        assert_eq!(get_from(addr, "/", "1.2.3.4, 9.9.9.9"), 403, "{}", gw.logs());
        assert_eq!(get_from(addr, "/", "9.9.9.9, 1.2.3.4"), 200);
        assert_eq!(app.last().header("x-envoy-external-address"), Some("9.9.9.9"));
    }

    fn proxy_protocol_headers_name_the_client_and_connections_without_one_are_refused(driver) {
        let dir = tempfile::tempdir().unwrap();
        let proxy = write(dir.path(), "proxy.yaml", "gatewayTopology:\n  proxyProtocol: {}\n");
        let app = Backend::start("app");
        let (gw, addr) = start(driver, &app, &["--proxy-config", &proxy]);
        let ok = get_after(addr, b"PROXY TCP4 5.6.7.8 10.0.0.1 51000 80\r\n", "/v1");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}\n{}", gw.logs());
        let got = app.last();
        assert_eq!(got.header("x-forwarded-for"), Some("5.6.7.8"));
        assert_eq!(got.header("x-envoy-external-address"), Some("5.6.7.8"));
        assert_eq!(logged_remote(&gw, "/v1"), "5.6.7.8:51000");
        let denied = get_after(addr, b"PROXY TCP4 1.2.3.4 10.0.0.1 51000 80\r\n", "/v1-denied");
        assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
        let ok = get_after(addr, &proxy_v2([5, 6, 7, 8], 52000), "/v2");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert_eq!(app.last().header("x-envoy-external-address"), Some("5.6.7.8"));
        let denied = get_after(addr, &proxy_v2([1, 2, 3, 4], 52000), "/v2-denied");
        assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
        // A v2 LOCAL header (the balancer's own health check) keeps the socket's address.
        let local = [&b"\r\n\r\n\0\r\nQUIT\n"[..], b"\x20\x00\x00\x00"].concat();
        assert!(get_after(addr, &local, "/local").starts_with("HTTP/1.1 200"));
        assert_eq!(app.last().header("x-envoy-external-address"), Some("127.0.0.1"));
        // No header, or a broken one: closed without an answer, nothing reaches the backend.
        let before = app.count();
        assert_eq!(get_after(addr, b"", "/none"), "");
        assert_eq!(get_after(addr, b"PROXY TCP4 1.2.3.4\r\n", "/broken"), "");
        assert_eq!(app.count(), before);
    }

    fn without_proxy_protocol_a_proxy_header_is_not_believed(driver) {
        let app = Backend::start("app");
        let (gw, addr) = start(driver, &app, &[]);
        let answer = get_after(addr, b"PROXY TCP4 5.6.7.8 10.0.0.1 51000 80\r\n", "/");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}\n{}", gw.logs());
        assert_eq!(app.count(), 0);
    }

    fn a_tcp_server_reads_the_proxy_header_and_judges_its_client(driver) {
        let dir = tempfile::tempdir().unwrap();
        let proxy = write(dir.path(), "proxy.yaml", "gatewayTopology:\n  proxyProtocol: {}\n");
        let echo = TcpBackend::echo();
        let port = listen_port();
        let parts = [
            tcp_gateway("db", port, "TCP"),
            tcp_virtual_service("db", "db", &tcp_route("", 9000, &[("db.local", 100)])),
            tcp_service_entry("db", "db.local", 9000, &[echo.port()]),
            DENY_REMOTE.to_owned(),
        ];
        let gw = gateway!(driver).file("gw.yaml", &docs(&parts)).arg("--proxy-config").arg(&proxy).start();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let echoes = |prefix: &[u8]| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(&[prefix, b"ping"].concat());
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).is_ok() && &buf == b"ping"
        };
        assert!(echoes(&proxy_v2([5, 6, 7, 8], 50000)), "{}", gw.logs());
        assert!(echoes(b"PROXY TCP4 5.6.7.8 10.0.0.1 51000 80\r\n"));
        assert!(!echoes(&proxy_v2([1, 2, 3, 4], 50000)), "remoteIpBlocks reads the PROXY source");
        assert!(!echoes(b""), "no header: refused");
        assert_eq!(echo.accepted(), 2);
    }

    fn a_tcp_route_matches_and_hashes_the_proxy_headers_source(driver) {
        let dir = tempfile::tempdir().unwrap();
        let proxy = write(dir.path(), "proxy.yaml", "gatewayTopology:\n  proxyProtocol: {}\n");
        let (a, b) = (TcpBackend::named("a"), TcpBackend::named("b"));
        let (one, two) = (TcpBackend::named("1"), TcpBackend::named("2"));
        let (subnet, hashed) = (listen_port(), listen_port());
        let from_5 = "    - sourceSubnet: 5.6.7.0/24\n";
        let routes = tcp_route(from_5, 9000, &[("a.local", 100)]) + &tcp_route("", 9000, &[("b.local", 100)]);
        let by_source = "  host: pool.local\n  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n        useSourceIp: true\n";
        let parts = [
            tcp_gateway("subnet", subnet, "TCP"),
            tcp_virtual_service("subnet", "subnet", &routes),
            tcp_gateway("hashed", hashed, "TCP"),
            tcp_virtual_service("hashed", "hashed", &tcp_route("", 9000, &[("pool.local", 100)])),
            tcp_service_entry("a", "a.local", 9000, &[a.port()]),
            tcp_service_entry("b", "b.local", 9000, &[b.port()]),
            tcp_service_entry("pool", "pool.local", 9000, &[one.port(), two.port()]),
            head("DestinationRule", "pool") + by_source,
        ];
        let gw = gateway!(driver).file("gw.yaml", &docs(&parts)).arg("--proxy-config").arg(&proxy).start();
        let greeting = |port: u16, source: [u8; 4]| {
            let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&proxy_v2(source, 50000)).unwrap();
            let mut buf = [0u8; 1];
            s.read_exact(&mut buf).map_or('?', |_| char::from(buf[0]))
        };
        // Envoy's filter chain match sees the address the PROXY header restored.
        assert_eq!(greeting(subnet, [5, 6, 7, 8]), 'a', "{}", gw.logs());
        assert_eq!(greeting(subnet, [9, 9, 9, 9]), 'b');
        // useSourceIp hashes it too: each source sticks to one endpoint, and the sources
        // (all from one socket peer) spread over both.
        let picks: Vec<char> = (1..=16).map(|i| greeting(hashed, [10, 0, 0, i])).collect();
        assert!(picks.contains(&'1') && picks.contains(&'2'), "{picks:?}\n{}", gw.logs());
        let again: Vec<char> = (1..=16).map(|i| greeting(hashed, [10, 0, 0, i])).collect();
        assert_eq!(picks, again);
    }

    fn use_source_ip_hashes_the_client_a_trusted_proxy_names(driver) {
        let dir = tempfile::tempdir().unwrap();
        let proxy = write(dir.path(), "proxy.yaml", "gatewayTopology:\n  numTrustedProxies: 1\n");
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        let by_source = "  host: app.local\n  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n        useSourceIp: true\n";
        let http = "  - route:\n    - destination:\n        host: app.local\n";
        let (gw, addr) = gateway!(driver)
            .arg("--proxy-config")
            .arg(&proxy)
            .file("dr.yaml", &(head("DestinationRule", "app") + by_source))
            .start_app(http, vec![service_entry("app", "app.local", 80, &[a.port(), b.port()])]);
        // Which backend served a GET from `client` (as the balancer in front appended it).
        let served = |client: &str| {
            let before = a.count();
            assert_eq!(get_from(addr, "/", client), 200, "{}", gw.logs());
            if a.count() > before { 'a' } else { 'b' }
        };
        // Every request comes from 127.0.0.1; Envoy's router hashes the derived client.
        let picks: Vec<char> = (1..=16).map(|i| served(&format!("10.0.0.{i}"))).collect();
        assert!(picks.contains(&'a') && picks.contains(&'b'), "{picks:?}");
        let again: Vec<char> = (1..=16).map(|i| served(&format!("10.0.0.{i}"))).collect();
        assert_eq!(picks, again);
    }
}
