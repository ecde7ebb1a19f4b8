//! Request bodies that stream up while the response comes down, whatever carries them: an
//! upstream over TLS (DestinationRule `tls`) answering before it read the body.

use strait_test_support::{self as support, both_drivers, gateway};

use std::net::SocketAddr;
use std::time::Duration;

use support::client::Conn;
use support::config::{docs, http_gateway, service_entry};
use support::tls::{route_all, tls_destination_rule, Ca, TlsBackend};
use support::Driver;

/// A gateway on its own port routing `up.test` to `backend` over TLS (SIMPLE), and that port.
fn behind_tls(driver: Driver, backend: &TlsBackend, ca: &Ca, dir: &std::path::Path) -> (support::Gateway, SocketAddr) {
    let ca_file = ca.write(dir, "ca");
    let port = support::free_port();
    let config = docs(&[
        http_gateway("gw", port, &["*"]),
        route_all("up", &["gw"], &["up.test"], "up.example.com"),
        service_entry("up", "up.example.com", 443, &[backend.port()]),
        tls_destination_rule(
            "up",
            "up.example.com",
            &format!("{{mode: SIMPLE, caCertificates: \"{}\", sni: up.example.com}}", ca_file.display()),
        ),
    ]);
    let gw = gateway!(driver).file("gw.yaml", &config).start();
    (gw, SocketAddr::from(([127, 0, 0, 1], port)))
}

both_drivers! {
    // The body must not go up whole before the answer is read: the client sends a kilobyte of
    // the megabyte it announced and waits, as an upload refused at once leaves it.
    fn an_upstream_over_tls_that_answers_before_the_body_is_relayed_at_once(driver) {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("streamed bodies ca");
        let backend = TlsBackend::start("up", &ca.server(&["up.example.com"]), None);
        let (gw, addr) = behind_tls(driver, &backend, &ca, dir.path());
        let mut c = Conn::open(addr);
        c.reader.get_mut().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = "POST /early/413 HTTP/1.1\r\nHost: up.test\r\nContent-Length: 1048576\r\n\r\n";
        c.send(format!("{head}{}", "x".repeat(1024)).as_bytes());
        let resp = c.try_read_response(false).unwrap_or_else(|| panic!("no early answer; logs:\n{}", gw.logs()));
        assert_eq!((resp.status, resp.header("x-backend")), (413, Some("up")));
    }
}
