//! TLS end to end, as an Istio ingress gateway (Envoy) shows it: SNI picks a Gateway server and
//! its certificate, then Host picks a route among that server's routes only; credentialName from
//! a Secret or the secrets directory; MUTUAL and OPTIONAL_MUTUAL with x-forwarded-client-cert;
//! revocation lists (caCrl) on both sides;
//! protocol version bounds; PASSTHROUGH and AUTO_PASSTHROUGH to backends that terminate TLS;
//! certificate files replaced on disk while serving; TLS origination to upstreams (SIMPLE and
//! MUTUAL); openssl and curl as clients; the handshake timeout; and the handshake counters.

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{self, ErrorKind, Read, Write};

use base64::Engine as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strait::snapshot::AnyOfNames;
use support::backend::Backend;
use support::client::{self, Conn, Response};
use support::config::{docs, http_gateway};
use support::tcp::{listen_port, tcp_gateway, tcp_route, tcp_service_entry, tcp_virtual_service, TcpBackend};
use support::tls::{
    gateway, mutual_tls, replace_file, route_all, secret, secret_in, server, service_entry, simple_tls,
    tls_destination_rule, tls_route, write_credential, Ca, CertInfo, Leaf, SClient, TlsBackend, TlsClient, Versions,
};
use support::{wait_until, Driver, Gateway};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A CA and a directory for the certificate files of one test.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        Pki { dir: tempfile::tempdir().unwrap(), ca: Ca::new("strait test ca") }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ca.pem` in the directory.
    fn ca_file(&self) -> PathBuf {
        let path = self.path("ca.pem");
        if !path.exists() {
            self.ca.write(self.dir.path(), "ca.pem");
        }
        path
    }

    /// A server leaf for `names`, written as `stem.crt`/`stem.key`.
    fn server(&self, stem: &str, names: &[&str]) -> (Leaf, PathBuf, PathBuf) {
        let leaf = self.ca.server(names);
        let (cert, key) = leaf.write(self.dir.path(), stem);
        (leaf, cert, key)
    }

    /// The usual client identity: CN=client, URI SAN spiffe://example.com/client.
    fn client(&self) -> Leaf {
        self.ca.client("client", Some("spiffe://example.com/client"))
    }
}

/// A plain HTTP ServiceEntry `host` (port 80) for `backend`.
fn plain_service(name: &str, host: &str, backend: &Backend) -> String {
    support::config::service_entry(name, host, 80, &[backend.port()])
}

/// One HTTPS server for every host on `port` serving `crt`, every request to `app`.
fn https_app(port: u16, crt: &Path, key: &Path, app: &Backend) -> String {
    docs(&[
        gateway("gw", &[server(port, "https", "HTTPS", &["*"], &simple_tls(crt, key))]),
        route_all("app", &["gw"], &["*"], "app.local"),
        plain_service("app", "app.local", app),
    ])
}

fn describe(der: &[u8]) -> String {
    let info = CertInfo::parse(der);
    format!("serial {} subject {} dns {:?}", info.serial, info.subject, info.dns_names)
}

/// Asserts the server presented `want`.
fn assert_served(gw: &Gateway, got: io::Result<Vec<u8>>, want: &Leaf, what: &str) {
    let got = got.unwrap_or_else(|e| panic!("{what}: handshake failed: {e}; logs:\n{}", gw.logs()));
    assert!(got == want.der, "{what}: served {} instead of {}", describe(&got), describe(&want.der));
}

/// A response, or a panic with the gateway's logs.
fn ok(gw: &Gateway, r: io::Result<Response>, what: &str) -> Response {
    r.unwrap_or_else(|e| panic!("{what}: no response: {e}; logs:\n{}", gw.logs()))
}

/// Asserts the attempt failed because the gateway refused or closed the connection, not
/// because it hung (a read timeout) and not with an HTTP answer.
fn assert_refused<T>(gw: &Gateway, r: io::Result<T>, what: &str) {
    match r {
        Ok(_) => panic!("{what}: expected the connection to be refused, it went through; logs:\n{}", gw.logs()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("{what}: the gateway neither answered nor closed: {e}; logs:\n{}", gw.logs())
        }
        Err(_) => {}
    }
}

/// Like [`assert_refused`] for a request: no HTTP response came back.
fn assert_no_response(gw: &Gateway, r: io::Result<Response>, what: &str) {
    if let Ok(resp) = &r {
        panic!("{what}: expected no HTTP response, got {} {:?}; logs:\n{}", resp.status, resp.body_text(), gw.logs());
    }
    assert_refused(gw, r, what);
}

/// The one `x-forwarded-client-cert` the backend's last request carried.
fn xfcc(backend: &Backend) -> Option<String> {
    let last = backend.last();
    let all = last.header_all("x-forwarded-client-cert");
    assert!(all.len() <= 1, "several x-forwarded-client-cert fields: {all:?}");
    all.first().map(|v| v.to_string())
}

fn assert_xfcc_names(value: &str, client: &Leaf) {
    let hash = format!("Hash={}", client.sha256_hex());
    assert!(value.contains(&hash), "{value:?} lacks {hash}");
    assert!(value.contains("Subject=\"CN=client\""), "{value:?} lacks Subject=\"CN=client\"");
    assert!(value.contains("URI=spiffe://example.com/client"), "{value:?} lacks the URI SAN");
}

both_drivers! {
    fn sni_selects_the_server_its_certificate_and_its_routes(driver) {
        let pki = Pki::new();
        let (a_leaf, a_crt, a_key) = pki.server("a", &["a.example.com"]);
        let (b_leaf, b_crt, b_key) = pki.server("b", &["b.example.com"]);
        let (c_leaf, c_crt, c_key) = pki.server("c", &["*.example.com"]);
        let (a, b, c) = (Backend::start("a"), Backend::start("b"), Backend::start("c"));
        let (port, only_a) = (listen_port(), listen_port());
        let config = docs(&[
            gateway(
                "gw",
                &[
                    server(port, "https-a", "HTTPS", &["a.example.com"], &simple_tls(&a_crt, &a_key)),
                    server(port, "https-b", "HTTPS", &["b.example.com"], &simple_tls(&b_crt, &b_key)),
                    server(port, "https-default", "HTTPS", &["*"], &simple_tls(&c_crt, &c_key)),
                ],
            ),
            gateway("gw2", &[server(only_a, "https-a", "HTTPS", &["a.example.com"], &simple_tls(&a_crt, &a_key))]),
            route_all("a", &["gw", "gw2"], &["a.example.com"], "a.local"),
            route_all("b", &["gw"], &["b.example.com"], "b.local"),
            route_all("c", &["gw"], &["*"], "c.local"),
            plain_service("a", "a.local", &a),
            plain_service("b", "b.local", &b),
            plain_service("c", "c.local", &c),
        ]);
        let gw = gateway!(driver).file("gw.yaml", &config).start();
        let client = TlsClient::new(&pki.ca);

        assert_served(&gw, client.served(addr(port), "a.example.com"), &a_leaf, "SNI a");
        assert_served(&gw, client.served(addr(port), "b.example.com"), &b_leaf, "SNI b");
        assert_served(&gw, client.served(addr(port), "other.example.com"), &c_leaf, "SNI other (the * server)");

        let r = ok(&gw, client.get(addr(port), "a.example.com", "a.example.com", "/"), "SNI a, Host a");
        assert_eq!((r.status, r.header("x-backend")), (200, Some("a")));
        assert_eq!(a.last().header("x-forwarded-proto"), Some("https"), "the backend sees the real scheme");
        let r = ok(&gw, client.get(addr(port), "b.example.com", "b.example.com", "/"), "SNI b, Host b");
        assert_eq!((r.status, r.header("x-backend")), (200, Some("b")));
        assert_eq!(b.last().header("x-forwarded-proto"), Some("https"));
        let r = ok(&gw, client.get(addr(port), "other.example.com", "other.example.com", "/"), "SNI other");
        assert_eq!((r.status, r.header("x-backend")), (200, Some("c")));

        // Host picks among the SNI-chosen server's routes only: server a knows only a.example.com...
        let r = ok(&gw, client.get(addr(port), "a.example.com", "b.example.com", "/"), "SNI a, Host b");
        assert_eq!(r.status, 404, "server a has no route for b.example.com: {:?}", r.header("x-backend"));
        // ...while the `*` server admits every VirtualService bound to the gateway.
        let r = ok(&gw, client.get(addr(port), "other.example.com", "a.example.com", "/"), "SNI other, Host a");
        assert_eq!((r.status, r.header("x-backend")), (200, Some("a")));

        // A port with no `*` server: an SNI that matches no server closes the connection.
        assert_served(&gw, client.served(addr(only_a), "a.example.com"), &a_leaf, "SNI a on the a-only port");
        let r = ok(&gw, client.get(addr(only_a), "a.example.com", "a.example.com", "/"), "a-only port");
        assert_eq!((r.status, r.header("x-backend")), (200, Some("a")));
        assert_refused(&gw, client.connect(addr(only_a), "z.example.com"), "SNI z on the a-only port");
        // And the gateway still serves after refusing.
        assert_served(&gw, client.served(addr(only_a), "a.example.com"), &a_leaf, "SNI a again");
    }

    fn mutual_tls_verifies_clients_and_sets_xfcc(driver) {
        let pki = Pki::new();
        let (_, crt, key) = pki.server("srv", &["mtls.example.com"]);
        let app = Backend::start("app");
        let port = listen_port();
        let config = docs(&[
            gateway("gw", &[server(port, "https-mtls", "HTTPS", &["*"], &mutual_tls("MUTUAL", &crt, &key, &pki.ca_file()))]),
            route_all("app", &["gw"], &["*"], "app.local"),
            plain_service("app", "app.local", &app),
        ]);
        let gw = gateway!(driver).file("gw.yaml", &config).start();
        let sni = "mtls.example.com";
        let identity = pki.client();
        let with_cert = TlsClient::builder(&pki.ca).identity(&identity).build();

        let r = ok(&gw, with_cert.get(addr(port), sni, sni, "/"), "a client with a certificate from the CA");
        assert_eq!((r.status, r.header("x-backend")), (200, Some("app")));
        let value = xfcc(&app).expect("the backend receives x-forwarded-client-cert");
        assert_xfcc_names(&value, &identity);

        // A client's own x-forwarded-client-cert is replaced, not passed on or appended to.
        let forged = "GET / HTTP/1.1\r\nHost: mtls.example.com\r\n\
                      x-forwarded-client-cert: By=spiffe://evil;Hash=deadbeef;Subject=\"CN=forged\"\r\n\
                      Connection: close\r\n\r\n";
        let r = ok(&gw, with_cert.request(addr(port), sni, forged), "a client sending its own XFCC");
        assert_eq!(r.status, 200);
        let value = xfcc(&app).expect("the backend receives x-forwarded-client-cert");
        assert!(!value.contains("deadbeef") && !value.contains("forged") && !value.contains("evil"), "{value:?}");
        assert_xfcc_names(&value, &identity);
        let seen = app.count();

        // No certificate, or one from another CA: the handshake fails, no request gets through.
        let without = TlsClient::new(&pki.ca);
        assert_no_response(&gw, without.get(addr(port), sni, sni, "/"), "no client certificate");
        let other_ca = Ca::new("another ca");
        let stranger = TlsClient::builder(&pki.ca).identity(&other_ca.client("client", Some("spiffe://example.com/client"))).build();
        assert_no_response(&gw, stranger.get(addr(port), sni, sni, "/"), "a client certificate from another CA");
        assert_eq!(app.count(), seen, "refused clients reach no backend");

        // The gateway still serves good clients.
        let r = ok(&gw, with_cert.get(addr(port), sni, sni, "/"), "a good client again");
        assert_eq!(r.status, 200);
    }

    fn forward_client_cert_details_modes_as_envoy_writes_them(driver) {
        let pki = Pki::new();
        let (_, crt, key) = pki.server("srv", &["mtls.example.com"]);
        let identity = pki.client();
        let with_cert = TlsClient::builder(&pki.ca).identity(&identity).build();
        let sni = "mtls.example.com";
        let forged = "By=spiffe://evil;Hash=deadbeef";
        let request = format!("GET / HTTP/1.1\r\nHost: mtls.example.com\r\nx-forwarded-client-cert: {forged}\r\nConnection: close\r\n\r\n");
        // (mode, over mTLS: the client's kept, the gateway's written; over plain HTTP: the client's kept)
        let modes = [
            ("SANITIZE", false, false, false),
            ("FORWARD_ONLY", true, false, false),
            ("APPEND_FORWARD", true, true, false),
            ("SANITIZE_SET", false, true, false),
            ("ALWAYS_FORWARD_ONLY", true, false, true),
        ];
        for (mode, keeps, sets, keeps_plain) in modes {
            let app = Backend::start("app");
            let (port, plain) = (listen_port(), listen_port());
            let config = docs(&[
                gateway(
                    "gw",
                    &[
                        server(port, "https-mtls", "HTTPS", &["*"], &mutual_tls("MUTUAL", &crt, &key, &pki.ca_file())),
                        server(plain, "http", "HTTP", &["*"], ""),
                    ],
                ),
                route_all("app", &["gw"], &["*"], "app.local"),
                plain_service("app", "app.local", &app),
            ]);
            let dir = tempfile::tempdir().unwrap();
            let proxy = dir.path().join("proxy.yaml");
            std::fs::write(&proxy, format!("gatewayTopology:\n  forwardClientCertDetails: {mode}\n")).unwrap();
            let gw = gateway!(driver).file("gw.yaml", &config).arg("--proxy-config").arg(proxy.to_str().unwrap()).start();
            let r = ok(&gw, with_cert.request(addr(port), sni, &request), mode);
            assert_eq!(r.status, 200, "{mode}");
            let last = app.last();
            let got = last.header_all("x-forwarded-client-cert");
            // One line, as Envoy writes it: APPEND_FORWARD joins its element to the client's
            // value with a comma.
            assert_eq!(got.len(), usize::from(keeps || sets), "{mode}: {got:?}");
            let value = got.first().copied().unwrap_or_default();
            assert_eq!(value.starts_with(forged), keeps, "{mode}: {got:?}");
            let hash = format!("Hash={}", identity.sha256_hex());
            assert_eq!(value.contains(&hash), sets, "{mode}: {got:?}");
            if keeps && sets {
                assert!(value.starts_with(&format!("{forged},")), "{mode}: {got:?}");
            }
            assert_eq!(client::request(addr(plain), &request).status, 200);
            let expected: Vec<&str> = if keeps_plain { vec![forged] } else { vec![] };
            assert_eq!(app.last().header_all("x-forwarded-client-cert"), expected, "{mode} over plain HTTP");
        }
    }

    fn passthrough_hands_the_tls_stream_to_the_backend(driver) {
        let pki = Pki::new();
        let backend_leaf = pki.ca.server(&["pt.example.com"]);
        let backend = TlsBackend::start("pt", &backend_leaf, None);
        let port = listen_port();
        let config = docs(&[
            gateway("gw", &[server(port, "tls-pt", "TLS", &["*.example.com"], "{mode: PASSTHROUGH}")]),
            tls_route("pt", "gw", &["pt.example.com"], &["pt.example.com"], port, "pt-backend.example.com", 8443),
            service_entry("pt-backend", "pt-backend.example.com", 8443, "TLS", backend.port(), None),
        ]);
        let gw = gateway!(driver).file("gw.yaml", &config).start();
        let client = TlsClient::new(&pki.ca);

        // The backend's certificate, not one of the gateway's (it has none).
        assert_served(&gw, client.served(addr(port), "pt.example.com"), &backend_leaf, "SNI pt");
        let r = ok(&gw, client.get(addr(port), "pt.example.com", "pt.example.com", "/"), "through the passthrough");
        assert_eq!((r.status, r.body_text().as_str()), (200, "pt"));
        assert_eq!(backend.snis.lock().unwrap().last().cloned().flatten().as_deref(), Some("pt.example.com"));
        // Bytes, untouched: no header the gateway would have added.
        let last = backend.last();
        assert_eq!(last.header("x-forwarded-proto"), None, "{:?}", last.headers);
        assert_eq!(last.header("x-request-id"), None, "{:?}", last.headers);

        // An SNI that no tls route matches: closed, and nothing reaches the backend. (Counted by
        // TCP accepts: each earlier connection was accepted before its handshake could finish,
        // while the backend's own handshake count may still be catching up.)
        let accepted = backend.accepted.load(std::sync::atomic::Ordering::Relaxed);
        assert_refused(&gw, client.connect(addr(port), "other.example.com"), "SNI with no tls route");
        assert_eq!(backend.accepted.load(std::sync::atomic::Ordering::Relaxed), accepted);
        let r = ok(&gw, client.get(addr(port), "pt.example.com", "pt.example.com", "/"), "passthrough again");
        assert_eq!(r.status, 200);
    }

    fn passed_through_and_terminated_tcp_connections_are_logged(driver) {
        let pki = Pki::new();
        let (_, crt, key) = pki.server("tcp", &["tcp.example.com"]);
        let backend = TlsBackend::start("pt", &pki.ca.server(&["pt.example.com"]), None);
        let echo = TcpBackend::echo();
        let (passthrough, terminated) = (listen_port(), listen_port());
        let config = docs(&[
            gateway("pt", &[server(passthrough, "tls-pt", "TLS", &["*.example.com"], "{mode: PASSTHROUGH}")]),
            gateway("tls-in", &[server(terminated, "tls", "TLS", &["tcp.example.com"], &simple_tls(&crt, &key))]),
            tls_route("pt", "pt", &["pt.example.com"], &["pt.example.com"], passthrough, "pt-backend.example.com", 8443),
            tcp_virtual_service("echo", "tls-in", &tcp_route("", 7000, &[("echo.example.com", 100)])),
            service_entry("pt-backend", "pt-backend.example.com", 8443, "TLS", backend.port(), None),
            tcp_service_entry("echo", "echo.example.com", 7000, &[echo.port()]),
        ]);
        let gw = gateway!(driver)
            .arg("--access-log")
            .arg("--access-log-encoding")
            .arg("json")
            .file("gw.yaml", &config)
            .start();
        let client = TlsClient::new(&pki.ca);
        let r = ok(&gw, client.get(addr(passthrough), "pt.example.com", "pt.example.com", "/"), "passthrough");
        assert_eq!(r.status, 200);
        let mut conn = client.open(addr(terminated), "tcp.example.com").unwrap();
        conn.send(b"ping through tls").unwrap();
        let mut echoed = [0u8; 16];
        conn.reader.read_exact(&mut echoed).unwrap_or_else(|e| panic!("no echo: {e}; logs:\n{}", gw.logs()));
        drop(conn);

        let lines = || -> Vec<serde_json::Value> {
            gw.stdout().lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
        };
        wait_until(Duration::from_secs(10), || lines().len() == 2).unwrap_or_else(|| panic!("{:?}", lines()));
        let by_sni = |sni: &str| lines().into_iter().find(|l| l["requested_server_name"] == sni).unwrap();
        let pt = by_sni("pt.example.com");
        assert_eq!(pt["upstream_cluster"], "outbound|8443||pt-backend.example.com");
        assert_eq!(pt["upstream_host"], format!("127.0.0.1:{}", backend.port()));
        assert_eq!(pt["downstream_local_address"], format!("127.0.0.1:{passthrough}"));
        assert!(pt["bytes_received"].as_u64() > Some(100), "the ClientHello and the request: {pt}");
        assert!(pt["bytes_sent"].as_u64() > Some(100), "the handshake and the answer: {pt}");
        let plain = by_sni("tcp.example.com");
        assert_eq!(plain["upstream_cluster"], "outbound|7000||echo.example.com");
        assert_eq!((plain["bytes_received"].as_u64(), plain["bytes_sent"].as_u64()), (Some(16), Some(16)), "plaintext");
        for line in [&pt, &plain] {
            // No HTTP here: Envoy's tcp_proxy logs code 0 and null HTTP fields.
            assert_eq!(line["response_code"], 0, "{line}");
            assert_eq!(line["response_flags"], "-", "{line}");
            for field in ["method", "path", "protocol", "authority", "request_id", "route_name"] {
                assert_eq!(line[field], serde_json::Value::Null, "{field}: {line}");
            }
            assert!(line["upstream_local_address"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{line}");
        }
    }

    fn bodies_stream_both_ways_on_a_kept_alive_https_connection(driver) {
        let pki = Pki::new();
        let (_, crt, key) = pki.server("srv", &["big.example.com"]);
        let app = Backend::start("app");
        let port = listen_port();
        let gw = gateway!(driver).file("gw.yaml", &https_app(port, &crt, &key, &app)).start();
        let mut c = TlsClient::new(&pki.ca).open(addr(port), "big.example.com").expect("handshake");

        // An upload of many TLS records, checked by the backend's length and checksum.
        let len = 3 << 20;
        let body: Vec<u8> = (0..len).map(support::backend::pattern_byte).collect();
        let mut sum = 0;
        support::backend::checksum(&mut sum, 0, &body);
        c.send(format!("POST /upload HTTP/1.1\r\nHost: big.example.com\r\nContent-Length: {len}\r\n\r\n").as_bytes())
            .unwrap();
        c.send(&body).unwrap();
        let r = c.read_response().expect("the upload's answer");
        assert_eq!((r.status, r.body_text()), (200, format!("{len} {sum}")), "logs:\n{}", gw.logs());

        // A download as large, then two pipelined requests in one send, on the same connection.
        let r = c.get("/size/3145728", "big.example.com").expect("the download");
        assert_eq!(r.status, 200);
        assert!(r.body == body, "3 MiB back, byte for byte (got {} bytes)", r.body.len());
        c.send(b"GET /chunked/70000 HTTP/1.1\r\nHost: big.example.com\r\n\r\nGET / HTTP/1.1\r\nHost: big.example.com\r\n\r\n")
            .unwrap();
        let first = c.read_response().expect("the first pipelined answer");
        assert_eq!((first.status, first.body.len()), (200, 70000));
        let second = c.read_response().expect("the second pipelined answer");
        assert_eq!((second.status, second.body_text().as_str()), (200, "app"));
        assert_eq!(app.connections.load(std::sync::atomic::Ordering::Relaxed), 1, "one upstream connection, reused");
    }
}

#[test]
fn credential_name_from_a_secret_or_the_secrets_dir() {
    let pki = Pki::new();
    let from_secret = pki.ca.server(&["secret.example.com"]);
    let from_dir = pki.ca.server(&["dir.example.com"]);
    let secrets_dir = tempfile::tempdir().unwrap();
    write_credential(secrets_dir.path(), "dir-cred", &from_dir);
    let app = Backend::start("app");
    let (p1, p2) = (listen_port(), listen_port());
    let config = |secret_leaf: &Leaf| {
        docs(&[
            gateway(
                "gw",
                &[
                    server(p1, "https-secret", "HTTPS", &["*"], "{mode: SIMPLE, credentialName: secret-cred}"),
                    server(p2, "https-dir", "HTTPS", &["*"], "{mode: SIMPLE, credentialName: dir-cred}"),
                ],
            ),
            secret("secret-cred", secret_leaf),
            route_all("app", &["gw"], &["*"], "app.local"),
            plain_service("app", "app.local", &app),
        ])
    };
    let gw = gateway!(Driver::Uring)
        .file("gw.yaml", &config(&from_secret))
        .arg("--secrets-dir")
        .arg(secrets_dir.path().to_str().unwrap())
        .start();
    let client = TlsClient::new(&pki.ca);
    assert_served(&gw, client.served(addr(p1), "secret.example.com"), &from_secret, "the Secret's certificate");
    assert_served(&gw, client.served(addr(p2), "dir.example.com"), &from_dir, "the secrets dir's certificate");
    for (port, sni) in [(p1, "secret.example.com"), (p2, "dir.example.com")] {
        let r = ok(&gw, client.get(addr(port), sni, sni, "/"), sni);
        assert_eq!((r.status, r.header("x-backend")), (200, Some("app")));
    }

    // A new certificate in the Secret, applied by SIGHUP.
    gw.wait_generation(1);
    let renewed = pki.ca.server(&["secret.example.com"]);
    gw.write_config("gw.yaml", &config(&renewed));
    gw.signal("HUP");
    gw.wait_generation(2);
    // Workers may pick the new snapshot up a moment after the generation shows.
    wait_until(Duration::from_secs(5), || {
        client.served(addr(p1), "secret.example.com").is_ok_and(|d| d == renewed.der)
    })
    .unwrap_or_else(|| {
        let now = client.served(addr(p1), "secret.example.com").map(|d| describe(&d));
        panic!("the Secret's new certificate is not served after SIGHUP (now: {now:?}); logs:\n{}", gw.logs())
    });
    assert_served(&gw, client.served(addr(p2), "dir.example.com"), &from_dir, "the secrets dir's, unchanged");
}

both_drivers! {
    fn credential_name_is_looked_up_in_the_gateways_namespace(driver) {
        // Istio's httpbin example: the Secret in istio-system, where the gateway runs, the
        // Gateway resource elsewhere (here `default`). istiod's SDS reads the gateway's own.
        let pki = Pki::new();
        let leaf = pki.ca.server(&["httpbin.example.com"]);
        let app = Backend::start("app");
        let port = listen_port();
        let tls = "{mode: SIMPLE, credentialName: httpbin-credential}";
        let config = docs(&[
            gateway("gw", &[server(port, "https", "HTTPS", &["httpbin.example.com"], tls)]),
            secret_in("istio-system", "httpbin-credential", &leaf),
            route_all("app", &["gw"], &["httpbin.example.com"], "app.local"),
            plain_service("app", "app.local", &app),
        ]);
        let gw = gateway!(driver).file("gw.yaml", &config).arg("--namespace").arg("istio-system").start();
        let (client, sni) = (TlsClient::new(&pki.ca), "httpbin.example.com");
        assert_served(&gw, client.served(addr(port), sni), &leaf, "the Secret in istio-system");
        let r = ok(&gw, client.get(addr(port), sni, sni, "/"), sni);
        assert_eq!((r.status, r.header("x-backend")), (200, Some("app")));

        // Without --namespace the gateway's namespace is `default`, which has no such Secret:
        // refused, naming where it looked and where one is.
        let out = Command::new(env!("CARGO_BIN_EXE_strait"))
            .args(["validate", "--config", gw.config_dir().to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(
                "spec.servers[0].tls.credentialName: no Secret httpbin-credential in namespace default (the \
                 gateway's namespace, --namespace; namespace istio-system has one) and no secrets directory \
                 to look in"
            ),
            "{err}"
        );
    }
}

#[test]
fn optional_mutual_and_plain_http_sanitize_xfcc() {
    let pki = Pki::new();
    let (_, crt, key) = pki.server("srv", &["opt.example.com"]);
    let app = Backend::start("app");
    let (tls_port, plain_port) = (listen_port(), listen_port());
    let config = docs(&[
        gateway(
            "gw",
            &[
                server(
                    tls_port,
                    "https-opt",
                    "HTTPS",
                    &["*"],
                    &mutual_tls("OPTIONAL_MUTUAL", &crt, &key, &pki.ca_file()),
                ),
                server(plain_port, "http", "HTTP", &["*"], ""),
            ],
        ),
        route_all("app", &["gw"], &["*"], "app.local"),
        plain_service("app", "app.local", &app),
    ]);
    let gw = gateway!(Driver::Uring).file("gw.yaml", &config).start();
    let sni = "opt.example.com";
    let forged = "GET / HTTP/1.1\r\nHost: opt.example.com\r\nx-forwarded-client-cert: Hash=deadbeef\r\n\
                  Connection: close\r\n\r\n";

    // No certificate: served, and a client-sent XFCC does not reach the backend.
    let anonymous = TlsClient::new(&pki.ca);
    let r = ok(&gw, anonymous.request(addr(tls_port), sni, forged), "OPTIONAL_MUTUAL without a certificate");
    assert_eq!((r.status, r.header("x-backend")), (200, Some("app")));
    assert_eq!(xfcc(&app), None, "a forged XFCC is removed when no certificate was verified");

    // A good certificate: the header names it.
    let identity = pki.client();
    let with_cert = TlsClient::builder(&pki.ca).identity(&identity).build();
    let r = ok(&gw, with_cert.request(addr(tls_port), sni, forged), "OPTIONAL_MUTUAL with a certificate");
    assert_eq!(r.status, 200);
    let value = xfcc(&app).expect("x-forwarded-client-cert for a verified client");
    assert!(!value.contains("deadbeef"), "{value:?}");
    assert_xfcc_names(&value, &identity);

    // Plain HTTP: a client-sent XFCC is removed.
    let r = client::request(addr(plain_port), forged);
    assert_eq!(r.status, 200);
    assert_eq!(xfcc(&app), None, "a forged XFCC is removed on plain HTTP");
    assert_eq!(app.last().header("x-forwarded-proto"), Some("http"));
}

#[test]
fn protocol_version_bounds() {
    let pki = Pki::new();
    let (_, crt, key) = pki.server("srv", &["v.example.com"]);
    let app = Backend::start("app");
    let (only13, only12) = (listen_port(), listen_port());
    let bounded = |bound: &str| {
        format!(
            "{{mode: SIMPLE, serverCertificate: \"{}\", privateKey: \"{}\", {bound}}}",
            crt.display(),
            key.display()
        )
    };
    let config = docs(&[
        gateway(
            "gw",
            &[
                server(only13, "https-13", "HTTPS", &["*"], &bounded("minProtocolVersion: TLSV1_3")),
                server(only12, "https-12", "HTTPS", &["*"], &bounded("maxProtocolVersion: TLSV1_2")),
            ],
        ),
        route_all("app", &["gw"], &["*"], "app.local"),
        plain_service("app", "app.local", &app),
    ]);
    let gw = gateway!(Driver::Uring).file("gw.yaml", &config).start();
    let sni = "v.example.com";
    let v12 = TlsClient::builder(&pki.ca).versions(Versions::Only12).build();
    let v13 = TlsClient::builder(&pki.ca).versions(Versions::Only13).build();
    let any = TlsClient::new(&pki.ca);

    assert_refused(&gw, v12.connect(addr(only13), sni), "a TLS 1.2 client against minProtocolVersion TLSV1_3");
    assert_eq!(ok(&gw, v13.get(addr(only13), sni, sni, "/"), "TLS 1.3 client").status, 200);
    let s = any.connect(addr(only13), sni).unwrap_or_else(|e| panic!("{e}; logs:\n{}", gw.logs()));
    assert_eq!(s.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));

    assert_refused(&gw, v13.connect(addr(only12), sni), "a TLS 1.3 client against maxProtocolVersion TLSV1_2");
    assert_eq!(ok(&gw, v12.get(addr(only12), sni, sni, "/"), "TLS 1.2 client").status, 200);
    let s = any.connect(addr(only12), sni).unwrap_or_else(|e| panic!("{e}; logs:\n{}", gw.logs()));
    assert_eq!(s.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
}

#[test]
fn min_protocol_version_below_1_2_is_refused_by_validate() {
    let pki = Pki::new();
    let (_, crt, key) = pki.server("srv", &["v.example.com"]);
    let dir = tempfile::tempdir().unwrap();
    let tls = format!(
        "{{mode: SIMPLE, serverCertificate: \"{}\", privateKey: \"{}\", minProtocolVersion: TLSV1_0}}",
        crt.display(),
        key.display()
    );
    let config = docs(&[gateway("gw", &[server(8443, "https", "HTTPS", &["*"], &tls)])]);
    std::fs::write(dir.path().join("gw.yaml"), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["validate", "--config", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("spec.servers[0].tls.minProtocolVersion"), "the error names the field: {err}");

    // The same server with TLSV1_2 is fine (the certificate files are not the problem).
    let ok_config =
        docs(&[gateway("gw", &[server(8443, "https", "HTTPS", &["*"], &tls.replace("TLSV1_0", "TLSV1_2"))])]);
    std::fs::write(dir.path().join("gw.yaml"), ok_config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["validate", "--config", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("minProtocolVersion"), "{err}");
}

#[test]
fn auto_passthrough_routes_by_the_sni_of_a_mesh_service() {
    let pki = Pki::new();
    let backend_leaf = pki.ca.server(&["svc.example.com"]);
    let backend = TlsBackend::start("svc", &backend_leaf, None);
    let port = listen_port();
    let config = docs(&[
        gateway("gw", &[server(port, "tls-auto", "TLS", &["*"], "{mode: AUTO_PASSTHROUGH}")]),
        service_entry("svc", "svc.example.com", 9443, "TLS", backend.port(), Some("MESH_INTERNAL")),
    ]);
    let gw = gateway!(Driver::Uring).file("gw.yaml", &config).start();
    // Checked as if the client had asked for the service's name: AUTO_PASSTHROUGH's SNI is not
    // the certificate's name.
    let client = TlsClient::builder(&pki.ca)
        .verify_with(|webpki| Arc::new(AnyOfNames::new(webpki, &[Arc::from("svc.example.com")]).unwrap()))
        .build();
    let sni = "outbound_.9443_._.svc.example.com";

    assert_served(&gw, client.served(addr(port), sni), &backend_leaf, "AUTO_PASSTHROUGH to svc.example.com:9443");
    let r = ok(&gw, client.get(addr(port), sni, "svc.example.com", "/"), "through AUTO_PASSTHROUGH");
    assert_eq!((r.status, r.body_text().as_str()), (200, "svc"));
    assert_eq!(backend.snis.lock().unwrap().last().cloned().flatten().as_deref(), Some(sni), "the SNI is passed on");

    // A service or port nothing declares: closed.
    assert_refused(&gw, client.connect(addr(port), "outbound_.9443_._.nope.example.com"), "unknown service");
    assert_refused(&gw, client.connect(addr(port), "outbound_.9999_._.svc.example.com"), "unknown port");
}

#[test]
fn certificate_files_replaced_on_disk_are_picked_up_live() {
    let pki = Pki::new();
    let (first, crt, key) = pki.server("live", &["live.example.com"]);
    let app = Backend::start("app");
    let port = listen_port();
    let config = https_app(port, &crt, &key, &app);
    let gw = gateway!(Driver::Uring).file("gw.yaml", &config).start();
    let client = TlsClient::new(&pki.ca);
    let sni = "live.example.com";
    assert_served(&gw, client.served(addr(port), sni), &first, "the first certificate");
    let mut kept = client.open(addr(port), sni).unwrap();
    assert_eq!(ok(&gw, kept.get("/", sni), "before the change").status, 200);

    // A renewed certificate, written as Kubernetes does (temp file, rename), no signal.
    let renewed = pki.ca.server(&["live.example.com"]);
    replace_file(&key, &renewed.key_pem);
    replace_file(&crt, &renewed.cert_pem);
    wait_until(Duration::from_secs(10), || client.served(addr(port), sni).is_ok_and(|d| d == renewed.der))
        .unwrap_or_else(|| {
            let now = client.served(addr(port), sni).map(|d| describe(&d));
            panic!("the renewed certificate is not served within 10 s (now: {now:?}); logs:\n{}", gw.logs())
        });
    assert_eq!(ok(&gw, kept.get("/", sni), "a connection opened before the change").status, 200);
    assert_eq!(ok(&gw, client.get(addr(port), sni, sni, "/"), "a new connection").status, 200);

    // A broken certificate: the last good one keeps being served, and the log names the field.
    let before = gw.logs().len();
    replace_file(&crt, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
    wait_until(Duration::from_secs(10), || gw.logs().get(before..).is_some_and(|l| l.contains("serverCertificate")))
        .unwrap_or_else(|| panic!("no error naming serverCertificate after a broken write; logs:\n{}", gw.logs()));
    assert_served(&gw, client.served(addr(port), sni), &renewed, "the last good certificate");
    assert_eq!(ok(&gw, client.get(addr(port), sni, sni, "/"), "after the broken write").status, 200);
    assert_eq!(ok(&gw, kept.get("/", sni), "the old connection after the broken write").status, 200);
}

#[test]
fn upstream_tls_origination_simple_and_mutual() {
    let pki = Pki::new();
    let ca = pki.ca_file();
    let up = TlsBackend::start("up", &pki.ca.server(&["up.example.com"]), None);
    let mtls = TlsBackend::start("upm", &pki.ca.server(&["upm.example.com"]), Some(&pki.ca));
    let gateway_identity = pki.ca.client("gateway", Some("spiffe://example.com/gateway"));
    let (id_crt, id_key) = gateway_identity.write(pki.dir.path(), "gateway-client");
    let port = listen_port();
    let quoted = |p: &Path| format!("\"{}\"", p.display());
    let config = docs(&[
        http_gateway("gw", port, &["*"]),
        route_all("up", &["gw"], &["up.test"], "up.example.com"),
        route_all("upm", &["gw"], &["upm.test"], "upm.example.com"),
        route_all("upn", &["gw"], &["upn.test"], "upn.example.com"),
        support::config::service_entry("up", "up.example.com", 443, &[up.port()]),
        support::config::service_entry("upm", "upm.example.com", 443, &[mtls.port()]),
        support::config::service_entry("upn", "upn.example.com", 443, &[mtls.port()]),
        tls_destination_rule(
            "up",
            "up.example.com",
            &format!("{{mode: SIMPLE, caCertificates: {}, sni: up.example.com}}", quoted(&ca)),
        ),
        tls_destination_rule(
            "upm",
            "upm.example.com",
            &format!(
                "{{mode: MUTUAL, clientCertificate: {}, privateKey: {}, caCertificates: {}, sni: upm.example.com}}",
                quoted(&id_crt),
                quoted(&id_key),
                quoted(&ca)
            ),
        ),
        tls_destination_rule(
            "upn",
            "upn.example.com",
            &format!("{{mode: SIMPLE, caCertificates: {}, sni: upm.example.com}}", quoted(&ca)),
        ),
    ]);
    let gw = gateway!(Driver::Uring).file("gw.yaml", &config).start();

    // SIMPLE: several requests on one client connection (one worker) share an upstream connection.
    let mut conn = Conn::open(addr(port));
    for i in 0..5 {
        let r = conn.get("/", "up.test");
        assert_eq!((r.status, r.body_text().as_str()), (200, "up"), "request {i}; logs:\n{}", gw.logs());
    }
    assert_eq!(up.count(), 5);
    assert!(up.handshakes() < 5, "{} TLS handshakes for 5 requests: no reuse", up.handshakes());
    assert_eq!(up.snis.lock().unwrap().first().cloned().flatten().as_deref(), Some("up.example.com"));
    assert!(up.client_certs.lock().unwrap().is_empty(), "SIMPLE presents no client certificate");

    // MUTUAL: the backend requires a client certificate and gets the configured one.
    let r = client::get(addr(port), "upm.test", "/");
    assert_eq!((r.status, r.body_text().as_str()), (200, "upm"), "logs:\n{}", gw.logs());
    let presented = mtls.client_certs.lock().unwrap().clone();
    assert!(presented.contains(&gateway_identity.der), "the backend saw {} client certificates", presented.len());

    // The same backend without a client certificate configured: 503.
    let seen = mtls.count();
    let r = client::get(addr(port), "upn.test", "/");
    assert_eq!(r.status, 503, "body {:?}; logs:\n{}", r.body_text(), gw.logs());
    assert_eq!(mtls.count(), seen, "no request reached the backend without a client certificate");
}

/// Two services behind one address, with the same DestinationRule `tls` and no `sni`: each
/// is reached with its own name as SNI, and a pooled connection verified for one never
/// carries the other's requests (Envoy pools per cluster).
#[test]
fn pooled_upstream_tls_connections_stay_with_the_name_they_were_verified_for() {
    let pki = Pki::new();
    let ca = pki.ca_file();
    let up = TlsBackend::start("up", &pki.ca.server(&["a.example.com", "b.example.com"]), None);
    let port = listen_port();
    let tls = format!("{{mode: SIMPLE, caCertificates: \"{}\"}}", ca.display());
    let config = docs(&[
        http_gateway("gw", port, &["*"]),
        route_all("a", &["gw"], &["a.test"], "a.example.com"),
        route_all("b", &["gw"], &["b.test"], "b.example.com"),
        support::config::service_entry("a", "a.example.com", 443, &[up.port()]),
        support::config::service_entry("b", "b.example.com", 443, &[up.port()]),
        tls_destination_rule("a", "a.example.com", &tls),
        tls_destination_rule("b", "b.example.com", &tls),
    ]);
    let gw = gateway!(Driver::Uring).workers(1).file("gw.yaml", &config).start();
    let mut conn = Conn::open(addr(port));
    for host in ["a.test", "b.test", "a.test", "b.test"] {
        let r = conn.get("/", host);
        assert_eq!(r.status, 200, "{host}; logs:\n{}", gw.logs());
    }
    let snis: Vec<Option<String>> = up.snis.lock().unwrap().clone();
    let named = |name: &str| snis.iter().filter(|s| s.as_deref() == Some(name)).count();
    assert_eq!((named("a.example.com"), named("b.example.com")), (1, 1), "handshakes by SNI: {snis:?}");
}

/// `caCrl` as Envoy enforces it, on both sides: a MUTUAL server (from files, a generic Secret's
/// `crl`, and the secrets directory's `ca.crl`) refuses a revoked client, an upstream with a
/// revoked certificate is not used, and a list replaced on disk applies without a signal.
#[test]
fn ca_crl_refuses_revoked_clients_and_upstreams_and_a_new_list_applies_live() {
    let pki = Pki::new();
    let (srv, crt, key) = pki.server("srv", &["crl.example.com"]);
    let (alice, bob) = (pki.client(), pki.client());
    let revoked_up = pki.ca.server(&["up.example.com"]);
    let crl = pki.path("ca.crl");
    std::fs::write(&crl, pki.ca.crl(&[&alice, &revoked_up])).unwrap();
    let secrets_dir = tempfile::tempdir().unwrap();
    write_credential(secrets_dir.path(), "dir-cred", &srv);
    pki.ca.write(&secrets_dir.path().join("dir-cred"), "ca.crt");
    std::fs::write(secrets_dir.path().join("dir-cred/ca.crl"), pki.ca.crl(&[&alice])).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let generic_secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: generic-cred\n  namespace: default\ndata:\n  cert: {}\n  key: {}\n  cacert: {}\n  crl: {}\n",
        b64(&srv.cert_pem),
        b64(&srv.key_pem),
        b64(&pki.ca.pem()),
        b64(&pki.ca.crl(&[&alice]))
    );
    let app = Backend::start("app");
    let up = TlsBackend::start("up", &revoked_up, None);
    let (files, generic, dir, plain) = (listen_port(), listen_port(), listen_port(), listen_port());
    let quoted = |p: &Path| format!("\"{}\"", p.display());
    let ca = quoted(&pki.ca_file());
    let file_tls = format!(
        "{{mode: MUTUAL, serverCertificate: {}, privateKey: {}, caCertificates: {ca}, caCrl: {}}}",
        quoted(&crt),
        quoted(&key),
        quoted(&crl)
    );
    let config = docs(&[
        gateway(
            "gw",
            &[
                server(files, "https-files", "HTTPS", &["*"], &file_tls),
                server(generic, "https-generic", "HTTPS", &["*"], "{mode: MUTUAL, credentialName: generic-cred}"),
                server(dir, "https-dir", "HTTPS", &["*"], "{mode: MUTUAL, credentialName: dir-cred}"),
            ],
        ),
        generic_secret,
        route_all("app", &["gw"], &["*"], "app.local"),
        plain_service("app", "app.local", &app),
        http_gateway("plain", plain, &["up.test"]),
        route_all("up", &["plain"], &["up.test"], "up.example.com"),
        support::config::service_entry("up", "up.example.com", 443, &[up.port()]),
        tls_destination_rule(
            "up",
            "up.example.com",
            &format!("{{mode: SIMPLE, caCertificates: {ca}, caCrl: {}, sni: up.example.com}}", quoted(&crl)),
        ),
    ]);
    // One worker: once it refuses bob, it serves the whole new snapshot.
    let gw = gateway!(Driver::Uring)
        .file("gw.yaml", &config)
        .workers(1)
        .arg("--secrets-dir")
        .arg(secrets_dir.path().to_str().unwrap())
        .start();
    let sni = "crl.example.com";
    let (as_alice, as_bob) =
        (TlsClient::builder(&pki.ca).identity(&alice).build(), TlsClient::builder(&pki.ca).identity(&bob).build());
    for (port, what) in [(files, "caCrl file"), (generic, "a generic Secret's crl"), (dir, "the secrets dir's ca.crl")]
    {
        assert_no_response(&gw, as_alice.get(addr(port), sni, sni, "/"), &format!("a revoked client, {what}"));
        let r = ok(&gw, as_bob.get(addr(port), sni, sni, "/"), &format!("a client in good standing, {what}"));
        assert_eq!((r.status, r.header("x-backend")), (200, Some("app")), "{what}");
    }
    let r = client::get(addr(plain), "up.test", "/");
    assert_eq!(r.status, 503, "a revoked upstream was used: {:?}; logs:\n{}", r.body_text(), gw.logs());
    assert_eq!(up.count(), 0, "no request reaches an upstream whose certificate is revoked");

    // A new list, written as Kubernetes does, revokes bob instead, and the upstream no more.
    replace_file(&crl, &pki.ca.crl(&[&bob]));
    wait_until(Duration::from_secs(10), || as_bob.get(addr(files), sni, sni, "/").is_err())
        .unwrap_or_else(|| panic!("bob is still served 10 s after the CRL revoked him; logs:\n{}", gw.logs()));
    assert_eq!(ok(&gw, as_alice.get(addr(files), sni, sni, "/"), "alice under the new list").status, 200);
    let r = client::get(addr(plain), "up.test", "/");
    assert_eq!((r.status, r.body_text().as_str()), (200, "up"), "logs:\n{}", gw.logs());
}

fn run(cmd: &mut Command) -> (Output, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("the tool runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out, text)
}

#[test]
fn openssl_and_curl_agree() {
    let pki = Pki::new();
    let ca = pki.ca_file();
    let (_, a_crt, a_key) = pki.server("a", &["a.example.com"]);
    let (_, b_crt, b_key) = pki.server("b", &["b.example.com"]);
    let (_, t_crt, t_key) = pki.server("t", &["t.example.com"]);
    let (_, m_crt, m_key) = pki.server("m", &["m.example.com"]);
    let identity = pki.client();
    let (id_crt, id_key) = identity.write(pki.dir.path(), "client");
    let app = Backend::start("app");
    let (port, only13, mtls) = (listen_port(), listen_port(), listen_port());
    let only13_tls = format!(
        "{{mode: SIMPLE, serverCertificate: \"{}\", privateKey: \"{}\", minProtocolVersion: TLSV1_3}}",
        t_crt.display(),
        t_key.display()
    );
    let config = docs(&[
        gateway(
            "gw",
            &[
                server(port, "https-a", "HTTPS", &["a.example.com"], &simple_tls(&a_crt, &a_key)),
                server(port, "https-b", "HTTPS", &["b.example.com"], &simple_tls(&b_crt, &b_key)),
                server(only13, "https-13", "HTTPS", &["*"], &only13_tls),
                server(mtls, "https-m", "HTTPS", &["*"], &mutual_tls("MUTUAL", &m_crt, &m_key, &ca)),
            ],
        ),
        route_all("app", &["gw"], &["*"], "app.local"),
        plain_service("app", "app.local", &app),
    ]);
    let gw = gateway!(Driver::Uring).file("gw.yaml", &config).start();
    let ca_path = ca.as_path();
    let ca = ca.to_str().unwrap();
    let curl = |host: &str, port: u16, extra: &[&str]| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "5", "--cacert", ca, "-w", "\n%{http_code}"])
            .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
            .args(extra)
            .arg(format!("https://{host}:{port}/"));
        run(&mut cmd)
    };

    let (out, text) = curl("a.example.com", port, &[]);
    assert!(out.status.success(), "curl: {text}; logs:\n{}", gw.logs());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim_end().rsplit('\n').next(), Some("200"), "{text}");
    assert!(stdout.starts_with("app\n"), "the backend's body: {text}");
    assert_eq!(app.last().header("x-forwarded-proto"), Some("https"));

    let s_client = |port: u16, servername: &str, extra: &[&str]| SClient::run(port, servername, ca_path, extra, None);
    let SClient { text, .. } = s_client(port, "b.example.com", &[]);
    assert!(text.contains("Verify return code: 0 (ok)") && !text.contains("Cipher is (NONE)"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("subject=") && l.contains("b.example.com")), "b's certificate: {text}");

    let c = s_client(only13, "t.example.com", &["-tls1_2"]);
    assert!(!c.ok || c.text.contains("Cipher is (NONE)"), "TLS 1.2 against a 1.3-only server: {}", c.text);
    assert!(!c.new_session(), "no session was established: {}", c.text);
    let c = s_client(only13, "t.example.com", &["-tls1_3"]);
    assert!(c.text.contains("New, TLSv1.3") && c.text.contains("Verify return code: 0 (ok)"), "TLS 1.3: {}", c.text);

    let (out, text) =
        curl("m.example.com", mtls, &["--cert", id_crt.to_str().unwrap(), "--key", id_key.to_str().unwrap()]);
    assert!(out.status.success(), "curl with a client certificate: {text}; logs:\n{}", gw.logs());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end().rsplit('\n').next(), Some("200"), "{text}");
    assert_xfcc_names(&xfcc(&app).expect("XFCC"), &identity);
    let (out, text) = curl("m.example.com", mtls, &[]);
    assert!(!out.status.success(), "curl without a client certificate must fail: {text}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("200"), "{text}");
}

/// A closed HTTPS connection ends with close_notify, so that a client can tell an answer
/// delimited by the close from a cut one: rustls reads a clean end, not `UnexpectedEof`.
#[test]
fn a_closing_https_connection_sends_close_notify() {
    let pki = Pki::new();
    let (_, crt, key) = pki.server("srv", &["close.example.com"]);
    let app = Backend::start("app");
    let port = listen_port();
    let gw = gateway!(Driver::Uring).file("gw.yaml", &https_app(port, &crt, &key, &app)).start();
    let sni = "close.example.com";
    let mut conn = TlsClient::new(&pki.ca).open(addr(port), sni).unwrap();
    conn.send(b"GET / HTTP/1.1\r\nHost: close.example.com\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(ok(&gw, conn.read_response(), "a request that closes").status, 200);
    let mut rest = Vec::new();
    let end = conn.reader.read_to_end(&mut rest);
    assert!(end.is_ok(), "the connection ended without close_notify: {end:?}");
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn a_silent_client_is_closed_after_the_handshake_timeout() {
    let pki = Pki::new();
    let (leaf, crt, key) = pki.server("srv", &["slow.example.com"]);
    let app = Backend::start("app");
    let port = listen_port();
    let config = https_app(port, &crt, &key, &app);
    let gw = gateway!(Driver::Uring).file("gw.yaml", &config).arg("--tls-handshake-timeout").arg("1s").start();
    let client = TlsClient::new(&pki.ca);
    assert_served(&gw, client.served(addr(port), "slow.example.com"), &leaf, "a prompt client");

    let start = Instant::now();
    let mut silent = TcpStream::connect(addr(port)).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let mut buf = [0u8; 64];
    match silent.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the gateway sent {n} bytes to a client that said nothing"),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("a silent client is still open after 6 s; logs:\n{}", gw.logs())
        }
        Err(_) => {}
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(700) && took <= Duration::from_secs(3), "closed after {took:?}");
}

/// The sum of every sample whose name contains `part`, from the Prometheus exposition and from
/// the plain `/stats` (whichever says more), so the exact name and labels do not matter.
fn counter_sum(gw: &Gateway, part: &str) -> f64 {
    let (_, prom) = gw.admin_get("/stats/prometheus");
    let from_prom: f64 = prom
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next().is_some_and(|n| n.contains(part)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let (_, plain) = gw.admin_get("/stats");
    let dotted = part.replace('_', ".");
    let from_plain: f64 = plain
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.contains(part) || n.contains(&dotted))
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum();
    from_prom.max(from_plain)
}

/// A client's second and later connections resume its session, on whichever worker they land,
/// with TLS 1.3 (the ticket comes with the first answer) and TLS 1.2; both are counted.
#[test]
fn sessions_resume_across_connections_and_workers() {
    use rustls::HandshakeKind::{Full, Resumed};
    let pki = Pki::new();
    let (_, crt, key) = pki.server("srv", &["resume.example.com"]);
    let app = Backend::start("app");
    let port = listen_port();
    let gw = gateway!(Driver::Uring).workers(2).file("gw.yaml", &https_app(port, &crt, &key, &app)).start();
    let sni = "resume.example.com";
    for versions in [Versions::Only13, Versions::Only12] {
        let client = TlsClient::builder(&pki.ca).versions(versions).resume().build();
        for i in 0..6 {
            let mut c = client.open(addr(port), sni).expect("handshake");
            let r = ok(&gw, c.get("/", sni), "a request");
            assert_eq!(r.status, 200);
            let (kind, version) = (c.stream().conn.handshake_kind(), c.stream().conn.protocol_version());
            let want = if i == 0 { Full } else { Resumed };
            assert_eq!(kind, Some(want), "connection {i} over {version:?}");
        }
    }
    wait_until(Duration::from_secs(5), || counter_sum(&gw, "ssl_session_reused") >= 10.0)
        .unwrap_or_else(|| panic!("session_reused: {}", counter_sum(&gw, "ssl_session_reused")));
}

/// A request that ends its connection, for `openssl s_client`.
fn close_request(host: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

// TLS sessions are bound to the server, and the settings, they were made under: a session
// (ticket or TLS 1.2 session ID) from a server without client certificates never opens one
// that requires them, and one made with a client certificate never carries that identity to
// a server that did not check it. openssl s_client saves each session and offers it again,
// as any client that resumes does.
both_drivers! {
    fn a_session_resumes_only_on_the_server_that_made_it(driver) {
        let pki = Pki::new();
        let ca = pki.ca_file();
        let sni = "sess.example.com";
        let (_, crt, key) = pki.server("srv", &[sni, "other.example.com"]);
        let identity = pki.client();
        let (id_crt, id_key) = identity.write(pki.dir.path(), "client");
        let (id_crt, id_key) = (id_crt.to_str().unwrap(), id_key.to_str().unwrap());
        let app = Backend::start("app");
        let (simple, optional, mutual, shared) = (listen_port(), listen_port(), listen_port(), listen_port());
        let config = docs(&[
            gateway(
                "gw",
                &[
                    // One host and certificate on three ports, three client-certificate rules...
                    server(simple, "https-simple", "HTTPS", &[sni], &simple_tls(&crt, &key)),
                    server(optional, "https-optional", "HTTPS", &[sni], &mutual_tls("OPTIONAL_MUTUAL", &crt, &key, &ca)),
                    server(mutual, "https-mutual", "HTTPS", &[sni], &mutual_tls("MUTUAL", &crt, &key, &ca)),
                    // ...and two servers on one port, chosen by SNI.
                    server(shared, "https-shared-simple", "HTTPS", &["other.example.com"], &simple_tls(&crt, &key)),
                    server(shared, "https-shared-mutual", "HTTPS", &[sni], &mutual_tls("MUTUAL", &crt, &key, &ca)),
                ],
            ),
            route_all("app", &["gw"], &["*"], "app.local"),
            plain_service("app", "app.local", &app),
        ]);
        let gw = gateway!(driver).file("gw.yaml", &config).start();
        let connect = |port: u16, sni: &str, args: &[&str]| SClient::run(port, sni, &ca, args, Some(&close_request(sni)));
        let session = |name: &str| pki.path(name).to_str().unwrap().to_string();

        for version in ["-tls1_3", "-tls1_2"] {
            // Sessions made without a client certificate: on the SIMPLE server, on the
            // OPTIONAL_MUTUAL one, and on the SIMPLE server sharing a port with a MUTUAL one.
            for (from, from_sni) in [(simple, sni), (optional, sni), (shared, "other.example.com")] {
                let file = session(&format!("{from}{version}.pem"));
                let made = connect(from, from_sni, &[version, "-sess_out", &file]);
                assert!(made.new_session() && made.status() == Some(200), "{version} on {from}: {}", made.text);
                // It resumes where it was made...
                let again = connect(from, from_sni, &[version, "-sess_in", &file]);
                assert!(again.resumed(), "{version}: no resumption on the server that made it: {}", again.text);
                assert_eq!(again.status(), Some(200), "{}", again.text);
                // ...but on a MUTUAL server it is a full handshake, which refuses the client.
                let seen = app.count();
                for to in [mutual, shared] {
                    let crossed = connect(to, sni, &[version, "-sess_in", &file]);
                    assert!(!crossed.resumed(), "{version}: a session of port {from} resumed on {to}: {}", crossed.text);
                    assert_eq!(crossed.status(), None, "{version}: served without a client certificate: {}", crossed.text);
                }
                assert_eq!(app.count(), seen, "{version}: a request crossed from port {from}; logs:\n{}", gw.logs());
            }

            // A session made with a client certificate on the MUTUAL server...
            let file = session(&format!("mutual{version}.pem"));
            let made = connect(mutual, sni, &[version, "-cert", id_crt, "-key", id_key, "-sess_out", &file]);
            assert_eq!(made.status(), Some(200), "{version}: {}", made.text);
            assert_xfcc_names(&xfcc(&app).expect("x-forwarded-client-cert"), &identity);
            let again = connect(mutual, sni, &[version, "-cert", id_crt, "-key", id_key, "-sess_in", &file]);
            assert!(again.resumed() && again.status() == Some(200), "{version}: {}", again.text);
            assert_xfcc_names(&xfcc(&app).expect("x-forwarded-client-cert on resumption"), &identity);
            // ...does not resume elsewhere, and its identity goes nowhere it was not checked.
            for to in [simple, optional] {
                let crossed = connect(to, sni, &[version, "-sess_in", &file]);
                assert!(!crossed.resumed(), "{version}: the MUTUAL session resumed on {to}: {}", crossed.text);
                assert_eq!(crossed.status(), Some(200), "{}", crossed.text);
                assert_eq!(xfcc(&app), None, "{version}: a client identity reached the backend through port {to}");
            }
        }
    }

    // A reload that keeps a server's TLS settings keeps its sessions; one that changes them
    // (here its client CA) ends them. A kept-alive connection goes on after a change of
    // secrets (certificate, CA), as Envoy's do after an SDS update, but one made under other
    // client-certificate rules (OPTIONAL_MUTUAL, now MUTUAL) is answered once more under the
    // rules it was made with, then closed, as Envoy drains a changed filter chain.
    fn a_reload_that_changes_tls_settings_ends_older_sessions(driver) {
        let pki = Pki::new();
        let ca = pki.ca_file();
        let other_ca = Ca::new("another ca");
        let other_ca_file = other_ca.write(pki.dir.path(), "other-ca.pem");
        let sni = "reload.example.com";
        let (_, crt, key) = pki.server("srv", &[sni]);
        let identity = pki.client();
        let (id_crt, id_key) = identity.write(pki.dir.path(), "client");
        let (id_crt, id_key) = (id_crt.to_str().unwrap(), id_key.to_str().unwrap());
        let app = Backend::start("app");
        let port = listen_port();
        let config = |mode: &str, client_ca: &Path, hosts: &[&str]| {
            docs(&[
                gateway("gw", &[server(port, "https", "HTTPS", &[sni], &mutual_tls(mode, &crt, &key, client_ca))]),
                route_all("app", &["gw"], hosts, "app.local"),
                plain_service("app", "app.local", &app),
            ])
        };
        let gw = gateway!(driver).file("gw.yaml", &config("MUTUAL", &ca, &["*"])).start();
        let reload = |yaml: String, generation: u64| {
            gw.write_config("gw.yaml", &yaml);
            gw.signal("HUP");
            gw.wait_generation(generation);
        };
        let request = close_request(sni);
        let connect = |args: &[&str]| SClient::run(port, sni, &ca, args, Some(&request));
        let with_cert = |version: &str, sess: &str, file: &str| {
            connect(&[version, "-cert", id_crt, "-key", id_key, sess, file])
        };
        let files = ["-tls1_3", "-tls1_2"].map(|v| (v, pki.path(&format!("s{v}.pem")).to_str().unwrap().to_string()));
        for (version, file) in &files {
            let made = with_cert(version, "-sess_out", file);
            assert!(made.new_session() && made.status() == Some(200), "{version}: {}", made.text);
        }
        let mut kept = TlsClient::builder(&pki.ca).identity(&identity).build().open(addr(port), sni).expect("handshake");
        assert_eq!(ok(&gw, kept.get("/", sni), "a kept-alive connection").status, 200);

        // A reload that changes only the routes: sessions and connections carry on.
        reload(config("MUTUAL", &ca, &[sni]), 2);
        for (version, file) in &files {
            let again = with_cert(version, "-sess_in", file);
            assert!(again.resumed() && again.status() == Some(200), "{version} after a route reload: {}", again.text);
        }
        let r = ok(&gw, kept.get("/", sni), "the kept-alive connection after a route reload");
        assert_eq!((r.status, r.header("connection")), (200, None));

        // The client CA changes: no session made before resumes, and a full handshake refuses
        // the client, whose certificate the new CA did not sign.
        reload(config("MUTUAL", &other_ca_file, &[sni]), 3);
        let seen = app.count();
        for (version, file) in &files {
            let stale = with_cert(version, "-sess_in", file);
            assert!(!stale.resumed(), "{version}: a session resumed after the client CA changed: {}", stale.text);
            assert_eq!(stale.status(), None, "{version}: {}", stale.text);
        }
        assert_eq!(app.count(), seen, "no request of a refused client reaches the backend");
        let r = ok(&gw, kept.get("/", sni), "the kept-alive connection after the CA changed");
        assert_eq!((r.status, r.header("connection")), (200, None), "a change of secrets keeps connections");

        // OPTIONAL_MUTUAL admits a client without a certificate; MUTUAL then ends its connection.
        reload(config("OPTIONAL_MUTUAL", &other_ca_file, &[sni]), 4);
        let mut anonymous = TlsClient::new(&pki.ca).open(addr(port), sni).expect("handshake");
        assert_eq!(ok(&gw, anonymous.get("/", sni), "no certificate under OPTIONAL_MUTUAL").status, 200);
        reload(config("MUTUAL", &other_ca_file, &[sni]), 5);
        let r = ok(&gw, anonymous.get("/", sni), "the anonymous connection after MUTUAL");
        assert_eq!((r.status, r.header("connection")), (200, Some("close")), "served once more, then closed");
        assert!(anonymous.get("/", sni).is_err(), "the connection made under OPTIONAL_MUTUAL was closed");
        assert_no_response(&gw, TlsClient::new(&pki.ca).get(addr(port), sni, sni, "/"), "a new anonymous client");
    }

    // A TLS 1.2 session ID resumes on whichever worker the next connection lands, as on Envoy:
    // the server's session cache is its workers' own in common.
    fn tls12_session_ids_resume_on_every_worker(driver) {
        let pki = Pki::new();
        let ca = pki.ca_file();
        let sni = "ids.example.com";
        let (_, crt, key) = pki.server("srv", &[sni]);
        let app = Backend::start("app");
        let port = listen_port();
        let gw = gateway!(driver).workers(2).file("gw.yaml", &https_app(port, &crt, &key, &app)).start();
        let request = close_request(sni);
        let file = pki.path("ids.pem");
        let file = file.to_str().unwrap();
        let ids = |sess: &str| SClient::run(port, sni, &ca, &["-tls1_2", "-no_ticket", sess, file], Some(&request));
        let made = ids("-sess_out");
        assert!(made.new_session() && made.status() == Some(200), "{}", made.text);
        // Twelve connections on two workers: on per-worker caches, all landing on the one
        // that issued the ID has odds of 1 in 4096.
        let resumed = (0..12).filter(|_| ids("-sess_in").resumed()).count();
        assert_eq!(resumed, 12, "TLS 1.2 session IDs resumed {resumed} times in 12; logs:\n{}", gw.logs());
    }
}

#[test]
fn handshakes_and_handshake_errors_are_counted() {
    let pki = Pki::new();
    let (_, crt, key) = pki.server("srv", &["count.example.com"]);
    let app = Backend::start("app");
    let port = listen_port();
    let tls = format!(
        "{{mode: SIMPLE, serverCertificate: \"{}\", privateKey: \"{}\", minProtocolVersion: TLSV1_3}}",
        crt.display(),
        key.display()
    );
    let config = docs(&[
        gateway("gw", &[server(port, "https", "HTTPS", &["*"], &tls)]),
        route_all("app", &["gw"], &["*"], "app.local"),
        plain_service("app", "app.local", &app),
    ]);
    let gw = gateway!(Driver::Uring).file("gw.yaml", &config).start();
    let sni = "count.example.com";
    let good = TlsClient::new(&pki.ca);
    for _ in 0..3 {
        assert_eq!(ok(&gw, good.get(addr(port), sni, sni, "/"), "a good handshake").status, 200);
    }
    let old = TlsClient::builder(&pki.ca).versions(Versions::Only12).build();
    for _ in 0..2 {
        assert_refused(&gw, old.connect(addr(port), sni), "a TLS 1.2 client");
    }
    wait_until(Duration::from_secs(5), || {
        counter_sum(&gw, "ssl_handshake") >= 3.0 && counter_sum(&gw, "ssl_connection_error") >= 2.0
    })
    .unwrap_or_else(|| {
        let (_, prom) = gw.admin_get("/stats/prometheus");
        let ssl: Vec<&str> = prom.lines().filter(|l| l.contains("ssl")).collect();
        panic!(
            "handshakes {} (want >= 3), errors {} (want >= 2); ssl samples: {ssl:#?}",
            counter_sum(&gw, "ssl_handshake"),
            counter_sum(&gw, "ssl_connection_error")
        )
    });
}

/// A `TLS` server that terminates hands the plaintext to its `tcp` routes, and a TCP route
/// whose DestinationRule has TLS originates it: both ways copy through user space, both keep
/// the stream's bytes and its half-close.
#[test]
fn tls_terminated_and_originated_on_tcp_routes() {
    let pki = Pki::new();
    let (_, crt, key) = pki.server("tcp", &["tcp.example.com"]);
    let echo = TcpBackend::echo();
    let up = TlsBackend::start("up", &pki.ca.server(&["up.example.com"]), None);
    let (terminated, originated) = (listen_port(), listen_port());
    let quoted = |p: &Path| format!("\"{}\"", p.display());
    let config = docs(&[
        gateway("tls-in", &[server(terminated, "tls", "TLS", &["tcp.example.com"], &simple_tls(&crt, &key))]),
        tcp_gateway("tcp-in", originated, "TCP"),
        tcp_virtual_service("echo", "tls-in", &tcp_route("", 7000, &[("echo.example.com", 100)])),
        tcp_virtual_service("up", "tcp-in", &tcp_route("", 443, &[("up.example.com", 100)])),
        tcp_service_entry("echo", "echo.example.com", 7000, &[echo.port()]),
        tcp_service_entry("up", "up.example.com", 443, &[up.port()]),
        tls_destination_rule(
            "up",
            "up.example.com",
            &format!("{{mode: SIMPLE, caCertificates: {}}}", quoted(&pki.ca_file())),
        ),
    ]);
    let gw = gateway!(Driver::Uring).file("gw.yaml", &config).start();

    // Terminated: the echo backend sees plaintext and answers through the gateway's TLS.
    let client = TlsClient::new(&pki.ca);
    let mut conn = client.open(addr(terminated), "tcp.example.com").unwrap();
    conn.send(b"ping through tls").unwrap();
    let mut echoed = [0u8; 16];
    conn.reader.read_exact(&mut echoed).unwrap_or_else(|e| panic!("no echo: {e}; logs:\n{}", gw.logs()));
    assert_eq!(&echoed, b"ping through tls");
    assert_eq!(echo.received(), 16, "the backend got the plaintext, once");

    // Originated: plaintext in, TLS to the backend (SNI: the service host), its answer back.
    let mut plain = TcpStream::connect(addr(originated)).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nHost: up.example.com\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    plain.read_to_string(&mut answer).unwrap_or_else(|e| panic!("no answer: {e}; logs:\n{}", gw.logs()));
    assert!(answer.starts_with("HTTP/1.1 200"), "answer {answer:?}; logs:\n{}", gw.logs());
    assert!(answer.ends_with("up"), "answer {answer:?}");
    assert_eq!(up.snis.lock().unwrap().last().cloned().flatten().as_deref(), Some("up.example.com"));
}

// Both directions of a terminated TLS stream busy at once (the client sends while the echo of
// what it sent before comes back through the gateway's TLS), every byte checked end to end:
// the two halves of one rustls session must neither lose nor reorder a record.
both_drivers! {
    fn a_terminated_tls_stream_carries_both_directions_at_once(driver) {
        const CHUNK: usize = 64 * 1024;
        const CHUNKS: usize = 64;
        let pki = Pki::new();
        let (_, crt, key) = pki.server("tcp", &["tcp.example.com"]);
        let echo = TcpBackend::echo();
        let terminated = listen_port();
        let config = docs(&[
            gateway("tls-in", &[server(terminated, "tls", "TLS", &["tcp.example.com"], &simple_tls(&crt, &key))]),
            tcp_virtual_service("echo", "tls-in", &tcp_route("", 7000, &[("echo.example.com", 100)])),
            tcp_service_entry("echo", "echo.example.com", 7000, &[echo.port()]),
        ]);
        let gw = gateway!(driver).file("gw.yaml", &config).start();

        let chunk = |i: usize| -> Vec<u8> { (0..CHUNK).map(|j| (i * 31 + j * 7 + j / 251) as u8).collect() };
        let mut conn = TlsClient::new(&pki.ca).connect(addr(terminated), "tcp.example.com").unwrap();
        conn.write_all(&chunk(0)).unwrap();
        let mut back = vec![0u8; CHUNK];
        for i in 0..CHUNKS {
            // One chunk always ahead: the gateway reads it while it writes the previous one back.
            if i + 1 < CHUNKS {
                conn.write_all(&chunk(i + 1)).unwrap();
            }
            conn.read_exact(&mut back).unwrap_or_else(|e| panic!("chunk {i} not echoed: {e}; logs:\n{}", gw.logs()));
            assert!(back == chunk(i), "chunk {i} came back changed");
        }
        assert_eq!(echo.received(), (CHUNK * CHUNKS) as u64, "the backend got every byte, once");
    }
}
