//! `--watch`, end to end on both drivers: config mounted as a Kubernetes ConfigMap volume is
//! laid out here as the kubelet lays it out (`KEY -> ..data/KEY`, `..data -> ..TIMESTAMP`) and
//! updated as the kubelet updates it (a new timestamped directory, then a `..data` symlink
//! renamed over the old one); the gateway reloads within a second with no failed request under
//! a bounded load loop. Plain edits (a `--config` file, the `--proxy-config` file) reload too.

use strait_test_support::{self as support, both_drivers, gateway};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::backend::Backend;
use support::client::{self, Conn};
use support::config::{docs, http_gateway, service_entry, virtual_service};
use support::{free_port, wait_until};

/// Gateway on `port` routing everything to `target` (a.local or b.local).
fn config(port: u16, target: &str, a: &Backend, b: &Backend) -> String {
    let route = format!("  - route:\n    - destination:\n        host: {target}\n");
    docs(&[
        http_gateway("gw", port, &["*"]),
        virtual_service("vs", "gw", &["*"], &route),
        service_entry("a", "a.local", 80, &[a.port()]),
        service_entry("b", "b.local", 80, &[b.port()]),
    ])
}

/// Writes version `version` of a ConfigMap with one key, `gw.yaml`, into the volume at `dir`,
/// as the kubelet's atomic writer does: the data into a new `..VERSION` directory, a
/// `..data_tmp` symlink to it renamed over `..data`, the key's symlink made once, the old
/// version's directory removed.
fn configmap_update(dir: &Path, version: u32, yaml: &str) {
    let name = format!("..2026_12_07_00_00_0{version}.{version}");
    std::fs::create_dir(dir.join(&name)).unwrap();
    std::fs::write(dir.join(&name).join("gw.yaml"), yaml).unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::os::unix::fs::symlink(&name, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if std::fs::symlink_metadata(dir.join("gw.yaml")).is_err() {
        std::os::unix::fs::symlink("..data/gw.yaml", dir.join("gw.yaml")).unwrap();
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

/// Requests in a loop until told to stop (or 2,000 requests, the bound), on one keep-alive
/// connection and on a new connection each, alternately; each answer is (status, body).
struct Load {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(u16, String)>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut answers = Vec::new();
            let mut conn = Conn::open(addr);
            while !flag.load(Ordering::Relaxed) && answers.len() < 2000 {
                let r = if answers.len() % 2 == 0 { conn.get("/", "app") } else { client::get(addr, "app", "/") };
                answers.push((r.status, r.body_text()));
            }
            answers
        });
        Load { stop, thread }
    }

    fn finish(self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

both_drivers! {
    fn a_configmap_data_swap_reloads_within_a_second_with_no_failed_request(driver) {
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let volume = tempfile::tempdir().unwrap();
        configmap_update(volume.path(), 1, &config(port, "a.local", &a, &b));
        let gw = gateway!(driver).arg("--config").arg(volume.path().to_str().unwrap()).arg("--watch").start();
        assert_eq!(client::get(addr, "app", "/").body_text(), "a");

        let load = Load::start(addr);
        wait_until(Duration::from_secs(5), || a.count() > 20).expect("the load loop runs");
        configmap_update(volume.path(), 2, &config(port, "b.local", &a, &b));
        let swapped = Instant::now();
        let followed = wait_until(Duration::from_secs(5), || client::get(addr, "app", "/").body_text() == "b");
        let took = swapped.elapsed();
        let answers = load.finish();
        assert!(followed.is_some(), "the swap was never reloaded:\n{}", gw.logs());
        assert!(took < Duration::from_secs(1), "reloaded after {took:?}:\n{}", gw.logs());
        let failed: Vec<_> = answers.iter().filter(|(status, _)| *status != 200).collect();
        assert!(failed.is_empty(), "{} of {} requests failed: {failed:?}\n{}", failed.len(), answers.len(), gw.logs());
        assert!(answers.iter().any(|(_, body)| body == "a"));
        gw.wait_generation(2);
        assert!(gw.logs().contains("gw.yaml"), "the reload names what changed:\n{}", gw.logs());
    }

    fn plain_edits_of_a_config_file_and_the_proxy_config_reload(driver) {
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let outside = tempfile::tempdir().unwrap();
        let proxy = outside.path().join("proxy.yaml");
        let proxy_config = |disabled: bool| {
            format!(
                "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata:\n  name: gw\n\
                 spec:\n  httpsHttp2Disabled: {disabled}\n"
            )
        };
        std::fs::write(&proxy, proxy_config(false)).unwrap();
        let gw = gateway!(driver)
            .file("gw.yaml", &config(port, "a.local", &a, &b))
            .arg("--proxy-config")
            .arg(proxy.to_str().unwrap())
            .arg("--watch")
            .start();
        assert_eq!(client::get(addr, "app", "/").body_text(), "a");
        gw.write_config("gw.yaml", &config(port, "b.local", &a, &b));
        gw.wait_generation(2);
        assert_eq!(client::get(addr, "app", "/").body_text(), "b");

        // An invalid edit is refused once; the config serving stays, and is not asked again.
        gw.write_config("gw.yaml", "apiVersion: networking.istio.io/v1\nkind: Gateway\nspec: [\n");
        wait_until(Duration::from_secs(5), || gw.logs().contains("reload failed")).expect("the bad edit was judged");
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(gw.logs().matches("reload failed").count(), 1, "{}", gw.logs());
        assert_eq!(client::get(addr, "app", "/").body_text(), "b");

        gw.write_config("gw.yaml", &config(port, "b.local", &a, &b));
        gw.wait_generation(3);
        std::fs::write(&proxy, proxy_config(true)).unwrap();
        gw.wait_generation(4);
    }
}
