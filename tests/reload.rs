//! SIGHUP hot swap and SIGTERM drain, end to end on both drivers.

use strait_test_support::{self as support, both_drivers, gateway};

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::backend::Backend;
use support::client::{self, Conn};
use support::config::{docs, http_gateway, service_entry, virtual_service};
use support::{free_port, metric, wait_until};

fn route_to(host: &str) -> String {
    format!("  - route:\n    - destination:\n        host: {host}\n")
}

/// Gateway `gw` on `ports`, all routed to `target` (a.local or b.local).
fn config(ports: &[u16], target: &str, a: &Backend, b: &Backend) -> String {
    let mut parts: Vec<String> =
        ports.iter().enumerate().map(|(i, p)| http_gateway(&format!("gw{i}"), *p, &["*"])).collect();
    for i in 0..ports.len() {
        parts.push(virtual_service(&format!("vs{i}"), &format!("gw{i}"), &["*"], &route_to(target)));
    }
    parts.push(service_entry("a", "a.local", 80, &[a.port()]));
    parts.push(service_entry("b", "b.local", 80, &[b.port()]));
    docs(&parts)
}

fn addr(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

both_drivers! {
    fn reload_swaps_routes_without_touching_inflight(driver) {
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        let port = free_port();
        let gw = gateway!(driver).file("gw.yaml", &config(&[port], "a.local", &a, &b)).start();
        gw.wait_generation(1);
        let mut slow = Conn::open(addr(port));
        slow.send(b"GET /delay/1500 HTTP/1.1\r\nHost: x\r\n\r\n");
        support::wait_until(Duration::from_secs(5), || a.count() == 1).expect("slow request reached a");
        gw.write_config("gw.yaml", &config(&[port], "b.local", &a, &b));
        gw.signal("HUP");
        gw.wait_generation(2);
        assert_eq!(client::get(addr(port), "x", "/").header("x-backend"), Some("b"));
        // The request that started before the swap finishes on its old route.
        assert_eq!(slow.read_response(false).header("x-backend"), Some("a"));
    }

    fn broken_reload_changes_nothing(driver) {
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        let port = free_port();
        let gw = gateway!(driver).file("gw.yaml", &config(&[port], "a.local", &a, &b)).start();
        gw.wait_generation(1);
        gw.write_config("broken.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: oops\nspec:\n  hosts: [\"*\"]\n  gatways: [gw0]\n");
        gw.signal("HUP");
        wait_until(Duration::from_secs(10), || {
            metric(&gw.admin_get("/stats/prometheus").1, "strait_reloads_total{result=\"failed\"}") == Some(1.0)
        })
        .unwrap_or_else(|| panic!("reload failure not counted:\n{}", gw.logs()));
        let logs = gw.logs();
        assert!(logs.contains("broken.yaml") && logs.contains("gatways"), "the error names file and field:\n{logs}");
        assert_eq!(metric(&gw.admin_get("/stats/prometheus").1, "strait_config_generation"), Some(1.0));
        assert_eq!(client::get(addr(port), "x", "/").header("x-backend"), Some("a"));
    }

    fn a_failed_reload_stays_ready_and_names_its_error(driver) {
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        let port = free_port();
        let gw = gateway!(driver).file("gw.yaml", &config(&[port], "a.local", &a, &b)).start();
        gw.wait_generation(1);
        let reloads = || -> serde_json::Value {
            let (status, body) = gw.admin_get("/server_info");
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["reloads"].clone()
        };
        assert_eq!(reloads(), serde_json::json!({"ok": 0, "failed": 0, "last_error": null}));

        gw.write_config("broken.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: oops\nspec:\n  hosts: [\"*\"]\n  gatways: [gw0]\n");
        gw.signal("HUP");
        wait_until(Duration::from_secs(10), || reloads()["failed"] == 1)
            .unwrap_or_else(|| panic!("reload failure not shown:\n{}", gw.logs()));
        // As Envoy after a rejected update: still serving the old config, still ready.
        assert_eq!(gw.admin_get("/ready"), (200, "LIVE\n".to_string()));
        let error = reloads()["last_error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains("broken.yaml") && error.contains("gatways"), "names file and field: {error}");
        let (_, dump) = gw.admin_get("/config_dump");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&dump).unwrap()["reloads"]["last_error"], error.as_str());

        std::fs::remove_file(gw.config_dir().join("broken.yaml")).unwrap();
        gw.signal("HUP");
        let cleared = serde_json::json!({"ok": 1, "failed": 1, "last_error": null});
        wait_until(Duration::from_secs(10), || reloads() == cleared)
            .unwrap_or_else(|| panic!("a good reload leaves {}:\n{}", reloads(), gw.logs()));
        assert_eq!(gw.admin_get("/ready"), (200, "LIVE\n".to_string()));
    }

    fn reload_adds_and_removes_ports(driver) {
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        let (p1, p2) = (free_port(), free_port());
        let gw = gateway!(driver).file("gw.yaml", &config(&[p1], "a.local", &a, &b)).start();
        gw.wait_generation(1);
        let mut kept = Conn::open(addr(p1));
        assert_eq!(kept.get("/", "x").status, 200);
        gw.write_config("gw.yaml", &config(&[p1, p2], "a.local", &a, &b));
        gw.signal("HUP");
        gw.wait_generation(2);
        wait_until(Duration::from_secs(5), || TcpStream::connect(addr(p2)).is_ok()).expect("new port opened");
        assert_eq!(client::get(addr(p2), "x", "/").status, 200);
        gw.write_config("gw.yaml", &config(&[p2], "b.local", &a, &b));
        gw.signal("HUP");
        gw.wait_generation(3);
        wait_until(Duration::from_secs(5), || TcpStream::connect(addr(p1)).is_err()).expect("removed port closed");
        assert_eq!(client::get(addr(p2), "x", "/").header("x-backend"), Some("b"));
    }

    fn sigterm_drains_inflight_requests(driver) {
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        let port = free_port();
        let mut gw =
            gateway!(driver).file("gw.yaml", &config(&[port], "a.local", &a, &b)).arg("--access-log").start();
        let mut slow = Conn::open(addr(port));
        slow.send(b"GET /delay/800 HTTP/1.1\r\nHost: x\r\n\r\n");
        wait_until(Duration::from_secs(5), || a.count() == 1).expect("slow request reached a");
        gw.signal("TERM");
        wait_until(Duration::from_secs(2), || gw.admin_get("/ready").0 == 503).expect("/ready turns 503 while draining");
        let resp = slow.read_response(false);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("connection"), Some("close"), "a draining gateway closes keep-alive connections");
        let status = gw.wait_exit(Duration::from_secs(10)).expect("exits after draining");
        assert!(status.success(), "{status}");
        // The drained request's access-log line was written before the process exited.
        assert!(gw.stdout().contains("\"GET /delay/800 HTTP/1.1\" 200 "), "{}", gw.stdout());
    }
}
