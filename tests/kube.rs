//! `--kubernetes` end to end on both drivers: the gateway reads its config from an API server
//! through a kubeconfig the test writes, and follows its changes with no reload signal.
//!
//! The API server is `support::kube::KubeApi`, not a real kube-apiserver: one (with its etcd)
//! cannot run on these machines. It speaks the API's list and watch protocol over HTTP with real
//! object JSON (resourceVersion, ADDED / MODIFIED / DELETED / BOOKMARK events, `410 Gone` on a
//! compacted resourceVersion, metadata-only answers), kept to the protocol, not to Strait's
//! expectations: its module says what it does and does not do.

use strait_test_support::{self as support, both_drivers, gateway};

use std::net::SocketAddr;
use std::time::Duration;

use support::backend::Backend;
use support::client;
use support::config::{head, http_gateway, service_entry, virtual_service};
use support::kube::{endpoint_slice, pod, service, tls_secret, KubeApi, SliceEndpoint};
use support::tls::{gateway as tls_gateway, server, Ca, TlsClient};
use support::{free_port, metric, wait_until, Driver, Gateway};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn route_to(host: &str) -> String {
    format!("  - route:\n    - destination:\n        host: {host}\n")
}

/// A Service `name` on port 80 whose one ready endpoint is `backend` (127.0.0.1).
fn service_to(api: &KubeApi, name: &str, backend: &Backend) {
    api.apply(&service(name, "http", 80, 8080));
    let ready = [SliceEndpoint { address: "127.0.0.1", pod: None, ready: true }];
    api.apply(&endpoint_slice(&format!("{name}-1"), name, "http", backend.port(), &ready));
}

/// The gateway, reading from `api` only (its --config directory is empty).
/// Backends `a` and `b` behind Services of their names, and a Gateway for every host on a free
/// port, in a fresh API server.
fn two_services() -> (Backend, Backend, KubeApi, u16) {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let api = KubeApi::start();
    let port = free_port();
    service_to(&api, "a", &a);
    service_to(&api, "b", &b);
    api.apply(&http_gateway("gw", port, &["*"]));
    (a, b, api, port)
}

fn start(driver: Driver, api: &KubeApi, dir: &tempfile::TempDir) -> Gateway {
    let kubeconfig = api.kubeconfig(dir.path());
    gateway!(driver).arg("--kubernetes").env("KUBECONFIG", kubeconfig.to_str().unwrap()).start()
}

/// Waits until `f` holds, or fails with the gateway's log.
fn eventually(gw: &Gateway, what: &str, f: impl FnMut() -> bool) {
    wait_until(Duration::from_secs(15), f).unwrap_or_else(|| panic!("{what} never happened; logs:\n{}", gw.logs()));
}

fn backend_of(port: u16, host: &str) -> Option<String> {
    let r = client::get(addr(port), host, "/");
    (r.status == 200).then(|| r.header("x-backend").unwrap_or_default().to_string())
}

both_drivers! {
    fn virtual_service_added_changed_deleted_without_a_signal(driver) {
        let (_a, _b, api, port) = two_services();
        let dir = tempfile::tempdir().unwrap();
        let gw = start(driver, &api, &dir);
        // Nothing routes yet: the gateway listens, with no VirtualService.
        assert_eq!(client::get(addr(port), "app.test", "/").status, 404);
        // A short name resolves in the VirtualService's namespace, as istiod expands it.
        api.apply(&virtual_service("app", "gw", &["app.test"], &route_to("a")));
        eventually(&gw, "the added VirtualService", || backend_of(port, "app.test").as_deref() == Some("a"));
        api.apply(&virtual_service("app", "gw", &["app.test"], &route_to("b.default.svc.cluster.local")));
        eventually(&gw, "the changed VirtualService", || backend_of(port, "app.test").as_deref() == Some("b"));
        // A burst of changes is debounced into a reload or two, not one each.
        let reloads = || metric(&gw.admin_get("/stats/prometheus").1, "strait_reloads_total{result=\"ok\"}").unwrap_or(0.0);
        let before = reloads();
        for i in 1..=20 {
            api.apply(&virtual_service("app", "gw", &["app.test"], &route_to(["a", "b"][i % 2])));
        }
        eventually(&gw, "the burst's last change", || backend_of(port, "app.test").as_deref() == Some("a"));
        std::thread::sleep(Duration::from_millis(500));
        assert!(reloads() - before <= 3.0, "{} reloads for a burst of 20 changes", reloads() - before);
        api.delete("networking.istio.io/v1", "VirtualService", "default", "app");
        eventually(&gw, "the deleted VirtualService", || client::get(addr(port), "app.test", "/").status == 404);
    }

    fn an_invalid_object_is_refused_alone(driver) {
        let (_a, _b, api, port) = two_services();
        api.apply(&virtual_service("one", "gw", &["one.test"], &route_to("a")));
        let dir = tempfile::tempdir().unwrap();
        let gw = start(driver, &api, &dir);
        assert_eq!(backend_of(port, "one.test").as_deref(), Some("a"));
        // One fails validation (a route with nowhere to go), one does not read (a field the
        // schema lacks), and one beside them is good: only the good one applies.
        api.apply(&virtual_service("bad", "gw", &["bad.test"], "  - match: [{uri: {prefix: /}}]\n"));
        let unknown = format!("{}  hosts: [odd.test]\n  gatways: [gw]\n  http:\n{}", head("VirtualService", "odd"), route_to("a"));
        api.apply(&unknown);
        api.apply(&virtual_service("three", "gw", &["three.test"], &route_to("b")));
        eventually(&gw, "the good VirtualService", || backend_of(port, "three.test").as_deref() == Some("b"));
        assert_eq!(client::get(addr(port), "bad.test", "/").status, 404);
        assert_eq!(client::get(addr(port), "odd.test", "/").status, 404);
        assert_eq!(backend_of(port, "one.test").as_deref(), Some("a"));
        let logs = gw.logs();
        for expected in [
            "k8s:VirtualService/default/bad",
            "spec.http[0]",
            "http route must have one of route, redirect, directResponse or delegate",
            "k8s:VirtualService/default/odd",
            "gatways",
        ] {
            assert!(logs.contains(expected), "{expected:?} not logged:\n{logs}");
        }
        // Fixed, it applies.
        api.apply(&virtual_service("bad", "gw", &["bad.test"], &route_to("b")));
        eventually(&gw, "the fixed VirtualService", || backend_of(port, "bad.test").as_deref() == Some("b"));
    }

    fn endpoint_slice_changes_move_traffic(driver) {
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        let api = KubeApi::start();
        let port = free_port();
        service_to(&api, "app", &a);
        api.apply(&http_gateway("gw", port, &["*"]));
        api.apply(&virtual_service("app", "gw", &["app.test"], &route_to("app")));
        // A ServiceEntry of the Service's name stands beside it.
        api.apply(&service_entry("app", "app.example", 80, &[b.port()]));
        api.apply(&virtual_service("se", "gw", &["se.test"], &route_to("app.example")));
        let dir = tempfile::tempdir().unwrap();
        let gw = start(driver, &api, &dir);
        assert_eq!(backend_of(port, "app.test").as_deref(), Some("a"));
        assert_eq!(backend_of(port, "se.test").as_deref(), Some("b"));
        // The endpoint moves to another target port.
        let ready = [SliceEndpoint { address: "127.0.0.1", pod: None, ready: true }];
        api.apply(&endpoint_slice("app-1", "app", "http", b.port(), &ready));
        eventually(&gw, "traffic moving to b", || backend_of(port, "app.test").as_deref() == Some("b"));
        // Not ready, it takes no traffic.
        let unready = [SliceEndpoint { address: "127.0.0.1", pod: None, ready: false }];
        api.apply(&endpoint_slice("app-1", "app", "http", b.port(), &unready));
        eventually(&gw, "no ready endpoint", || client::get(addr(port), "app.test", "/").status == 503);
    }

    fn subsets_select_endpoints_by_pod_labels(driver) {
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        let api = KubeApi::start();
        let port = free_port();
        api.apply(&service("app", "http", 80, 8080));
        api.apply(&pod("app-a", "app: app, version: v1"));
        api.apply(&pod("app-b", "app: app, version: v2"));
        let one = |pod| [SliceEndpoint { address: "127.0.0.1", pod: Some(pod), ready: true }];
        api.apply(&endpoint_slice("app-a", "app", "http", a.port(), &one("app-a")));
        api.apply(&endpoint_slice("app-b", "app", "http", b.port(), &one("app-b")));
        let rule = format!("{}  host: app\n  subsets:\n  - name: v2\n    labels: {{version: v2}}\n", head("DestinationRule", "app"));
        api.apply(&rule);
        let http = "  - route:\n    - destination:\n        host: app\n        subset: v2\n";
        api.apply(&http_gateway("gw", port, &["*"]));
        api.apply(&virtual_service("app", "gw", &["app.test"], http));
        let dir = tempfile::tempdir().unwrap();
        let gw = start(driver, &api, &dir);
        for _ in 0..4 {
            assert_eq!(backend_of(port, "app.test").as_deref(), Some("b"));
        }
        // Relabelled pods move the subset.
        api.apply(&pod("app-a", "app: app, version: v2"));
        api.apply(&pod("app-b", "app: app, version: v1"));
        eventually(&gw, "the subset following the labels", || backend_of(port, "app.test").as_deref() == Some("a"));
    }

    fn a_rotated_secret_changes_the_served_certificate(driver) {
        let app = Backend::start("app");
        let ca = Ca::new("kube-ca");
        let (first, second) = (ca.server(&["app.test"]), ca.server(&["app.test"]));
        let api = KubeApi::start();
        let port = free_port();
        service_to(&api, "app", &app);
        api.apply(&tls_secret("app-cert", &first));
        let tls = "{mode: SIMPLE, credentialName: app-cert}";
        api.apply(&tls_gateway("gw", &[server(port, "https", "HTTPS", &["app.test"], tls)]));
        api.apply(&virtual_service("app", "gw", &["app.test"], &route_to("app")));
        let dir = tempfile::tempdir().unwrap();
        let gw = start(driver, &api, &dir);
        let client = TlsClient::new(&ca);
        assert_eq!(client.served(addr(port), "app.test").unwrap(), first.der);
        assert_eq!(client.get(addr(port), "app.test", "app.test", "/").unwrap().header("x-backend"), Some("app"));
        api.apply(&tls_secret("app-cert", &second));
        eventually(&gw, "the rotated certificate", || client.served(addr(port), "app.test").ok() == Some(second.der.clone()));
        // A rotation to a certificate that does not parse is refused, and the last good one
        // keeps serving, as Envoy keeps the last certificate SDS delivered.
        let broken: String = tls_secret("app-cert", &second)
            .lines()
            .map(|l| if l.starts_with("  tls.crt:") { "  tls.crt: bm90IGEgY2VydGlmaWNhdGU=\n".to_string() } else { format!("{l}\n") })
            .collect();
        api.apply(&broken);
        eventually(&gw, "the broken Secret refused", || gw.logs().contains("k8s:Secret/default/app-cert: the new version is refused and the last good one kept"));
        assert_eq!(client.served(addr(port), "app.test").unwrap(), second.der);
        assert_eq!(client.get(addr(port), "app.test", "app.test", "/").unwrap().header("x-backend"), Some("app"));
    }

    fn an_api_server_restart_and_410_gone_are_survived(driver) {
        let (_a, _b, api, port) = two_services();
        api.apply(&virtual_service("app", "gw", &["app.test"], &route_to("a")));
        let dir = tempfile::tempdir().unwrap();
        let gw = start(driver, &api, &dir);
        assert_eq!(backend_of(port, "app.test").as_deref(), Some("a"));
        // Written while the server is away, then compacted: the watches resume from a revision
        // that is gone, are answered 410, and relist.
        api.restart(|api| api.apply(&virtual_service("app", "gw", &["app.test"], &route_to("b"))));
        assert_eq!(backend_of(port, "app.test").as_deref(), Some("a"), "the last good config keeps serving");
        eventually(&gw, "the change made while away", || backend_of(port, "app.test").as_deref() == Some("b"));
        assert!(api.gone() > 0, "no watch was answered 410 Gone: {:?}", api.requests());
        // And the watches go on after it.
        api.apply(&virtual_service("app", "gw", &["app.test"], &route_to("a")));
        eventually(&gw, "a change after the restart", || backend_of(port, "app.test").as_deref() == Some("a"));
    }
}

/// `strait validate --kubernetes` lists once and judges what it found: a refused object fails
/// it, named where a file name would go.
#[test]
fn validate_lists_once_and_names_a_refused_object() {
    let api = KubeApi::start();
    api.apply(&http_gateway("gw", free_port(), &["*"]));
    api.apply(&virtual_service("bad", "gw", &["bad.test"], "  - match: [{uri: {prefix: /}}]\n"));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let validate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_strait"))
            .args(["validate", "--kubernetes"])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap()
    };
    let out = validate();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("k8s:VirtualService/default/bad") && err.contains("spec.http[0]"), "{err}");
    api.delete("networking.istio.io/v1", "VirtualService", "default", "bad");
    let out = validate();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}
