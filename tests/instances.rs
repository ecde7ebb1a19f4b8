//! Many instances, one behaviour, end to end on both drivers: three gateways given the same
//! config share one port (`--share-ports`, the kernel spreading connections over them as a load
//! balancer spreads them over replicas) and send each consistent-hash key to the same endpoint
//! whichever of them takes it; a rolling restart of one (SIGTERM drain, a replacement started
//! with `--share-ports`) under a bounded load loop loses no request the others could serve.
//!
//! Here the dying instance cannot first leave a load balancer, as a Kubernetes pod does in its
//! preStop sleep: its listening sockets are in the kernel's SO_REUSEPORT group until it closes
//! them, and a connection queued on one at that moment is reset unread
//! (`net.ipv4.tcp_migrate_req` is off). Such a connection, with no byte of answer, is sent
//! again, as an HTTP client retries a connection that died before any response; the retries
//! are counted. What tells it from a lost request: a lost one reached a backend and its answer
//! never came back, so the backends must have answered exactly the requests the clients got
//! answers for. Any answer but a 200 fails the test.

use strait_test_support::{self as support, both_drivers, gateway};

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use support::backend::Backend;
use support::client::{Conn, Response};
use support::config::app_behind_rule;
use support::{free_port, metric_sum, wait_until, Driver, Gateway};

const ROUTE: &str = "  - route:\n    - destination:\n        host: app.local\n";
const RING_HASH: &str =
    "    loadBalancer:\n      consistentHash:\n        httpHeaderName: x-user\n        ringHash:\n          minimumRingSize: 1024\n";

/// Five backends behind `app.local`, and one config for every instance: a port and a
/// DestinationRule hashing on `x-user`.
fn setup() -> (Vec<Backend>, String, SocketAddr) {
    let backends: Vec<Backend> = (0..5).map(|i| Backend::start(&format!("b{i}"))).collect();
    let port = free_port();
    let ports: Vec<u16> = backends.iter().map(Backend::port).collect();
    (backends, app_behind_rule(port, &ports, ROUTE, RING_HASH), SocketAddr::from(([127, 0, 0, 1], port)))
}

/// An instance serving `config`; all but the first share the port.
fn instance(driver: Driver, config: &str, share: bool) -> Gateway {
    let gw = gateway!(driver).file("gw.yaml", config);
    if share {
        gw.arg("--share-ports").start()
    } else {
        gw.start()
    }
}

/// One request for `user` on a fresh connection: the answer, or `None` when the connection
/// closed (or was refused or reset) before any byte of one.
fn try_get(addr: SocketAddr, path: &str, user: usize) -> Option<Response> {
    let mut conn = Conn::try_open(addr)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nx-user: user-{user}\r\nConnection: close\r\n\r\n");
    conn.reader.get_mut().write_all(request.as_bytes()).ok()?;
    conn.try_read_response(false)
}

/// The backend answering `user`, retrying a connection that died unanswered (see the header);
/// (status, backend, retries).
fn get(addr: SocketAddr, path: &str, user: usize) -> (u16, String, usize) {
    for retries in 0..5 {
        if let Some(r) = try_get(addr, path, user) {
            return (r.status, r.header("x-backend").unwrap_or_default().to_string(), retries);
        }
    }
    panic!("user-{user}: five connections in a row died unanswered");
}

/// Requests served by an instance, from its own admin port.
fn served(gw: &Gateway) -> f64 {
    metric_sum(&gw.admin_get("/stats/prometheus").1, "istio_requests_total")
}

/// Eight clients in a loop, a fresh connection each, users in turn, each request answered 50 ms
/// late (so that the instance stopped has some under way), until told to stop (or 2,000
/// requests each, the bound): (user, status, backend) of each, and the retries.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Answered>>,
}

/// (user, status, backend) of each request, and the connections retried unanswered.
type Answered = (Vec<(usize, u16, String)>, usize);

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..8)
            .map(|client| {
                let flag = stop.clone();
                std::thread::spawn(move || {
                    let (mut answers, mut retried) = (Vec::new(), 0);
                    while !flag.load(Ordering::Relaxed) && answers.len() < 2000 {
                        let user = (client * 3 + answers.len()) % 20;
                        let (status, backend, retries) = get(addr, "/delay/50", user);
                        answers.push((user, status, backend));
                        retried += retries;
                    }
                    (answers, retried)
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn finish(self) -> Answered {
        self.stop.store(true, Ordering::Relaxed);
        let (mut answers, mut retried) = (Vec::new(), 0);
        for thread in self.threads {
            let (a, r) = thread.join().unwrap();
            answers.extend(a);
            retried += r;
        }
        (answers, retried)
    }
}

both_drivers! {
    fn three_instances_send_each_hash_key_to_the_same_endpoint(driver) {
        let (_backends, config, addr) = setup();
        let gws = [instance(driver, &config, false), instance(driver, &config, true), instance(driver, &config, true)];
        let mut chosen = BTreeSet::new();
        for user in 0..12 {
            let (status, first, _) = get(addr, "/", user);
            assert_eq!(status, 200);
            // Fresh connections, spread by the kernel over the three instances' sockets.
            for _ in 0..14 {
                assert_eq!(get(addr, "/", user).1, first, "user-{user} moved between instances");
            }
            chosen.insert(first);
        }
        assert!(chosen.len() > 1, "12 keys all hashed to {chosen:?}");
        // Each instance answered some of them: the same key met each one's own tables.
        wait_until(Duration::from_secs(5), || gws.iter().map(served).sum::<f64>() >= 180.0).expect("every request counted");
        for (i, gw) in gws.iter().enumerate() {
            assert!(served(gw) > 0.0, "instance {i} took no connection of 180");
        }
    }

    fn a_rolling_restart_of_one_instance_loses_no_request(driver) {
        let (backends, config, addr) = setup();
        let mut old = instance(driver, &config, false);
        let others = [instance(driver, &config, true), instance(driver, &config, true)];
        let load = Load::start(addr);
        wait_until(Duration::from_secs(10), || served(&old) > 20.0).expect("the load reaches the first instance");
        old.signal("TERM");
        let status = old.wait_exit(Duration::from_secs(15)).expect("the instance drained and exited");
        assert!(status.success(), "{status}:\n{}", old.logs());
        let replacement = instance(driver, &config, true);
        wait_until(Duration::from_secs(10), || served(&replacement) > 20.0).expect("the replacement takes its share");
        let (answers, retried) = load.finish();
        let failed: Vec<_> = answers.iter().filter(|(_, status, _)| *status != 200).collect();
        assert!(failed.is_empty(), "{} of {} requests failed: {failed:?}\n{}", failed.len(), answers.len(), old.logs());
        // Affinity held across the restart: one backend per user throughout.
        for user in 0..20 {
            let backends: BTreeSet<&str> =
                answers.iter().filter(|(u, _, _)| *u == user).map(|(_, _, b)| b.as_str()).collect();
            assert_eq!(backends.len(), 1, "user-{user} reached {backends:?}");
        }
        let forwarded: usize = backends.iter().map(Backend::count).sum();
        assert_eq!(forwarded, answers.len(), "requests a backend answered whose answer was lost");
        eprintln!("{} requests, {retried} connections retried unanswered", answers.len());
        assert!(others.iter().all(|gw| served(gw) > 0.0));
    }
}
