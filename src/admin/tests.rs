//! The admin server over real sockets, with the control thread played by the test.

use std::io::{Read, Write};
use std::sync::mpsc::Receiver;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use super::*;
use crate::control::{command_line, BuildOptions, RunOptions};
use crate::publish::{Published, Reloaded};
use crate::snapshot::Snapshot;
use crate::upstream::{Generation, LiveRegistry};
use crate::worker::{DriverChoice, WorkerOptions};

fn start() -> (SocketAddr, Arc<Shared>, Receiver<ControlEvent>) {
    let first = Published {
        snapshot: Generation::new(Snapshot::new(1, vec![], vec![], vec![]), &mut LiveRegistry::default()),
        sockets: Default::default(),
        draining: false,
    };
    let shared = Arc::new(Shared::new(first, 2));
    let (tx, rx) = mpsc::channel();
    let admin = Admin::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = admin.local_addr();
    let opts = RunOptions {
        build: BuildOptions { paths: vec!["/etc/strait".into()], ..BuildOptions::default() },
        workers: WorkerOptions {
            workers: 2,
            driver: DriverChoice::Legacy,
            access_log: None,
            mirror_shadow_suffix: false,
            limits: Default::default(),
            redis: None,
        },
        admin: addr,
        drain_timeout: Duration::from_millis(500),
        share_ports: false,
        watch: false,
        dns: Default::default(),
    };
    admin.spawn(shared.clone(), tx, log_control(), command_line(&opts)).unwrap();
    (addr, shared, rx)
}

/// A filter of the test's own, not installed: the subscriber holding it is leaked because the
/// admin thread outlives `start`.
fn log_control() -> LogControl {
    let (layer, handle) = reload::Layer::new(EnvFilter::new("info"));
    Box::leak(Box::new(Registry::default().with(layer)));
    LogControl::new(handle)
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
    assert!(prom.contains("envoy_http_downstream_rq{envoy_response_code=\"200\"} 1"), "{prom}");
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
    let post = format!("POST /reload HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 4\r\n\r\nnow!");
    assert_eq!(request(addr, &post), (200, "reloaded: generation 2, 3 listeners\n".into()));
    let (status, body) = request(addr, &post);
    assert_eq!(status, 500);
    assert!(body.contains("gatways"), "{body}");
    control.join().unwrap();
}

#[test]
fn server_info_reports_state_uptime_and_options() {
    let (addr, shared, _events) = start();
    let info = || {
        let (status, body) = get(addr, "/server_info");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let before = info();
    assert_eq!(before["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(before["state"], "PRE_INITIALIZING");
    assert_eq!(before["workers"], 2);
    assert_eq!(before["driver"], serde_json::Value::Null, "no worker runs yet");
    let uptime = before["uptime_current_epoch"].as_str().unwrap();
    assert!(uptime.strip_suffix('s').is_some_and(|s| s.parse::<u64>().is_ok()), "{uptime}");
    assert_eq!(before["uptime_all_epochs"], uptime);
    let options = &before["command_line_options"];
    assert_eq!(options["concurrency"], 2);
    assert_eq!(options["config_paths"], serde_json::json!(["/etc/strait"]));
    assert_eq!(options["driver"], "legacy");
    assert_eq!(options["drain_time"], "0.500s");

    shared.set_drivers(vec![crate::publish::Driver::Legacy; 2]);
    for w in &shared.workers {
        w.generation.set(1);
    }
    let live = info();
    assert_eq!(live["state"], "LIVE");
    assert_eq!(live["driver"], "legacy");
}

#[test]
fn logging_lists_and_sets_the_level() {
    let (addr, _shared, _events) = start();
    let post = |query: &str| request(addr, &format!("POST /logging{query} HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
    assert_eq!(get(addr, "/logging"), (200, "active loggers:\n  all: info\n".into()));
    assert_eq!(post("?level=warn"), (200, "active loggers:\n  all: warning\n".into()));
    assert_eq!(get(addr, "/logging").1, "active loggers:\n  all: warning\n");
    for bad in ["?level=bogus", "", "?level", "?http=debug", "?level=debug&level=info"] {
        let (status, body) = post(bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("levels: trace debug info warning error critical off"), "{bad}: {body}");
    }
    assert!(post("?level=bogus").1.contains("unknown log level `bogus`"));
    assert_eq!(get(addr, "/logging?level=debug").0, 405, "a GET changes nothing");
    assert_eq!(get(addr, "/logging").1, "active loggers:\n  all: warning\n");
}
