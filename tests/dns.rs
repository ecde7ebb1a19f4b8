//! Live DNS for `resolution: DNS` ServiceEntries, end to end on both drivers: the gateway asks
//! the tests' DNS server (`--dns-server`), follows a changed answer with no reload and no
//! failed request, and keeps the last answer while lookups fail.

use strait_test_support::{self as support, both_drivers, gateway};

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use support::backend::{Backend, Mode};
use support::client;
use support::config::{docs, http_gateway, virtual_service};
use support::dns::DnsServer;
use support::{free_port, metric, wait_until, Gateway};

const NAME: &str = "app.dns.test";

/// Port `port` routed to `NAME`, a DNS ServiceEntry on `backend_port`.
fn config(port: u16, backend_port: u16) -> String {
    let route = format!(
        "  - route:\n    - destination:\n        host: {NAME}\n        port:\n          number: {backend_port}\n"
    );
    let entry = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: app\nspec:\n  hosts: [{NAME}]\n  location: MESH_EXTERNAL\n  resolution: DNS\n  ports:\n  - number: {backend_port}\n    name: http\n    protocol: HTTP\n"
    );
    docs(&[http_gateway("gw", port, &["*"]), virtual_service("vs", "gw", &["*"], &route), entry])
}

/// Two backends on one port, at 127.0.0.1 and 127.0.0.2, a DNS server answering the first,
/// and the gateway asking it.
fn setup(driver: support::Driver) -> (Backend, Backend, DnsServer, Gateway, SocketAddr) {
    let a = Backend::start("a");
    let b = Backend::at("b", SocketAddr::new(Ipv4Addr::new(127, 0, 0, 2).into(), a.port()), Mode::Normal);
    let dns = DnsServer::start();
    dns.set(NAME, &[Ipv4Addr::LOCALHOST]);
    let port = free_port();
    let gw = gateway!(driver)
        .file("gw.yaml", &config(port, a.port()))
        .arg("--dns-server")
        .arg(&dns.addr.to_string())
        .arg("--dns-refresh-rate")
        .arg("1s")
        .start();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(client::get(addr, "app", "/").body_text(), "a");
    (a, b, dns, gw, addr)
}

fn counter(gw: &Gateway, name: &str, result: &str) -> f64 {
    let body = gw.admin_get("/stats/prometheus").1;
    body.lines()
        .filter(|l| l.starts_with(name) && (result.is_empty() || l.contains(&format!("result=\"{result}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

both_drivers! {
    fn a_changed_answer_is_followed_with_no_reload_and_no_failed_request(driver) {
        let (_a, b, dns, gw, addr) = setup(driver);
        // The first lookup counts too (refreshes come after Envoy's 5 s floor).
        assert!(counter(&gw, "strait_dns_resolutions_total", "ok") >= 1.0, "the first lookup went uncounted");
        dns.set(NAME, &[Ipv4Addr::new(127, 0, 0, 2)]);
        // The answer's 1 s TTL is refreshed after Envoy's 5 s minimum at the latest.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut answered_by_b = false;
        while Instant::now() < deadline && !answered_by_b {
            let response = client::get(addr, "app", "/");
            assert_eq!(response.status, 200, "a request failed while the answer changed:\n{}", gw.logs());
            answered_by_b = response.body_text() == "b";
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(answered_by_b, "the new address was never used:\n{}", gw.logs());
        assert!(b.count() > 0);
        assert_eq!(counter(&gw, "strait_reloads_total", "ok"), 0.0, "no reload: the DNS update is its own");
        assert!(metric(&gw.admin_get("/stats/prometheus").1, "strait_dns_updates_total").unwrap() >= 1.0);
    }

    fn a_failing_lookup_keeps_the_last_answer(driver) {
        let (a, _b, dns, gw, addr) = setup(driver);
        let before = dns.queries();
        dns.fail(NAME);
        let refreshed = wait_until(Duration::from_secs(20), || counter(&gw, "strait_dns_resolutions_total", "failed") >= 1.0);
        assert!(refreshed.is_some(), "no failed refresh was counted:\n{}", gw.logs());
        assert!(dns.queries() > before);
        let served = a.count();
        for _ in 0..5 {
            let response = client::get(addr, "app", "/");
            assert_eq!((response.status, response.body_text().as_str()), (200, "a"));
        }
        assert_eq!(a.count(), served + 5);
        assert_eq!(metric(&gw.admin_get("/stats/prometheus").1, "strait_dns_updates_total"), Some(0.0));
    }

    fn a_name_failing_from_the_start_is_asked_again_after_the_refresh_rate(driver) {
        // istiod sets no dns_failure_refresh_rate: Envoy then retries a failed lookup after
        // dns_refresh_rate (1 s here), not after the 5 s floor it puts under TTLs.
        let a = Backend::start("a");
        let dns = DnsServer::start();
        dns.fail(NAME);
        let port = free_port();
        let gw = gateway!(driver)
            .file("gw.yaml", &config(port, a.port()))
            .arg("--dns-server")
            .arg(&dns.addr.to_string())
            .arg("--dns-refresh-rate")
            .arg("1s")
            .start();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(client::get(addr, "app", "/").status, 503, "no address yet");
        dns.set(NAME, &[Ipv4Addr::LOCALHOST]);
        let served = wait_until(Duration::from_millis(3500), || client::get(addr, "app", "/").status == 200);
        assert!(served.is_some(), "the name was not asked again within the refresh rate:\n{}", gw.logs());
    }
}
