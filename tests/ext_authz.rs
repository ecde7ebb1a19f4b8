//! External authorization end to end: CUSTOM AuthorizationPolicies naming a MeshConfig
//! `envoyExtAuthzHttp` provider, as Envoy's ext_authz filter (configured by istiod) asks an
//! authorization server the test starts: the check request, 200 allowing with the listed lines
//! sent upstream, a denial relayed with the server's status, lines and body (also over
//! HTTP/2), a check that times out or finds no server failing closed with `statusOnError` or
//! open with `failOpen`, a policy naming no provider denying as istiod builds it, and requests
//! the policy's rules leave alone never checked, checks sharing the worker's pooled connection
//! (a closed one replaced once), the request body in the check (`includeRequestBodyInCheck`);
//! the same over gRPC (`envoyExtAuthzGrpc`, envoy.service.auth.v3 `Check`) to a grpcio server
//! (tests/grpc_py/ext_authz.py; needs `python3` with `grpcio`, as tests/grpc_python.rs); on a
//! TCP server, a missing provider closing the connections its rules match, an HTTP provider
//! doing nothing, and a gRPC provider checking each matching connection once (closed on a
//! denial, or on a failed check unless `failOpen`).

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::backend::{read_head, Backend, Received};
use support::client;
use support::config::{docs, service_entry};
use support::tcp::{listen_port, tcp_gateway, tcp_route, tcp_service_entry, tcp_virtual_service, TcpBackend};
use support::{free_port, metric, wait_until, Driver, Gateway};

/// An HTTP authorization server on 127.0.0.1: a check whose path holds `deny` is denied 401
/// with lines and a body, one whose path holds `slow` is allowed after 3 s, any other is
/// allowed with `x-user: alice` (and `x-unlisted`, which no provider lists). It keeps every
/// check request and counts the connections it accepts; each stays open for more checks, or
/// with [`AuthzServer::closing`] is closed unanswered at its second check, as a server whose
/// keep-alive timeout fired as the check came.
struct AuthzServer {
    port: u16,
    seen: Arc<Mutex<Vec<Received>>>,
    server: TcpBackend,
}

impl AuthzServer {
    fn start() -> AuthzServer {
        Self::serving(usize::MAX)
    }

    fn closing() -> AuthzServer {
        Self::serving(1)
    }

    /// Answers `per_connection` checks on each connection, then closes it at the next.
    fn serving(per_connection: usize) -> AuthzServer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        let server = TcpBackend::start(move |stream, _| {
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut w = stream;
            for _ in 0..per_connection {
                let Some(mut check) = read_head(&mut r) else { return };
                let length = check.header("content-length").map_or(0, |n| n.parse().unwrap());
                check.body = vec![0; length];
                if r.read_exact(&mut check.body).is_err() {
                    return;
                }
                let target = check.target.clone();
                kept.lock().unwrap().push(check);
                let answer = if target.contains("deny") {
                    "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"app\"\r\nx-reason: no token\r\n\
                     x-hidden: internal\r\ncontent-type: text/html\r\ncontent-length: 7\r\n\r\ngo away"
                } else {
                    if target.contains("slow") {
                        std::thread::sleep(Duration::from_secs(3));
                    }
                    "HTTP/1.1 200 OK\r\nx-user: alice\r\nx-unlisted: 1\r\ncontent-length: 0\r\n\r\n"
                };
                if w.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
            // The next check finds the connection closing.
            let _ = read_head(&mut r);
        });
        AuthzServer { port: server.port(), seen, server }
    }

    fn checks(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.server.accepted()
    }
}

/// A TCP relay to `port` on 127.0.0.1 that counts the connections it accepts.
fn counting_relay(port: u16) -> TcpBackend {
    TcpBackend::start(move |client, _| {
        let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return };
        let (mut up_r, mut down_w) = (client.try_clone().unwrap(), client);
        let (mut down_r, mut up_w) = (server.try_clone().unwrap(), server);
        let up = std::thread::spawn(move || {
            let _ = std::io::copy(&mut up_r, &mut up_w);
            let _ = up_w.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut down_r, &mut down_w);
        let _ = down_w.shutdown(std::net::Shutdown::Write);
        let _ = up.join();
    })
}

/// tests/grpc_py/ext_authz.py on a port of its own: every CheckRequest it got, as bytes. It
/// stops when its stdin closes, or is killed.
struct GrpcAuthz {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    checks: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl GrpcAuthz {
    fn start() -> GrpcAuthz {
        let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_py/ext_authz.py");
        let mut child =
            Command::new("python3").arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("ext_authz.py printed nothing (python3 with grpcio is needed)").unwrap();
        let port = first.strip_prefix("port ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{first}"));
        let checks = Arc::new(Mutex::new(Vec::new()));
        let kept = checks.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let bytes = (0..line.len() / 2).map(|i| u8::from_str_radix(&line[2 * i..2 * i + 2], 16).unwrap());
                kept.lock().unwrap().push(bytes.collect());
            }
        });
        GrpcAuthz { child, _stdin: stdin, port, checks }
    }

    fn checks(&self) -> Vec<Vec<u8>> {
        self.checks.lock().unwrap().clone()
    }

    /// The checks once at least `n` came: the server prints each before it answers, but its
    /// output is read on a thread of its own, which may lag the answer.
    fn settled(&self, n: usize) -> Vec<Vec<u8>> {
        wait_until(Duration::from_secs(5), || self.checks.lock().unwrap().len() >= n);
        self.checks()
    }
}

impl Drop for GrpcAuthz {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A CUSTOM policy in the root namespace sending requests under `paths` to `provider`.
fn custom(name: &str, provider: &str, paths: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: \
         istio-system\nspec:\n  action: CUSTOM\n  provider:\n    name: {provider}\n  rules:\n  - to:\n    - \
         operation:\n        paths: [\"{paths}\"]\n"
    )
}

/// The gateway for `app.test` (every request to `app`) with MeshConfig `mesh`, `policies` and
/// `services`, on `workers` workers; its address. The mesh file lives in `dir`.
fn start(
    driver: Driver,
    workers: usize,
    dir: &tempfile::TempDir,
    mesh: &str,
    app: &Backend,
    policies: &[String],
    services: Vec<String>,
) -> (Gateway, SocketAddr) {
    let path = dir.path().join("mesh.yaml");
    std::fs::write(&path, mesh).unwrap();
    let http = "  - route:\n    - destination:\n        host: app.local\n";
    let mut all = vec![service_entry("app", "app.local", 80, &[app.port()])];
    all.extend(services);
    gateway!(driver)
        .workers(workers)
        .arg("--access-log")
        .arg("--mesh")
        .arg(path.to_str().unwrap())
        .file("policies.yaml", &docs(policies))
        .start_app(http, all)
}

/// curl's answer to an HTTP/2 request for `path` (with `extra` arguments): the body, then
/// `|VERSION STATUS`.
fn h2(addr: SocketAddr, path: &str, extra: &[&str]) -> String {
    let url = format!("http://{addr}{path}");
    let args = [
        "-sS",
        "-m",
        "20",
        "--http2-prior-knowledge",
        "-H",
        "host: app.test",
        "-w",
        "|%{http_version} %{http_code}",
        &url,
    ];
    let out = std::process::Command::new("curl").args(args).args(extra).output().expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CUSTOM policy in the root namespace sending connections from `ip_block` to `provider`:
/// `from` is what a TCP server's rules can see.
fn custom_from(name: &str, provider: &str, ip_block: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: \
         istio-system\nspec:\n  action: CUSTOM\n  provider:\n    name: {provider}\n  rules:\n  - from:\n    - \
         source:\n        ipBlocks: [\"{ip_block}\"]\n"
    )
}

/// A gateway whose TCP server (on a fresh port) forwards to `echo`, with MeshConfig `mesh`,
/// `policies` and `services`; the port. The mesh file lives in `dir`.
fn start_tcp(
    driver: Driver,
    dir: &tempfile::TempDir,
    mesh: &str,
    echo: &TcpBackend,
    policies: &[String],
    services: Vec<String>,
) -> (Gateway, u16) {
    let path = dir.path().join("mesh.yaml");
    std::fs::write(&path, mesh).unwrap();
    let port = listen_port();
    let mut parts = vec![
        tcp_gateway("db", port, "TCP"),
        tcp_virtual_service("db", "db", &tcp_route("", 9000, &[("db.local", 100)])),
        tcp_service_entry("db", "db.local", 9000, &[echo.port()]),
    ];
    parts.extend(services);
    parts.extend_from_slice(policies);
    let gw = gateway!(driver).arg("--mesh").arg(path.to_str().unwrap()).file("gw.yaml", &docs(&parts)).start();
    (gw, port)
}

/// Whether bytes sent to the gateway's TCP `port` at 127.0.0.1 come back from the echo behind it.
fn echoes(port: u16) -> bool {
    echoes_at([127, 0, 0, 1], port)
}

/// Whether bytes sent to `ip` (a loopback address the gateway listens on) and `port` come back.
fn echoes_at(ip: [u8; 4], port: u16) -> bool {
    let mut s = TcpStream::connect(SocketAddr::from((ip, port))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"ping");
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

both_drivers! {
    fn an_http_authorization_server_allows_with_lines_upstream_and_denies_with_its_own_answer(driver) {
        let app = Backend::start("app");
        let authz = AuthzServer::start();
        let mesh = "extensionProviders:\n- name: checker\n  envoyExtAuthzHttp:\n    service: authz.local\n    \
                    port: 9000\n    pathPrefix: /check\n    includeRequestHeadersInCheck: [x-token]\n    \
                    includeAdditionalHeadersInCheck: {x-gateway: strait}\n    headersToUpstreamOnAllow: [x-user]\n    \
                    headersToDownstreamOnAllow: [x-use*]\n    \
                    headersToDownstreamOnDeny: [www-authenticate, x-reason]\n";
        let dir = tempfile::tempdir().unwrap();
        let services = vec![service_entry("authz", "authz.local", 9000, &[authz.port])];
        let (gw, addr) = start(driver, 2, &dir, mesh, &app, &[custom("ext", "checker", "/api/*")], services);

        let raw = "GET /api/hello?q=1 HTTP/1.1\r\nHost: app.test\r\nAuthorization: Bearer abc\r\nx-token: t1\r\n\
                   x-secret: s\r\nx-user: mallory\r\nConnection: close\r\n\r\n";
        let allowed = client::request(addr, raw);
        assert_eq!(allowed.status, 200, "{}", gw.logs());
        let upstream = app.last();
        assert_eq!(upstream.header_all("x-user"), ["alice"], "the server's x-user replaces the client's");
        assert_eq!(upstream.header("x-unlisted"), None, "only headersToUpstreamOnAllow go upstream");
        assert_eq!(allowed.header("x-user"), Some("alice"), "headersToDownstreamOnAllow reach the client");
        assert_eq!(allowed.header("x-unlisted"), None, "only headersToDownstreamOnAllow reach the client");
        let checks = authz.checks();
        assert_eq!(checks.len(), 1);
        let check = &checks[0];
        assert_eq!((check.method.as_str(), check.target.as_str()), ("GET", "/check/api/hello?q=1"));
        assert_eq!(check.header("host"), Some("app.test"));
        assert_eq!(check.header("authorization"), Some("Bearer abc"), "always sent");
        assert_eq!(check.header("x-token"), Some("t1"), "includeRequestHeadersInCheck");
        assert_eq!(check.header("x-gateway"), Some("strait"), "includeAdditionalHeadersInCheck");
        assert_eq!(check.header("x-secret"), None, "unlisted lines stay with the request");
        assert_eq!(check.header("content-length"), Some("0"));

        let denied = client::get(addr, "app.test", "/api/deny");
        assert_eq!((denied.status, denied.body_text().as_str()), (401, "go away"));
        assert_eq!(denied.header("www-authenticate"), Some("Bearer realm=\"app\""));
        assert_eq!(denied.header("x-reason"), Some("no token"));
        assert_eq!(denied.header("x-hidden"), None, "only headersToDownstreamOnDeny reach the client");
        assert_eq!(app.count(), 1, "a denied request reaches no backend");
        assert_eq!(h2(addr, "/api/deny", &[]), "go away|2 401", "HTTP/2 requests meet the same check");

        assert_eq!(client::get(addr, "app.test", "/other").status, 200);
        assert_eq!(authz.checks().len(), 3, "a request the CUSTOM rules do not match is not checked");
        let lines = || gw.stdout().lines().map(str::to_string).collect::<Vec<_>>();
        assert!(wait_until(Duration::from_secs(5), || lines().len() == 4).is_some(), "{:?}", lines());
        let line = lines().into_iter().find(|l| l.contains(" /api/deny HTTP/1.1\"")).unwrap();
        assert!(line.contains("\" 401 UAEX ext_authz_denied "), "{line}");
    }

    fn a_failed_check_answers_status_on_error_or_lets_the_request_through_with_fail_open(driver) {
        let app = Backend::start("app");
        let authz = AuthzServer::start();
        let provider = |name: &str, service: &str, extra: &str| {
            format!("- name: {name}\n  envoyExtAuthzHttp:\n    service: {service}\n    port: 9000\n    \
                     pathPrefix: /slow\n    timeout: 0.5s\n{extra}")
        };
        let mesh = format!(
            "extensionProviders:\n{}{}{}",
            provider("closed", "authz.local", "    statusOnError: \"503\"\n"),
            provider("open", "authz.local", "    failOpen: true\n"),
            provider("down", "down.local", ""),
        );
        let services = vec![
            service_entry("authz", "authz.local", 9000, &[authz.port]),
            service_entry("down", "down.local", 9000, &[free_port()]),
        ];
        let policies = [
            custom("closed", "closed", "/closed/*"),
            custom("open", "open", "/open/*"),
            custom("down", "down", "/down/*"),
            custom("ghost", "no-such-provider", "/ghost/*"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let (gw, addr) = start(driver, 2, &dir, &mesh, &app, &policies, services);
        let timed_out = client::get(addr, "app.test", "/closed/x");
        assert_eq!((timed_out.status, timed_out.body_text().as_str()), (503, ""), "{}", gw.logs());
        assert_eq!(app.count(), 0);
        assert_eq!(client::get(addr, "app.test", "/open/x").status, 200, "failOpen lets it through");
        assert_eq!(app.count(), 1);
        assert_eq!(client::get(addr, "app.test", "/down/x").status, 403, "Envoy's default statusOnError");
        assert_eq!(app.count(), 1);
        let ghost = client::get(addr, "app.test", "/ghost/x");
        assert_eq!((ghost.status, ghost.body_text().as_str()), (403, "RBAC: access denied"), "istiod denies for a missing provider");
        assert_eq!(app.count(), 1);
        let lines = || gw.stdout().lines().map(str::to_string).collect::<Vec<_>>();
        assert!(wait_until(Duration::from_secs(5), || lines().len() == 4).is_some(), "{:?}", lines());
        let line = lines().into_iter().find(|l| l.contains(" /closed/x HTTP/1.1\"")).unwrap();
        assert!(line.contains("\" 503 UAEX ext_authz_error "), "{line}");
    }

    fn a_grpc_authorization_server_allows_with_lines_upstream_denies_and_fails_closed_or_open(driver) {
        let app = Backend::start("app");
        let authz = GrpcAuthz::start();
        let provider = |name: &str, extra: &str| {
            format!("- name: {name}\n  envoyExtAuthzGrpc:\n    service: opa.local\n    port: 9191\n    timeout: 0.5s\n{extra}")
        };
        let mesh = format!(
            "extensionProviders:\n{}{}{}",
            provider("opa", ""),
            provider("closed", "    statusOnError: \"503\"\n"),
            provider("open", "    failOpen: true\n"),
        );
        let services = vec![
            service_entry("opa", "opa.local", 9191, &[authz.port]).replace("protocol: HTTP", "protocol: GRPC"),
        ];
        let policies = [custom("opa", "opa", "/api/*"), custom("closed", "closed", "/slow/*"), custom("open", "open", "/open-slow/*")];
        let dir = tempfile::tempdir().unwrap();
        let (gw, addr) = start(driver, 2, &dir, &mesh, &app, &policies, services);

        let raw = "GET /api/hello?q=1 HTTP/1.1\r\nHost: app.test\r\nx-token: t1\r\nx-user: mallory\r\nConnection: close\r\n\r\n";
        let allowed = client::request(addr, raw);
        assert_eq!(allowed.status, 200, "{}", gw.logs());
        assert_eq!(app.last().header_all("x-user"), ["alice"], "ok_response's lines replace the client's");
        assert_eq!(allowed.header("x-session"), Some("s1"), "response_headers_to_add reach the client");
        let checks = authz.checks();
        assert_eq!(checks.len(), 1);
        for part in ["/api/hello?q=1", "app.test", "GET", "x-token", "t1", "HTTP/1.1", "127.0.0.1"] {
            assert!(holds(&checks[0], part), "the CheckRequest carries {part}");
        }

        let denied = client::get(addr, "app.test", "/api/deny");
        assert_eq!((denied.status, denied.body_text().as_str()), (401, "go away"));
        assert_eq!(denied.header("x-reason"), Some("no token"));
        assert_eq!(h2(addr, "/api/deny", &[]), "go away|2 401", "HTTP/2 requests meet the same check");
        assert_eq!(app.count(), 1);

        assert_eq!(client::get(addr, "app.test", "/slow/x").status, 503, "timed out: statusOnError");
        assert_eq!(client::get(addr, "app.test", "/open-slow/x").status, 200, "timed out: failOpen");
        assert_eq!(app.count(), 2);
        assert_eq!(client::get(addr, "app.test", "/other").status, 200);
        assert_eq!(authz.checks().len(), 5, "a request the CUSTOM rules do not match is not checked");
    }

    fn checks_share_the_workers_pooled_connection_and_a_closed_one_is_replaced_once(driver) {
        let app = Backend::start("app");
        let (authz, closing, grpc) = (AuthzServer::start(), AuthzServer::closing(), GrpcAuthz::start());
        let relay = counting_relay(grpc.port);
        let mesh = "extensionProviders:\n\
                    - name: kept\n  envoyExtAuthzHttp:\n    service: authz.local\n    port: 9000\n\
                    - name: closing\n  envoyExtAuthzHttp:\n    service: closing.local\n    port: 9000\n\
                    - name: opa\n  envoyExtAuthzGrpc:\n    service: opa.local\n    port: 9191\n";
        let services = vec![
            service_entry("authz", "authz.local", 9000, &[authz.port]),
            service_entry("closing", "closing.local", 9000, &[closing.port]),
            service_entry("opa", "opa.local", 9191, &[relay.port()]).replace("protocol: HTTP", "protocol: GRPC"),
        ];
        let policies = [custom("kept", "kept", "/kept/*"), custom("closing", "closing", "/closing/*"), custom("opa", "opa", "/grpc/*")];
        let dir = tempfile::tempdir().unwrap();
        // One worker: every check is this worker's, so one connection serves them all.
        let (gw, addr) = start(driver, 1, &dir, mesh, &app, &policies, services);
        for i in 0..4 {
            for prefix in ["kept", "closing", "grpc"] {
                let path = format!("/{prefix}/{i}");
                assert_eq!(client::get(addr, "app.test", &path).status, 200, "{path}: {}", gw.logs());
            }
            assert_eq!(h2(addr, &format!("/kept/h2-{i}"), &[]), "app|2 200", "HTTP/2 requests' checks too");
        }
        assert_eq!(authz.checks().len(), 8);
        assert_eq!(authz.connections(), 1, "one kept-alive connection carries every HTTP check");
        assert_eq!(grpc.settled(4).len(), 4);
        assert_eq!(relay.accepted(), 1, "one HTTP/2 connection carries every gRPC check");
        assert_eq!(closing.checks().len(), 4, "a check the closed connection dropped went again on a new one");
        assert_eq!(closing.connections(), 4);
    }

    fn include_request_body_in_check_sends_up_to_max_request_bytes_and_413s_a_longer_body_unless_partial(driver) {
        let app = Backend::start("app");
        let (authz, grpc) = (AuthzServer::start(), GrpcAuthz::start());
        let http = |name: &str, body: &str| {
            format!("- name: {name}\n  envoyExtAuthzHttp:\n    service: authz.local\n    port: 9000\n    \
                     includeRequestBodyInCheck: {{{body}}}\n")
        };
        let mesh = format!(
            "extensionProviders:\n{}{}- name: opa\n  envoyExtAuthzGrpc:\n    service: opa.local\n    port: 9191\n    \
             includeRequestBodyInCheck: {{maxRequestBytes: 8, allowPartialMessage: true, packAsBytes: true}}\n",
            http("whole", "maxRequestBytes: 8"),
            http("partial", "maxRequestBytes: 8, allowPartialMessage: true"),
        );
        let services = vec![
            service_entry("authz", "authz.local", 9000, &[authz.port]),
            service_entry("opa", "opa.local", 9191, &[grpc.port]).replace("protocol: HTTP", "protocol: GRPC"),
        ];
        let policies = [custom("whole", "whole", "/whole/*"), custom("partial", "partial", "/partial/*"), custom("opa", "opa", "/grpc/*")];
        let dir = tempfile::tempdir().unwrap();
        let (gw, addr) = start(driver, 2, &dir, &mesh, &app, &policies, services);
        let post = |path: &str, body: &str| {
            let raw = format!("POST {path} HTTP/1.1\r\nHost: app.test\r\ncontent-length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            client::request(addr, &raw)
        };
        let last_check = || authz.checks().pop().unwrap();

        assert_eq!(post("/whole/a", "12345").status, 200, "{}", gw.logs());
        let check = last_check();
        assert_eq!((check.body.as_slice(), check.header("x-envoy-auth-partial-body")), (&b"12345"[..], Some("false")));
        assert_eq!(app.last().body, b"12345");

        let refused = post("/whole/b", "0123456789abcdef");
        assert_eq!((refused.status, refused.body_text().as_str()), (413, "Payload Too Large"));
        assert_eq!((authz.checks().len(), app.count()), (1, 1), "a body past maxRequestBytes is neither checked nor forwarded");

        let chunked = "POST /partial/c HTTP/1.1\r\nHost: app.test\r\ntransfer-encoding: chunked\r\nConnection: close\r\n\r\n\
                       5\r\n01234\r\nb\r\n56789abcdef\r\n0\r\n\r\n";
        assert_eq!(client::request(addr, chunked).status, 200);
        let check = last_check();
        assert_eq!((check.body.as_slice(), check.header("x-envoy-auth-partial-body")), (&b"01234567"[..], Some("true")));
        assert_eq!(app.last().body, b"0123456789abcdef", "the whole body still goes upstream");

        let data = ["--data-binary", "0123456789abcdef"];
        assert_eq!(h2(addr, "/partial/h2", &data), "app|2 200", "HTTP/2 bodies too");
        assert_eq!(last_check().body, b"01234567");
        assert_eq!(app.last().body, b"0123456789abcdef");
        assert_eq!(h2(addr, "/whole/h2", &data), "Payload Too Large|2 413");

        assert_eq!(client::get(addr, "app.test", "/whole/get").status, 200);
        let check = last_check();
        assert_eq!((check.body.len(), check.header("x-envoy-auth-partial-body")), (0, None), "no body, none checked");

        let before = grpc.checks().len();
        assert_eq!(post("/grpc/d", "hello-grpc-body").status, 200);
        let check = grpc.settled(before + 1).pop().unwrap();
        assert!(holds(&check, "hello-gr") && !holds(&check, "hello-grpc"), "raw_body: the first maxRequestBytes");
        assert!(holds(&check, "x-envoy-auth-partial-body"));
        assert_eq!(app.last().body, b"hello-grpc-body");
    }

    fn on_a_tcp_server_a_missing_provider_denies_what_it_matches_and_an_http_provider_does_nothing(driver) {
        let echo = TcpBackend::echo();
        let dir = tempfile::tempdir().unwrap();
        let (gw, port) = start_tcp(driver, &dir, "", &echo, &[custom_from("ghost", "no-such-provider", "127.0.0.1")], vec![]);
        assert!(!echoes(port), "istiod builds a DENY RBAC filter for a provider MeshConfig lacks");
        assert_eq!(echo.accepted(), 0, "a denied connection never reaches the backend");
        assert_eq!(metric(&gw.admin_get("/stats/prometheus").1, "envoy_tcp_rbac_denied"), Some(1.0), "{}", gw.logs());

        let authz = AuthzServer::start();
        let mesh = "extensionProviders:\n- name: checker\n  envoyExtAuthzHttp:\n    service: authz.local\n    port: 9000\n";
        let services = vec![service_entry("authz", "authz.local", 9000, &[authz.port])];
        let policies = [custom_from("http", "checker", "127.0.0.1"), custom_from("ghost", "no-such-provider", "10.0.0.0/8")];
        let (gw, port) = start_tcp(driver, &dir, mesh, &echo, &policies, services);
        assert!(echoes(port), "an HTTP provider has no network filter; the missing provider's rule matches nothing: {}", gw.logs());
        assert_eq!(authz.checks().len(), 0, "istiod ignores a CUSTOM policy with an HTTP provider on a TCP filter chain");
    }

    fn on_a_tcp_server_a_grpc_provider_checks_the_connection_once_and_its_denial_closes_it(driver) {
        let echo = TcpBackend::echo();
        let authz = GrpcAuthz::start();
        let mesh = "extensionProviders:\n- name: opa\n  envoyExtAuthzGrpc:\n    service: opa.local\n    port: 9191\n    timeout: 5s\n";
        let services = vec![service_entry("opa", "opa.local", 9191, &[authz.port]).replace("protocol: HTTP", "protocol: GRPC")];
        let policies = [custom_from("opa", "opa", "127.0.0.1"), custom_from("other", "opa", "10.0.0.0/8")];
        let dir = tempfile::tempdir().unwrap();
        let (gw, port) = start_tcp(driver, &dir, mesh, &echo, &policies, services);
        assert!(echoes(port), "status OK lets the bytes through: {}", gw.logs());
        // The server prints each check as it answers: its line may come just after.
        let checks = |n: usize| {
            let seen = wait_until(Duration::from_secs(5), || authz.checks().len() >= n);
            assert!(seen.is_some(), "{} checks, {n} wanted", authz.checks().len());
            authz.checks()
        };
        let first = checks(1);
        assert_eq!(first.len(), 1, "one check per connection");
        assert!(holds(&first[0], "127.0.0.1"), "the CheckRequest carries the addresses");
        assert!(!holds(&first[0], ":method"), "a connection's check carries no HTTP request");
        // tests/grpc_py/ext_authz.py denies a connection to 127.0.0.2.
        assert!(!echoes_at([127, 0, 0, 2], port), "a denial closes the connection");
        assert_eq!(checks(2).len(), 2);
        assert_eq!(echo.accepted(), 1, "a denied connection never reaches the backend");

        // A check that finds no server closes the connection, or lets it through with failOpen.
        for fail_open in [false, true] {
            let mesh = format!(
                "extensionProviders:\n- name: down\n  envoyExtAuthzGrpc:\n    service: down.local\n    port: 9191\n    \
                 failOpen: {fail_open}\n"
            );
            let down = service_entry("down", "down.local", 9191, &[free_port()]).replace("protocol: HTTP", "protocol: GRPC");
            let (_gw, port) = start_tcp(driver, &dir, &mesh, &echo, &[custom_from("down", "down", "127.0.0.1")], vec![down]);
            assert_eq!(echoes(port), fail_open, "failOpen: {fail_open}");
        }
    }
}
