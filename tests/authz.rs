//! AuthorizationPolicy end to end, as an Istio ingress gateway (Envoy's RBAC filters as istiod
//! builds them) decides: DENY before ALLOW, AUDIT only marks, `spec: {}` allows nothing and
//! `rules: [{}]` everything; sources (ipBlocks, mTLS principals), operations (paths and their
//! templates, methods, hosts with ports), `when` headers; the 403 `RBAC: access denied` answer,
//! its gRPC form, flag, details and counters; a reload that changes a policy; and a TCP server,
//! where the policies run at connection start on what layer 4 sees.

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::backend::Backend;
use support::client;
use support::config::{docs, service_entry};
use support::tcp::{listen_port, tcp_gateway, tcp_route, tcp_service_entry, tcp_virtual_service, TcpBackend};
use support::tls::{mutual_tls, route_all, server, Ca, TlsClient};
use support::{free_port, metric, wait_until, Driver, Gateway};

/// An AuthorizationPolicy `name` in `istio-system` (the root namespace: it applies to this
/// gateway) with `spec` (YAML, indented for `spec:`).
fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: \
         istio-system\nspec:\n{spec}"
    )
}

/// The gateway for `app.test`, every request to `app`, under `policies`; its address.
fn start(driver: Driver, app: &Backend, policies: &[String], args: &[&str]) -> (Gateway, SocketAddr) {
    let http = "  - route:\n    - destination:\n        host: app.local\n";
    let builder = args.iter().fold(gateway!(driver), |g, a| g.arg(a)).file("policies.yaml", &docs(policies));
    builder.start_app(http, vec![service_entry("app", "app.local", 80, &[app.port()])])
}

fn get(addr: SocketAddr, path: &str) -> client::Response {
    client::get(addr, "app.test", path)
}

fn status(addr: SocketAddr, raw: &str) -> u16 {
    client::request(addr, raw).status
}

fn stats(gw: &Gateway, name: &str) -> f64 {
    metric(&gw.admin_get("/stats/prometheus").1, name).unwrap_or(0.0)
}

both_drivers! {
    fn deny_wins_over_allow_audit_only_marks_and_denied_requests_get_envoys_answer(driver) {
        let app = Backend::start("app");
        let policies = [
            policy("allow-api", "  rules:\n  - to:\n    - operation:\n        paths: [\"/api/*\"]\n"),
            policy("deny-admin", "  action: DENY\n  rules:\n  - to:\n    - operation:\n        paths: [/api/admin]\n"),
            policy("audit-all", "  action: AUDIT\n  rules: [{}]\n"),
        ];
        let (gw, addr) = start(driver, &app, &policies, &["--access-log"]);
        let ok = get(addr, "/api/users");
        assert_eq!(ok.status, 200, "{}", gw.logs());
        let denied = get(addr, "/api/admin");
        assert_eq!((denied.status, denied.body_text().as_str()), (403, "RBAC: access denied"));
        assert_eq!(denied.header("content-type"), Some("text/plain"));
        assert_eq!(get(addr, "/other").status, 403, "ALLOW policies apply and none matches");
        assert_eq!(app.count(), 1, "denied requests reach no backend");
        // Each of istiod's RBAC filters (AUDIT, DENY, ALLOW) counts what it lets pass, as
        // Envoy's do: 3 for /api/users, AUDIT's for /api/admin, AUDIT's and DENY's for /other.
        assert_eq!(stats(&gw, "envoy_http_rbac_allowed"), 6.0);
        assert_eq!(stats(&gw, "envoy_http_rbac_denied"), 2.0);
        // HTTP/2 (h2c) requests meet the same stage.
        let h2 = |path: &str| {
            let url = format!("http://{addr}{path}");
            let args = ["-sS", "-m", "20", "--http2-prior-knowledge", "-H", "host: app.test", "-w", "|%{http_version} %{http_code}", &url];
            let out = std::process::Command::new("curl").args(args).output().expect("curl runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert_eq!(h2("/api/admin"), "RBAC: access denied|2 403");
        assert!(h2("/api/users").ends_with("|2 200"));
        let lines = || gw.stdout().lines().map(str::to_string).collect::<Vec<_>>();
        assert!(wait_until(std::time::Duration::from_secs(5), || lines().len() == 5).is_some(), "{:?}", lines());
        let line = lines().into_iter().find(|l| l.contains(" /other HTTP/1.1\"")).unwrap();
        assert!(line.contains("\" 403 RBAC rbac_access_denied_matched_policy[none] "), "{line}");
        // A DENY names its rule as istiod names Envoy's RBAC policies.
        let line = lines().into_iter().find(|l| l.contains(" /api/admin HTTP/1.1\"")).unwrap();
        let details = "\" 403 RBAC rbac_access_denied_matched_policy[ns[istio-system]-policy[deny-admin]-rule[0]] ";
        assert!(line.contains(details), "{line}");
    }

    fn a_request_no_route_serves_meets_the_policies_before_routing(driver) {
        let app = Backend::start("app");
        let to = |addr: SocketAddr, host: &str, path: &str| {
            status(addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"))
        };
        let allow_api = policy("allow-api", "  rules:\n  - to:\n    - operation:\n        paths: [\"/api/*\"]\n");
        let (gw, addr) = start(driver, &app, &[allow_api], &[]);
        assert_eq!(to(addr, "nowhere.test", "/other"), 403, "no ALLOW matched, whatever the routes: {}", gw.logs());
        assert_eq!(to(addr, "nowhere.test", "/api/x"), 404, "allowed, then no virtual host");
        assert_eq!(to(addr, "app.test", "/api/x"), 200);
        let (_gw, addr) = start(driver, &app, &[policy("deny-all", "  action: DENY\n  rules: [{}]\n")], &[]);
        assert_eq!(to(addr, "nowhere.test", "/"), 403, "a DENY covers hosts no VirtualService serves");
        // `hosts` still matches the authority as sent, now that no route narrows it.
        let deny_host = policy("deny-host", "  action: DENY\n  rules:\n  - to:\n    - operation:\n        hosts: [nowhere.test]\n");
        let (_gw, addr) = start(driver, &app, &[deny_host], &[]);
        assert_eq!(to(addr, "NOWHERE.test", "/"), 403);
        assert_eq!(to(addr, "elsewhere.test", "/"), 404);
        assert_eq!(to(addr, "app.test", "/"), 200);
    }

    fn an_audit_policy_marks_the_json_access_log_and_counts_as_envoys_log_filter(driver) {
        let app = Backend::start("app");
        let audit = policy("audit-admin", "  action: AUDIT\n  rules:\n  - to:\n    - operation:\n        paths: [/admin]\n");
        let (gw, addr) = start(driver, &app, &[audit], &["--access-log", "--access-log-encoding", "json"]);
        assert_eq!(get(addr, "/admin").status, 200, "AUDIT decides nothing");
        assert_eq!(get(addr, "/public").status, 200);
        let lines = || gw.stdout().lines().map(str::to_string).collect::<Vec<_>>();
        assert!(wait_until(Duration::from_secs(5), || lines().len() == 2).is_some(), "{:?}", lines());
        let hint = |path: &str| {
            let line = lines().into_iter().find(|l| l.contains(&format!("\"path\":\"{path}\""))).unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            v["access_log_hint"].clone()
        };
        assert_eq!(hint("/admin"), serde_json::json!(true));
        assert_eq!(hint("/public"), serde_json::json!(false));
        // Envoy's LOG-action RBAC filter lets every request pass: `rbac.allowed` counts both.
        assert_eq!((stats(&gw, "envoy_http_rbac_allowed"), stats(&gw, "envoy_http_rbac_denied")), (2.0, 0.0));
        // Without an AUDIT policy there is no such filter, and no key.
        let (gw, addr) = start(driver, &app, &[], &["--access-log", "--access-log-encoding", "json"]);
        assert_eq!(get(addr, "/admin").status, 200);
        assert!(wait_until(Duration::from_secs(5), || !gw.stdout().is_empty()).is_some());
        assert!(!gw.stdout().contains("access_log_hint"), "{}", gw.stdout());
    }

    fn allow_nothing_and_allow_everything(driver) {
        let app = Backend::start("app");
        let (_gw, addr) = start(driver, &app, &[policy("allow-nothing", "  {}\n")], &[]);
        assert_eq!(get(addr, "/").status, 403, "spec: {{}} allows nothing");
        let (_gw, addr) =
            start(driver, &app, &[policy("allow-nothing", "  {}\n"), policy("allow-all", "  rules: [{}]\n")], &[]);
        assert_eq!(get(addr, "/").status, 200, "rules: [{{}}] allows everything");
        let (_gw, addr) = start(driver, &app, &[policy("deny-all", "  action: DENY\n  rules: [{}]\n")], &[]);
        assert_eq!(get(addr, "/").status, 403, "a DENY rule {{}} denies everything");
    }

    fn ip_blocks_from_the_peer_and_remote_ip_blocks(driver) {
        let app = Backend::start("app");
        let allow = |blocks: &str| policy("ips", &format!("  rules:\n  - from:\n    - source:\n        {blocks}\n"));
        let (_gw, addr) = start(driver, &app, &[allow("ipBlocks: [10.0.0.0/8]")], &[]);
        assert_eq!(get(addr, "/").status, 403);
        let (_gw, addr) = start(driver, &app, &[allow("ipBlocks: [127.0.0.0/8]")], &[]);
        assert_eq!(get(addr, "/").status, 200);
        let (_gw, addr) = start(driver, &app, &[allow("notRemoteIpBlocks: [127.0.0.1]")], &[]);
        assert_eq!(get(addr, "/").status, 403);
        let deny = policy("deny-ip", "  action: DENY\n  rules:\n  - from:\n    - source:\n        remoteIpBlocks: [127.0.0.1/32]\n");
        let (_gw, addr) = start(driver, &app, &[deny], &[]);
        assert_eq!(get(addr, "/").status, 403);
    }

    fn paths_templates_methods_and_headers(driver) {
        let app = Backend::start("app");
        let policies = [
            policy(
                "allow",
                "  rules:\n  - to:\n    - operation:\n        methods: [GET]\n        paths: [/exact, \"/static/*\", \"*.png\", \"/users/{*}/profile\", \"/files/{**}\"]\n\
                 \x20 - to:\n    - operation:\n        methods: [POST]\n        paths: [/submit]\n    when:\n    - key: request.headers[x-token]\n      values: [\"secret-*\"]\n",
            ),
        ];
        let (gw, addr) = start(driver, &app, &policies, &[]);
        for (path, want) in [
            ("/exact", 200),
            ("/exact?query=1", 200),
            ("/exact/more", 403),
            ("/static/app.js", 200),
            ("/img/logo.png", 200),
            ("/users/ann/profile", 200),
            ("/users/ann/bob/profile", 403),
            ("/files/a/b/c", 200),
            ("/filesystem", 403),
        ] {
            assert_eq!(get(addr, path).status, want, "GET {path}; logs:\n{}", gw.logs());
        }
        let post = |token: &str| {
            status(addr, &format!("POST /submit HTTP/1.1\r\nHost: app.test\r\n{token}Content-Length: 0\r\nConnection: close\r\n\r\n"))
        };
        assert_eq!(post("x-token: secret-1\r\n"), 200);
        assert_eq!(post("x-token: public\r\n"), 403);
        assert_eq!(post(""), 403);
        assert_eq!(status(addr, "DELETE /exact HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"), 403);
    }

    fn hosts_are_case_insensitive_and_carry_the_port_the_client_sent(driver) {
        let app = Backend::start("app");
        let policies = [policy("hosts", "  rules:\n  - to:\n    - operation:\n        hosts: [app.test]\n")];
        let (_gw, addr) = start(driver, &app, &policies, &[]);
        let with_host = |host: &str| status(addr, &format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
        assert_eq!(with_host("APP.test"), 200);
        assert_eq!(with_host(&format!("app.test:{}", addr.port())), 403, "Envoy matches :authority as sent");
        let policies = [policy("hosts", "  rules:\n  - to:\n    - operation:\n        hosts: [app.test, \"app.test:*\"]\n")];
        let (_gw, addr) = start(driver, &app, &policies, &[]);
        let with_host = |host: &str| status(addr, &format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
        assert_eq!(with_host(&format!("App.Test:{}", addr.port())), 200);
    }

    fn a_grpc_request_is_denied_with_a_grpc_answer(driver) {
        let app = Backend::start("app");
        let (_gw, addr) = start(driver, &app, &[policy("deny", "  action: DENY\n  rules: [{}]\n")], &[]);
        let r = client::request(
            addr,
            "POST /pkg.Svc/Call HTTP/1.1\r\nHost: app.test\r\ncontent-type: application/grpc\r\nte: trailers\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/grpc"));
        assert_eq!(r.header("grpc-status"), Some("7"), "PERMISSION_DENIED");
        assert_eq!(r.header("grpc-message"), Some("RBAC: access denied"));
    }

    fn mtls_principals_and_namespaces_from_the_client_certificate(driver) {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("authz ca");
        let ca_file = ca.write(dir.path(), "ca.pem");
        let (crt, key) = ca.server(&["mtls.test"]).write(dir.path(), "srv");
        let app = Backend::start("app");
        let port = free_port();
        let policies = policy(
            "principals",
            "  rules:\n  - from:\n    - source:\n        principals: [cluster.local/ns/shop/sa/web]\n    - source:\n        namespaces: [\"pay*\"]\n",
        );
        let config = docs(&[
            support::tls::gateway("gw", &[server(port, "https", "HTTPS", &["*"], &mutual_tls("MUTUAL", &crt, &key, &ca_file))]),
            route_all("app", &["gw"], &["*"], "app.local"),
            service_entry("app", "app.local", 80, &[app.port()]),
            policies,
        ]);
        let gw = gateway!(driver).file("gw.yaml", &config).start();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let as_client = |uri: &str| {
            let client = TlsClient::builder(&ca).identity(&ca.client("client", Some(uri))).build();
            client.get(addr, "mtls.test", "mtls.test", "/").unwrap_or_else(|e| panic!("{uri}: {e}\n{}", gw.logs())).status
        };
        assert_eq!(as_client("spiffe://cluster.local/ns/shop/sa/web"), 200);
        assert_eq!(as_client("spiffe://cluster.local/ns/shop/sa/admin"), 403);
        assert_eq!(as_client("spiffe://cluster.local/ns/payments/sa/any"), 200);
        assert_eq!(as_client("spiffe://cluster.local/ns/other/sa/web"), 403);
    }

    fn a_reload_changes_the_policy(driver) {
        let app = Backend::start("app");
        let deny = |path: &str| policy("deny", &format!("  action: DENY\n  rules:\n  - to:\n    - operation:\n        paths: [{path}]\n"));
        let (gw, addr) = start(driver, &app, &[deny("/a")], &[]);
        assert_eq!(get(addr, "/a").status, 403);
        assert_eq!(get(addr, "/b").status, 200);
        gw.write_config("policies.yaml", &deny("/b"));
        gw.signal("HUP");
        gw.wait_generation(2);
        assert_eq!(get(addr, "/a").status, 200);
        assert_eq!(get(addr, "/b").status, 403);
        // A bad policy is refused naming file and field; the last good one keeps serving.
        gw.write_config("policies.yaml", &policy("deny", "  action: DENY\n"));
        gw.signal("HUP");
        let logs = || gw.logs();
        let refused = wait_until(std::time::Duration::from_secs(10), || logs().contains("reload failed"));
        assert!(refused.is_some(), "{}", logs());
        assert!(logs().contains("policies.yaml:") && logs().contains("spec.rules: DENY action without `rules`"), "{}", logs());
        assert_eq!(get(addr, "/b").status, 403);
    }

    fn a_tcp_server_applies_the_layer_4_rules_at_connection_start(driver) {
        let echo = TcpBackend::echo();
        // A fresh port per gateway: each test gateway stops on drop without waiting for the port.
        let start = |policies: &[String]| {
            let port = listen_port();
            let mut parts = vec![
                tcp_gateway("db", port, "TCP"),
                tcp_virtual_service("db", "db", &tcp_route("", 9000, &[("db.local", 100)])),
                tcp_service_entry("db", "db.local", 9000, &[echo.port()]),
            ];
            parts.extend_from_slice(policies);
            (gateway!(driver).file("gw.yaml", &docs(&parts)).start(), port)
        };
        let echoes = |port: u16| {
            let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"ping");
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).is_ok() && &buf == b"ping"
        };
        // An ALLOW rule naming an HTTP-only field is dropped on TCP: this ALLOW allows nothing.
        let (gw, port) = start(&[policy("http-only", "  rules:\n  - to:\n    - operation:\n        paths: [/a]\n")]);
        assert!(!echoes(port), "an ALLOW of paths allows no TCP connection");
        assert_eq!(echo.accepted(), 0, "a denied connection never reaches the backend");
        assert_eq!(stats(&gw, "envoy_tcp_rbac_denied"), 1.0);
        let (gw, port) = start(&[policy("ips", "  rules:\n  - from:\n    - source:\n        ipBlocks: [127.0.0.1]\n")]);
        assert!(echoes(port), "{}", gw.logs());
        assert_eq!(stats(&gw, "envoy_tcp_rbac_allowed"), 1.0);
        // A DENY ignores its HTTP-only values: this one denies every connection from 127/8.
        let deny = "  action: DENY\n  rules:\n  - from:\n    - source:\n        ipBlocks: [127.0.0.0/8]\n    to:\n    - operation:\n        methods: [POST]\n";
        let (_gw, port) = start(&[policy("deny", deny)]);
        assert!(!echoes(port));
        let (_gw, port) = start(&[policy("port", "  action: DENY\n  rules:\n  - to:\n    - operation:\n        ports: [\"1\"]\n")]);
        assert!(echoes(port), "a DENY of another port leaves this one alone");
    }

    fn the_mesh_root_namespace_decides_which_policies_apply_and_is_read_again_on_reload(driver) {
        let app = Backend::start("app");
        let dir = tempfile::tempdir().unwrap();
        let mesh = dir.path().join("mesh.yaml");
        std::fs::write(&mesh, "rootNamespace: mesh-root\n").unwrap();
        let in_mesh_root = policy("allow-nothing", "  {}\n").replace("namespace: istio-system", "namespace: mesh-root");
        let (gw, addr) = start(driver, &app, &[in_mesh_root], &["--mesh", mesh.to_str().unwrap()]);
        assert_eq!(get(addr, "/").status, 403, "a policy of the mesh's root namespace applies");
        std::fs::write(&mesh, "rootNamespace: elsewhere\n").unwrap();
        gw.signal("HUP");
        gw.wait_generation(2);
        assert_eq!(get(addr, "/").status, 200, "mesh-root is no longer the root namespace");
        assert!(gw.logs().contains("never applies to this gateway: namespace mesh-root"), "{}", gw.logs());
        // A bad MeshConfig is refused naming file and field; the last good one keeps serving.
        std::fs::write(&mesh, "rootNamespace: mesh-root\ndnsRefreshRate: soon\n").unwrap();
        gw.signal("HUP");
        let refused = wait_until(Duration::from_secs(10), || gw.logs().contains("reload failed"));
        assert!(refused.is_some(), "{}", gw.logs());
        assert!(gw.logs().contains(&format!("{}:2: MeshConfig: dnsRefreshRate:", mesh.display())), "{}", gw.logs());
        assert_eq!(get(addr, "/").status, 200);
    }

    fn a_tls_terminated_tcp_server_matches_principals_from_the_client_certificate(driver) {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("authz tcp ca");
        let ca_file = ca.write(dir.path(), "ca.pem");
        let (crt, key) = ca.server(&["db.test"]).write(dir.path(), "srv");
        let echo = TcpBackend::echo();
        let port = listen_port();
        let config = docs(&[
            support::tls::gateway("gw", &[server(port, "tls", "TLS", &["db.test"], &mutual_tls("MUTUAL", &crt, &key, &ca_file))]),
            tcp_virtual_service("db", "gw", &tcp_route("", 9000, &[("db.local", 100)])),
            tcp_service_entry("db", "db.local", 9000, &[echo.port()]),
            policy("principals", "  rules:\n  - from:\n    - source:\n        principals: [cluster.local/ns/shop/sa/web]\n"),
        ]);
        let gw = gateway!(driver).file("gw.yaml", &config).start();
        let echoes = |uri: &str| {
            let client = TlsClient::builder(&ca).identity(&ca.client("client", Some(uri))).build();
            let Ok(mut conn) = client.open(SocketAddr::from(([127, 0, 0, 1], port)), "db.test") else {
                return false;
            };
            let mut echoed = [0u8; 4];
            conn.send(b"ping").is_ok() && conn.reader.read_exact(&mut echoed).is_ok() && &echoed == b"ping"
        };
        assert!(echoes("spiffe://cluster.local/ns/shop/sa/web"), "{}", gw.logs());
        assert!(!echoes("spiffe://cluster.local/ns/shop/sa/admin"));
        assert_eq!(stats(&gw, "envoy_tcp_rbac_denied"), 1.0);
    }
}
