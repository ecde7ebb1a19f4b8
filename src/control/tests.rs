//! The control thread's machinery with real sockets and real workers, no proxy path: ports
//! kept across generations, workers following publications, the drain, reload bookkeeping.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strait_test_support::free_port;

use super::ports::Ports;
use super::*;
use crate::publish::{Published, Readiness, Shared};
use crate::snapshot::{HostTable, Listener, ListenerProtocol, Snapshot};
use crate::stats::Totals;
use crate::upstream::{Generation, LiveRegistry};
use crate::worker::DriverChoice;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn snapshot(generation: u64, ports: &[u16]) -> Snapshot {
    snapshot_at(generation, LOCAL, ports)
}

fn snapshot_at(generation: u64, bind: IpAddr, ports: &[u16]) -> Snapshot {
    let listeners = ports
        .iter()
        .map(|&port| Listener {
            port,
            bind,
            protocol: ListenerProtocol::Http,
            servers: vec![],
            http_routes: Arc::default(),
            sni: HostTable::default(),
            l4_authz: None,
        })
        .collect();
    Snapshot::new(generation, listeners, vec![], vec![])
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::new(LOCAL, port), Duration::from_secs(1)).is_ok()
}

#[test]
fn ports_survive_reloads_that_keep_them() {
    let (a, b) = (free_port(), free_port());
    let mut ports = Ports::new(2, false);
    let first = snapshot(1, &[a]);
    let prepared = ports.prepare(&first).unwrap();
    ports.commit(prepared);
    let before = ports.sockets();
    assert_eq!(before[&a].len(), 2, "one socket per worker");

    let second = snapshot(2, &[a, b]);
    let prepared = ports.prepare(&second).unwrap();
    ports.commit(prepared);
    let after = ports.sockets();
    assert!(Arc::ptr_eq(&before[&a], &after[&a]), "an unchanged port keeps its very sockets");
    assert!(listening(b));

    let third = snapshot(3, &[b]);
    let prepared = ports.prepare(&third).unwrap();
    ports.commit(prepared);
    drop((before, after));
    assert!(!listening(a), "a removed port is closed once nobody holds its sockets");
    assert!(listening(b));
}

#[test]
fn a_port_that_cannot_be_bound_changes_nothing() {
    let a = free_port();
    let taken = TcpListener::bind((LOCAL, 0)).unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let mut ports = Ports::new(1, false);
    let first = snapshot(1, &[a]);
    let prepared = ports.prepare(&first).unwrap();
    ports.commit(prepared);

    let err = ports.prepare(&snapshot(2, &[a, taken_port])).unwrap_err();
    assert_eq!(err.addr(), SocketAddr::new(LOCAL, taken_port));
    assert!(err.to_string().contains(&taken_port.to_string()), "{err}");
    assert_eq!(ports.sockets().keys().copied().collect::<Vec<_>>(), [a]);
    assert!(listening(a));
}

#[test]
fn a_port_another_process_listens_on_is_refused_unless_shared() {
    const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    // SO_REUSEPORT groups as another strait of the same user would hold them, on the same
    // address and on addresses that overlap.
    for (theirs, ours) in [(LOCAL, LOCAL), (ANY, LOCAL), (LOCAL, ANY)] {
        let other = listen(SocketAddr::new(theirs, 0)).unwrap();
        let port = other.local_addr().unwrap().port();
        let err = Ports::new(2, false).prepare(&snapshot_at(1, ours, &[port])).unwrap_err();
        assert!(matches!(err, BindError::Served { .. }), "{theirs} then {ours}: {err}");
        assert!(err.to_string().contains(&format!("port {port}")), "{err}");

        let mut shared = Ports::new(2, true);
        let prepared = shared.prepare(&snapshot_at(1, ours, &[port])).unwrap();
        shared.commit(prepared);
        assert_eq!(shared.sockets()[&port].len(), 2);
    }
}

#[test]
fn our_own_ports_and_time_wait_leftovers_are_not_refused() {
    let port = free_port();
    let mut ports = Ports::new(1, false);
    let prepared = ports.prepare(&snapshot(1, &[port])).unwrap();
    ports.commit(prepared);
    // Moving the port to a wider address binds beside our own sockets until the commit.
    let prepared = ports.prepare(&snapshot_at(2, IpAddr::V4(Ipv4Addr::UNSPECIFIED), &[port])).unwrap();
    ports.commit(prepared);

    // A worker still accepts on the port's sockets for a moment after a reload closes it: the
    // port is still ours if the next reload brings it back.
    let worker = ports.sockets();
    let prepared = ports.prepare(&snapshot(3, &[])).unwrap();
    ports.commit(prepared);
    let prepared = ports.prepare(&snapshot_at(4, IpAddr::V4(Ipv4Addr::UNSPECIFIED), &[port])).unwrap();
    drop(worker);
    ports.commit(prepared);

    // A connection the listening side closes first stays in TIME_WAIT on the port.
    let client = TcpStream::connect((LOCAL, port)).unwrap();
    let sockets = ports.sockets().remove(&port).unwrap();
    sockets[0].set_nonblocking(false).unwrap();
    drop(sockets[0].accept().unwrap());
    drop(sockets);
    let _ = (&client).read(&mut [0; 1]);
    drop(client);
    ports.close_all();
    let mut next = Ports::new(1, false);
    let prepared = next.prepare(&snapshot(5, &[port])).unwrap();
    next.commit(prepared);
    assert!(listening(port));
}

fn workers_follow_publications(driver: DriverChoice) {
    let (a, b) = (free_port(), free_port());
    let mut ports = Ports::new(2, false);
    let first = snapshot(1, &[a]);
    let prepared = ports.prepare(&first).unwrap();
    ports.commit(prepared);
    let shared = Arc::new(Shared::new(
        Published {
            snapshot: Generation::new(first, &mut LiveRegistry::default()),
            sockets: ports.sockets(),
            draining: false,
        },
        2,
    ));
    assert_eq!(shared.readiness(), Readiness::PreInitializing);
    crate::worker::spawn(
        &shared,
        &WorkerOptions {
            workers: 2,
            driver,
            access_log: None,
            mirror_shadow_suffix: false,
            limits: Default::default(),
            redis: None,
        },
    )
    .unwrap();
    wait_until("workers live", || shared.readiness() == Readiness::Live);

    let accepted = || Totals::sum(&shared.workers).downstream_cx_total;
    let client = TcpStream::connect((LOCAL, a)).unwrap();
    wait_until("the connection is accepted", || accepted() == 1);

    // Generation 2 moves the gateway from port a to port b.
    let second = snapshot(2, &[b]);
    let prepared = ports.prepare(&second).unwrap();
    ports.commit(prepared);
    shared.published.store(Arc::new(Published {
        snapshot: Generation::new(second, &mut LiveRegistry::default()),
        sockets: ports.sockets(),
        draining: false,
    }));
    wait_until("every worker on generation 2", || shared.workers.iter().all(|w| w.generation.get() == 2));
    wait_until("port a closed", || !listening(a));
    let _c2 = TcpStream::connect((LOCAL, b)).unwrap();
    wait_until("port b accepted", || accepted() >= 2);

    // Shutdown: sockets go, /ready turns 503, and the workers report drained once the clients
    // are gone.
    ports.close_all();
    let snapshot = shared.snapshot();
    shared.published.store(Arc::new(Published { snapshot, sockets: Default::default(), draining: true }));
    assert_eq!(shared.readiness(), Readiness::Draining);
    wait_until("port b closed", || !listening(b));
    drop((client, _c2));
    wait_until("drained", || shared.drained());
}

#[test]
fn workers_follow_publications_on_legacy() {
    workers_follow_publications(DriverChoice::Legacy);
}

#[test]
fn workers_follow_publications_on_io_uring_where_available() {
    workers_follow_publications(DriverChoice::Auto);
}

/// A config directory of this test's own, holding one ServiceEntry (no listener to bind).
fn config_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strait-control-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let service = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: app}\nspec:\n  \
                   hosts: [app.local]\n  resolution: STATIC\n  ports: [{number: 80, name: http}]\n  \
                   endpoints: [{address: 127.0.0.1}]\n";
    std::fs::write(dir.join("app.yaml"), service).unwrap();
    dir
}

#[test]
fn reloads_count_and_keep_the_last_error_until_one_succeeds() {
    let dir = config_dir("reloads");
    let opts = BuildOptions { paths: vec![dir.clone()], ..BuildOptions::default() };
    let mut reloader = Reloader::start(opts, DnsOptions::default(), 1, false, None).unwrap();
    let shared = reloader.shared().clone();
    assert_eq!(shared.snapshot().generation, 1);

    assert_eq!(reloader.reload().unwrap().generation, 2);
    assert_eq!(shared.snapshot().generation, 2);

    std::fs::remove_dir_all(&dir).unwrap();
    let err = reloader.reload().unwrap_err();
    assert!(matches!(err, ReloadError::Invalid(_)), "{err}");
    assert_eq!(shared.snapshot().generation, 2, "the old snapshot keeps serving");
    assert_eq!((shared.control.reload_ok.get(), shared.control.reload_failed.get()), (1, 1));
    let last = shared.last_reload_error().unwrap();
    assert!(last.contains(&*dir.to_string_lossy()), "{last}");

    assert_eq!(config_dir("reloads"), dir);
    assert_eq!(reloader.reload().unwrap().generation, 3);
    assert_eq!(shared.last_reload_error(), None, "a reload that succeeds clears the error");

    reloader.start_draining();
    assert!(matches!(reloader.reload(), Err(ReloadError::Draining)));
}

#[test]
fn a_reload_to_nothing_strait_reads_keeps_serving() {
    let dir = config_dir("emptied");
    let opts = BuildOptions { paths: vec![dir.clone()], ..BuildOptions::default() };
    let mut reloader = Reloader::start(opts, DnsOptions::default(), 1, false, None).unwrap();
    std::fs::remove_file(dir.join("app.yaml")).unwrap();
    let err = reloader.reload().unwrap_err();
    assert!(err.to_string().contains("no Istio resource or v1 Secret"), "{err}");
    assert_eq!(reloader.shared().snapshot().generation, 1, "the old snapshot keeps serving");
    assert!(reloader.shared().snapshot().cluster_by_name("outbound|80||app.local").is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_invalid_first_config_is_refused() {
    let opts = BuildOptions { paths: vec![PathBuf::from("/nonexistent/strait/config")], ..BuildOptions::default() };
    assert!(matches!(Reloader::start(opts, DnsOptions::default(), 1, false, None), Err(RunError::InvalidConfig(_))));
}

/// `--kubernetes`: an object that fails to load or validate is left out alone, the rest kept;
/// an error in a file still fails the whole.
#[test]
fn api_objects_are_refused_alone_and_files_are_not() {
    use crate::config::ApiObject;
    let object = |name: &str, spec: serde_json::Value| ApiObject {
        name: format!("k8s:VirtualService/default/{name}"),
        object: serde_json::json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "7", "uid": "u"},
            "spec": spec,
        }),
    };
    let route = serde_json::json!([{"route": [{"destination": {"host": "app.local"}}]}]);
    let objects = [
        object("good", serde_json::json!({"hosts": ["good.test"], "http": route})),
        object("bad", serde_json::json!({"hosts": ["bad.test"], "http": [{"match": [{"uri": {"prefix": "/"}}]}]})),
        object("odd", serde_json::json!({"hosts": ["odd.test"], "gatways": ["gw"], "http": route})),
    ];
    let dir = config_dir("api-objects");
    let opts = BuildOptions { paths: vec![dir.clone()], kubernetes: true, ..BuildOptions::default() };
    let valid = load::validated(&opts, Some(&objects)).unwrap();
    let names: Vec<&str> = valid.set.virtual_services.iter().map(|v| v.name()).collect();
    assert_eq!(names, ["good"]);
    let refused: Vec<String> = valid.refused.iter().map(|d| d.to_string()).collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[0].contains("k8s:VirtualService/default/odd") && refused[0].contains("gatways"), "{refused:?}");
    assert!(
        refused[1].contains("k8s:VirtualService/default/bad") && refused[1].contains("spec.http[0]"),
        "{refused:?}"
    );
    // A broken file fails the whole, as a reload of files always has.
    std::fs::write(dir.join("broken.yaml"), "kind: [").unwrap();
    assert!(load::validated(&opts, Some(&objects)).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_mesh_feeds_the_proxy_config_and_the_dns_refresh_rate_and_the_flags_win() {
    let dir = config_dir("mesh");
    let mesh = dir.join("mesh.yml.off");
    std::fs::write(&mesh, "defaultConfig:\n  httpsHttp2Disabled: true\ndnsRefreshRate: 30s\n").unwrap();
    let proxy = dir.join("proxy.yml.off");
    std::fs::write(&proxy, "httpsHttp2Disabled: false\n").unwrap();
    let opts = BuildOptions { paths: vec![dir.clone()], mesh: Some(mesh), ..BuildOptions::default() };
    let valid = load::validated(&opts, None).unwrap();
    assert!(valid.set.proxy.https_http2_disabled, "defaultConfig applies");
    let overridden = BuildOptions { proxy_config: Some(proxy), ..opts.clone() };
    assert!(!load::validated(&overridden, None).unwrap().set.proxy.https_http2_disabled, "--proxy-config wins");

    let mut reloader = Reloader::start(opts.clone(), DnsOptions::default(), 1, false, None).unwrap();
    assert_eq!(reloader.dns.refresh_rate(), Duration::from_secs(30), "dnsRefreshRate applies");
    let flag = DnsOptions { refresh_rate: Some(Duration::from_secs(10)), ..DnsOptions::default() };
    let with_flag = Reloader::start(opts, flag, 1, false, None).unwrap();
    assert_eq!(with_flag.dns.refresh_rate(), Duration::from_secs(10), "--dns-refresh-rate wins");
    std::fs::write(dir.join("mesh.yml.off"), "dnsRefreshRate: 0s\n").unwrap();
    assert!(reloader.reload().is_err());
    assert_eq!(reloader.dns.refresh_rate(), Duration::from_secs(30), "a refused MeshConfig changes nothing");
    std::fs::remove_dir_all(&dir).unwrap();
}
