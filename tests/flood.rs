//! A flood of idle connections on one worker (half silent, half kept alive after a request)
//! while a normal client keeps being answered promptly; and what each idle connection costs
//! the gateway in resident memory (`perf/connections.md` has the release build's figure).

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::backend::Backend;
use support::client::Conn;
use support::config::app_behind_rule;
use support::{free_port, Gateway};

const FLOOD: usize = 10_000;

/// The two drivers' runs take turns: together they would need twice the descriptors.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Raises its flag when dropped.
struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The gateway's resident memory, in bytes.
fn rss(gw: &Gateway) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).unwrap();
    let kib: usize =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").parse().unwrap();
    kib * 1024
}

both_drivers! {
    fn ten_thousand_idle_connections_leave_a_normal_client_served(driver) {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        // Each flood connection is a descriptor here and one in the gateway.
        let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
        rlimit::increase_nofile_limit(hard).unwrap();
        assert!(hard as usize > FLOOD + 1000, "this test needs more than {FLOOD} descriptors (hard limit {hard})");
        let backend = Backend::start("app");
        let port = free_port();
        let route = "  - route:\n    - destination:\n        host: app.local\n";
        let config = app_behind_rule(port, &[backend.port()], route, "    loadBalancer:\n      simple: ROUND_ROBIN\n");
        let gw = gateway!(driver).file("gw.yaml", &config).workers(1).start();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let before = rss(&gw);
        let done = AtomicBool::new(false);
        let mut flood = std::thread::scope(|s| {
            let normal = s.spawn(|| {
                let (mut served, mut slowest) = (0, Duration::ZERO);
                let mut c = Conn::open(addr);
                while !done.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    assert_eq!(c.get("/", "app.test").status, 200);
                    slowest = slowest.max(started.elapsed());
                    served += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                (served, slowest)
            });
            // The normal client stops however the flood ends, a failure included.
            let stop = Stop(&done);
            let mut flood = Vec::with_capacity(FLOOD);
            for i in 0..FLOOD {
                let mut s = TcpStream::connect(addr).unwrap();
                if i % 2 == 1 {
                    s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").unwrap();
                    let mut got = [0u8; 512];
                    let n = s.read(&mut got).unwrap();
                    assert!(got[..n].starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&got[..n]));
                }
                flood.push(s);
            }
            std::thread::sleep(Duration::from_millis(500));
            drop(stop);
            let (served, slowest) = normal.join().unwrap();
            assert!(served > 20, "the normal client was served {served} times");
            assert!(slowest < Duration::from_secs(1), "a normal request took {slowest:?}");
            flood
        });
        // Every flood connection is still open and served.
        let per_connection = (rss(&gw).saturating_sub(before)) / FLOOD;
        for s in flood.iter_mut().step_by(1000) {
            s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            assert!(got.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&got));
        }
        // A debug build's futures are larger than a release build's; this bounds both.
        assert!(per_connection < 12 * 1024, "{per_connection} bytes of RSS per idle connection");
        eprintln!("{driver:?}: {per_connection} bytes of RSS per idle connection");
    }
}
