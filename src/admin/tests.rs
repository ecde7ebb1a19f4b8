//! The admin server over real sockets, with the control thread played by the test.

use std::io::{Read, Write};
use std::sync::mpsc::Receiver;

use super::*;
use crate::control::{Published, Reloaded};
use crate::snapshot::Snapshot;

fn start() -> (SocketAddr, Arc<Shared>, Receiver<ControlEvent>) {
    let first = Published {
        snapshot: Arc::new(Snapshot { generation: 1, ..Snapshot::default() }),
        sockets: Default::default(),
        draining: false,
    };
    let shared = Arc::new(Shared::new(first, 2));
    let (tx, rx) = mpsc::channel();
    let admin = Admin::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = admin.local_addr();
    admin.spawn(shared.clone(), tx).unwrap();
    (addr, shared, rx)
}

/// (status, body) of one raw request.
fn request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, &format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n"))
}

#[test]
fn ready_follows_the_workers_and_the_drain() {
    let (addr, shared, _events) = start();
    assert_eq!(get(addr, "/ready"), (503, "PRE_INITIALIZING\n".into()));
    for w in &shared.workers {
        w.generation.set(1);
    }
    assert_eq!(get(addr, "/ready"), (200, "LIVE\n".into()));
    let snapshot = shared.snapshot();
    shared.published.store(Arc::new(Published { snapshot, sockets: Default::default(), draining: true }));
    assert_eq!(get(addr, "/ready"), (503, "DRAINING\n".into()));
}

#[test]
fn pages() {
    let (addr, shared, _events) = start();
    for w in &shared.workers {
        w.generation.set(1);
    }
    shared.workers[1].record_status(200);
    let (status, prom) = get(addr, "/stats/prometheus");
    assert_eq!(status, 200);
    assert!(prom.contains("\nstrait_config_generation 1\n"), "{prom}");
    assert!(prom.contains("envoy_http_downstream_rq_code{envoy_response_code=\"200\"} 1"), "{prom}");
    assert_eq!(get(addr, "/stats?format=prometheus").1, prom);
    assert!(get(addr, "/stats").1.contains("strait.config_generation: 1\n"));
    let (status, dump) = get(addr, "/config_dump");
    assert_eq!(status, 200);
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["generation"], 1);
    assert_eq!(dump["reloads"]["failed"], 0);
    assert_eq!(get(addr, "/clusters"), (200, String::new()));
    assert_eq!(get(addr, "/nope").0, 404);
    assert_eq!(request(addr, "POST /ready HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0, 405);
    assert_eq!(get(addr, "/reload").0, 405);
    assert_eq!(request(addr, "HEAD /ready HTTP/1.1\r\n\r\n").1, "", "HEAD has no body");
    assert_eq!(request(addr, "NOT HTTP\r\n\r\n").0, 400);
}

#[test]
fn post_reload_asks_the_control_thread() {
    let (addr, shared, events) = start();
    for w in &shared.workers {
        w.generation.set(2);
    }
    let control = std::thread::spawn(move || {
        for outcome in [Ok(Reloaded { generation: 2, listeners: 3 }), Err("x.yaml: spec.gatways: unknown field".into())]
        {
            match events.recv().unwrap() {
                ControlEvent::Reload(Some(reply)) => reply.send(outcome).unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    let post = "POST /reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 4\r\n\r\nnow!";
    assert_eq!(request(addr, post), (200, "reloaded: generation 2, 3 listeners\n".into()));
    let (status, body) = request(addr, post);
    assert_eq!(status, 500);
    assert!(body.contains("gatways"), "{body}");
    control.join().unwrap();
}
