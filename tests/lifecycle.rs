//! The gateway's own lifecycle under load loses nothing: a hundred SIGHUPs alternating two
//! valid configs during twenty seconds of keep-alive load, and a SIGTERM in the middle of load,
//! after which every request the gateway accepted (the upstream saw it) is answered. And it
//! refuses to start on a command line it would misread, or on a port another process serves.

use strait_test_support::{self as support, both_drivers, gateway};

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::backend::Backend;
use support::client::Conn;
use support::config::{docs, http_gateway, service_entry, virtual_service};
use support::{free_port, metric};

/// Port `port` routed to `target` (`a.local` or `b.local`).
fn config(port: u16, target: &str, a: &Backend, b: &Backend) -> String {
    let route = format!("  - route:\n    - destination:\n        host: {target}\n");
    docs(&[
        http_gateway("gw", port, &["*"]),
        virtual_service("vs", "gw", &["*"], &route),
        service_entry("a", "a.local", 80, &[a.port()]),
        service_entry("b", "b.local", 80, &[b.port()]),
    ])
}

/// What one client thread saw: request ids answered 200, and the ids that failed with why.
#[derive(Default)]
struct Seen {
    answered: HashSet<String>,
    failed: Vec<(String, String)>,
}

/// A keep-alive client sending `GET PATH?id=…` until `stop`, reconnecting when the gateway
/// says `connection: close`, giving up when it can no longer connect.
fn client(addr: SocketAddr, name: usize, path: &str, stop: &AtomicBool, seen: &Mutex<Seen>) {
    let mut conn: Option<Conn> = None;
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if conn.is_none() {
            match Conn::try_open(addr) {
                Some(c) => conn = Some(c),
                None => return,
            }
        }
        let c = conn.as_mut().unwrap();
        let id = format!("{name}-{n}");
        c.send(format!("GET {path}?id={id} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        match c.try_read_response(false) {
            Some(r) if r.status == 200 => {
                if r.header("connection") == Some("close") {
                    conn = None;
                }
                seen.lock().unwrap().answered.insert(id);
            }
            Some(r) => {
                seen.lock().unwrap().failed.push((id, format!("status {}", r.status)));
                conn = None;
            }
            None => {
                seen.lock().unwrap().failed.push((id, "no answer".into()));
                conn = None;
            }
        }
    }
}

/// The request ids the backends received.
fn received(backends: &[&Backend]) -> HashSet<String> {
    backends
        .iter()
        .flat_map(|b| b.requests())
        .filter_map(|r| r.target.split_once("?id=").map(|(_, id)| id.to_string()))
        .collect()
}

both_drivers! {
    fn a_hundred_reloads_under_load_lose_nothing(driver) {
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        let port = free_port();
        let gw = gateway!(driver).file("gw.yaml", &config(port, "a.local", &a, &b)).start();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (stop, seen) = (AtomicBool::new(false), Mutex::new(Seen::default()));
        let started = Instant::now();
        std::thread::scope(|s| {
            for name in 0..4 {
                let (stop, seen) = (&stop, &seen);
                s.spawn(move || client(addr, name, "/", stop, seen));
            }
            for i in 0..100 {
                let target = if i % 2 == 0 { "b.local" } else { "a.local" };
                gw.write_config("gw.yaml", &config(port, target, &a, &b));
                gw.signal("HUP");
                std::thread::sleep(Duration::from_millis(200));
            }
            stop.store(true, Ordering::Relaxed);
        });
        let seen = seen.into_inner().unwrap();
        assert!(seen.failed.is_empty(), "{} failed, e.g. {:?}", seen.failed.len(), &seen.failed[..seen.failed.len().min(5)]);
        assert!(seen.answered.len() > 400, "only {} requests in {:?}", seen.answered.len(), started.elapsed());
        // Both configs served (each backend answered) and the reloads were taken; a SIGHUP that
        // arrives while another is still pending merges with it, so a busy machine may count
        // fewer generations than signals.
        assert!(a.count() > 0 && b.count() > 0, "a {} b {}", a.count(), b.count());
        let generation = metric(&gw.admin_get("/stats/prometheus").1, "strait_config_generation").unwrap();
        assert!(generation >= 20.0, "{generation} generations for 100 reloads:\n{}", gw.logs());
    }

    fn sigterm_under_load_answers_every_accepted_request(driver) {
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        let port = free_port();
        let mut gw = gateway!(driver).file("gw.yaml", &config(port, "a.local", &a, &b)).start();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (stop, seen) = (AtomicBool::new(false), Mutex::new(Seen::default()));
        std::thread::scope(|s| {
            for name in 0..8 {
                let (stop, seen) = (&stop, &seen);
                s.spawn(move || client(addr, name, "/delay/50", stop, seen));
            }
            std::thread::sleep(Duration::from_millis(1500));
            gw.signal("TERM");
            let status = gw.wait_exit(Duration::from_secs(15)).expect("exits after draining");
            assert!(status.success(), "{status}");
            stop.store(true, Ordering::Relaxed);
        });
        let seen = seen.into_inner().unwrap();
        let accepted = received(&[&a]);
        assert!(accepted.len() > 50, "only {} requests before the drain", accepted.len());
        // A request the gateway had taken (the upstream saw it) was answered; one that failed
        // never reached it (sent on a keep-alive connection as the drain closed it).
        let unanswered: Vec<&String> = accepted.iter().filter(|id| !seen.answered.contains(*id)).collect();
        assert!(unanswered.is_empty(), "accepted but not answered: {unanswered:?}");
        for (id, why) in &seen.failed {
            assert!(!accepted.contains(id), "{id} reached the upstream yet failed: {why}");
        }
    }
}

both_drivers! {
    fn an_unknown_log_level_is_refused_with_the_levels(driver) {
        let (status, stderr) = gateway!(driver)
            .file("gw.yaml", &http_gateway("gw", free_port(), &["*"]))
            .arg("--log-level")
            .arg("infoo")
            .start_refused();
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("`infoo` names no log level"), "{stderr}");
        assert!(stderr.contains("trace debug info warning error critical off"), "{stderr}");
    }
}

both_drivers! {
    fn a_port_another_gateway_serves_is_refused_unless_shared(driver) {
        let port = free_port();
        let config = http_gateway("gw", port, &["*"]);
        let _first = gateway!(driver).file("gw.yaml", &config).start();
        let (status, stderr) = gateway!(driver).file("gw.yaml", &config).start_refused();
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&format!("another process already listens on port {port}")), "{stderr}");
        assert!(stderr.contains("--share-ports"), "{stderr}");
        // A hand-over asks for it.
        gateway!(driver).file("gw.yaml", &config).arg("--share-ports").start();
    }

    fn a_port_any_other_listener_holds_is_refused(driver) {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let (status, stderr) =
            gateway!(driver).file("gw.yaml", &http_gateway("gw", port, &["*"])).start_refused();
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&format!("another process already listens on port {port}")), "{stderr}");
    }
}
