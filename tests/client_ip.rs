//! The real client address, as an Istio ingress gateway (Envoy under istiod's
//! `use_remote_address: true` and `xff_num_trusted_hops`) derives it: ProxyConfig's
//! `gatewayTopology.numTrustedProxies` picks the Nth address from the right of
//! `x-forwarded-for`, and the result feeds `remoteIpBlocks`, `x-envoy-external-address` and the
//! access log; a spoofed `x-forwarded-for` from an untrusted client changes nothing.

use strait_test_support::{self as support, both_drivers, gateway};

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use support::backend::Backend;
use support::client;
use support::config::{docs, service_entry};
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

/// A GET of `path` carrying `xff` as `x-forwarded-for`; its status.
fn get_from(addr: SocketAddr, path: &str, xff: &str) -> u16 {
    client::request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n"),
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
}
