//! The processes a scenario starts: the backend and each proxy, pinned to their CPUs, logged to
//! the work directory and stopped when dropped; where each proxy's binary is; the config each
//! one is started with, rendered from the templates beside this file.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::model::{Mode, PeerName};
use super::procfs;
use crate::cli::Cpus;

/// A process this scenario started, stopped (with every descendant) when dropped.
pub struct Spawned {
    name: String,
    child: Child,
    log: PathBuf,
    /// The command line, for the report.
    pub command: String,
}

impl Spawned {
    /// Starts `program args` on `cpus`, stdout and stderr appended to `log`.
    pub fn start(name: &str, program: &Path, args: &[String], cpus: &Cpus, log: PathBuf) -> Result<Spawned, String> {
        let out =
            File::options().create(true).append(true).open(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        pin(&mut cmd, cpus);
        let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let command = format!("taskset -c {} {}", cpu_list(cpus), shell_words(program, args));
        Ok(Spawned { name: name.to_string(), child, log, command })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Why the process is no longer running, if it is not.
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        Some(format!("{} {status}{}", self.name, self.log_tail()))
    }

    /// `: LAST LOG LINE`, or nothing for an empty log.
    pub fn log_tail(&self) -> String {
        self.log_line(|_| true)
    }

    /// `: LINE` for the last log line that `pick`s, else the last line.
    fn log_line(&self, pick: impl Fn(&str) -> bool) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines = || text.lines().rev().map(str::trim).filter(|l| !l.is_empty());
        lines().find(|l| pick(l)).or_else(|| lines().next()).map(|l| format!(": {l}")).unwrap_or_default()
    }

    /// Waits until `probe` succeeds on `addr`, the process exits, or `within` passes.
    pub fn wait_ready(&mut self, addr: SocketAddr, probe: &Probe, within: Duration) -> Result<(), String> {
        let until = Instant::now() + within;
        loop {
            if let Some(why) = self.exited() {
                return Err(why);
            }
            let last = match probe.check(addr) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= until {
                // What the log says about the port explains most refusals (Strait: "port N
                // (TLS) not served yet").
                let port = addr.port().to_string();
                let why = self.log_line(|l| l.contains(&port));
                return Err(format!("{} not ready on {addr} after {within:?} ({last}){why}", self.name));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Spawned {
    /// SIGTERM first, so a proxy shuts down as it would in production; SIGKILL after 5 s; then
    /// any descendant that outlived it (by the pids seen before, so nothing else is touched).
    fn drop(&mut self) {
        let family = procfs::tree(self.child.id());
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signals our own child, which has not been waited for, so its pid is ours.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let until = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for pid in family.into_iter().skip(1) {
            if Path::new(&format!("/proc/{pid}")).exists() {
                // SAFETY: a descendant of our child, seen a moment ago.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

/// Runs `cmd` on `cpus`, and has the kernel kill it if this process dies first (a run stopped
/// by SIGKILL or a test timeout leaves no proxy behind).
pub fn pin(cmd: &mut Command, cpus: &Cpus) {
    let set = cpu_set(cpus);
    // SAFETY: between fork and exec only async-signal-safe system calls run.
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Pins the scenario's own thread, which only waits and samples, off the proxy's CPUs.
pub fn pin_self(cpus: &Cpus) -> io::Result<()> {
    let set = cpu_set(cpus);
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn cpu_set(cpus: &Cpus) -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET sets one bit within it (the model
    // only lets through CPUs this process may use, all below CPU_SETSIZE).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in &cpus.0 {
            libc::CPU_SET(cpu, &mut set);
        }
        set
    }
}

/// `2,3` as the command lines take it.
pub fn cpu_list(cpus: &Cpus) -> String {
    cpus.0.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// A command line as a shell would take it back.
pub fn shell_words(program: &Path, args: &[String]) -> String {
    let quote = |s: &str| {
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%".contains(c)) {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(program.display().to_string()).chain(args.iter().map(|a| quote(a))).collect::<Vec<_>>().join(" ")
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

/// How a process shows it is ready.
pub enum Probe {
    /// It accepts connections (TCP backends, TLS listeners).
    Accepts,
    /// `GET path` with `Host: host` gets a 200: the whole path to the backend works.
    Http { host: String, path: String },
}

impl Probe {
    fn check(&self, addr: SocketAddr) -> Result<(), String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
        let Probe::Http { host, path } = self else { return Ok(()) };
        stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).map_err(|e| format!("no answer: {e}"))?;
        let head = String::from_utf8_lossy(&head);
        if head.starts_with("HTTP/1.") && head.ends_with(" 200") {
            Ok(())
        } else {
            Err(format!("answered `{head}`"))
        }
    }
}

/// Where a peer's binary is: on PATH (and the sbin folders Debian installs nginx and HAProxy
/// in), then in `perf/.tools/` and `../shared/bench-peers/.tools/` of each root given.
pub fn find_program(name: &str, roots: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .chain(roots.iter().flat_map(|r| [r.join("perf/.tools"), r.join("../shared/bench-peers/.tools")]))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .map(|p| p.canonicalize().unwrap_or(p))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The throwaway certificate TLS scenarios terminate with: the PEM chain, the key, and both in
/// one file as HAProxy takes them.
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_and_key: PathBuf,
}

impl TlsFiles {
    pub fn create(dir: &Path) -> Result<TlsFiles, String> {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let made = rcgen::generate_simple_self_signed(names).map_err(|e| format!("making a certificate: {e}"))?;
        let (cert, key) = (made.cert.pem(), made.key_pair.serialize_pem());
        let files =
            TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem"), cert_and_key: dir.join("cert-key.pem") };
        for (path, text) in [(&files.cert, cert.clone()), (&files.key, key.clone()), (&files.cert_and_key, cert + &key)]
        {
            fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(files)
    }
}

/// What every proxy's config is made from.
pub struct Setup<'a> {
    pub mode: Mode,
    pub workers: usize,
    pub virtual_hosts: usize,
    pub backend_port: u16,
    /// h2 mode: an HTTP/1.1 backend answering as the HTTP/2 one, for nginx, which proxies to
    /// HTTP/1.1 only (`grpc_pass` aside).
    pub h1_backend_port: Option<u16>,
    pub tls: Option<&'a TlsFiles>,
    pub strait_args: &'a [String],
}

/// The host the load asks for: with many virtual hosts the last one, which a proxy that tries
/// them in order finds last.
pub fn load_host(virtual_hosts: usize) -> Option<String> {
    (virtual_hosts > 1).then(|| host(virtual_hosts - 1))
}

fn host(i: usize) -> String {
    format!("vs-{i}.bench.local")
}

/// Writes `peer`'s config for `port` into `dir` and returns the arguments to start it with
/// (none for `direct`, which starts nothing).
pub fn proxy_args(peer: PeerName, setup: &Setup, dir: &Path, port: u16) -> Result<Vec<String>, String> {
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok::<String, String>(path.display().to_string())
    };
    let (port, backend, workers, dir_s) =
        (port.to_string(), setup.backend_port.to_string(), setup.workers.to_string(), dir.display().to_string());
    let tls = setup.tls.filter(|_| setup.mode.is_tls());
    let (cert, key, cert_and_key) = match tls {
        Some(t) => (t.cert.display().to_string(), t.key.display().to_string(), t.cert_and_key.display().to_string()),
        None => Default::default(),
    };
    let common = [
        ("PROXY_PORT", port.as_str()),
        ("BACKEND_PORT", backend.as_str()),
        ("WORKERS", workers.as_str()),
        ("WORK_DIR", dir_s.as_str()),
        ("CERT", cert.as_str()),
        ("KEY", key.as_str()),
    ];
    let tcp = setup.mode.is_tcp();
    let h2 = setup.mode.is_h2();
    let n = setup.virtual_hosts;
    let hosts = |catch_all: &str| -> Vec<(String, String)> {
        if n == 1 {
            vec![("bench".to_string(), catch_all.to_string())]
        } else {
            (0..n).map(|i| (format!("vs-{i}"), host(i))).collect()
        }
    };
    Ok(match peer {
        PeerName::Direct => Vec::new(),
        PeerName::Strait => {
            let config = dir.join("config");
            fs::create_dir_all(&config).map_err(|e| format!("{}: {e}", config.display()))?;
            let file = |name: &str, text: String| write(&format!("config/{name}"), text);
            if tcp {
                file("tcp.yaml", render(templates::STRAIT_TCP, &common))?;
            } else {
                let gateway =
                    if tls.is_some() { templates::STRAIT_GATEWAY_HTTPS } else { templates::STRAIT_GATEWAY_HTTP };
                file("gateway.yaml", render(gateway, &common))?;
                // HTTP/2 upstreams where the mode is HTTP/2, as a ServiceEntry port's protocol
                // chooses them in Istio.
                let protocol = match setup.mode {
                    Mode::H2 => "HTTP2",
                    Mode::Grpc => "GRPC",
                    _ => "HTTP",
                };
                let vars = [("PROTOCOL", protocol)];
                file("serviceentry.yaml", render(templates::STRAIT_SERVICE_ENTRY, &[&common[..], &vars[..]].concat()))?;
                let routes: String = hosts("*")
                    .iter()
                    .map(|(name, host)| {
                        render(
                            templates::STRAIT_VIRTUAL_SERVICE,
                            &[("NAME", name), ("HOST", host), ("BACKEND_PORT", &backend)],
                        )
                    })
                    .collect();
                file("virtualservices.yaml", routes)?;
            }
            let admin = format!("127.0.0.1:{}", free_port()?);
            let mut args = vec!["run".to_string(), "--config".to_string(), config.display().to_string()];
            args.extend(["--workers".to_string(), workers, "--admin".to_string(), admin]);
            args.extend(setup.strait_args.iter().cloned());
            args
        }
        PeerName::Envoy => {
            let config = if tcp {
                render(templates::ENVOY_TCP, &common)
            } else {
                let hosts: String = hosts("*")
                    .iter()
                    .map(|(name, host)| render(templates::ENVOY_VIRTUAL_HOST, &[("NAME", name), ("HOST", host)]))
                    .collect();
                let socket = tls.map(|_| render(templates::ENVOY_TRANSPORT_SOCKET, &common)).unwrap_or_default();
                let (codec, upstream) = match h2 {
                    true => ("HTTP2", templates::ENVOY_UPSTREAM_H2),
                    false => ("HTTP1", ""),
                };
                let vars = [
                    ("VIRTUAL_HOSTS", hosts.trim_end()),
                    ("TRANSPORT_SOCKET", socket.trim_end()),
                    ("CODEC", codec),
                    ("UPSTREAM_PROTOCOL", upstream.trim_end()),
                ];
                render(templates::ENVOY_HTTP, &[&common[..], &vars[..]].concat())
            };
            let file = write("envoy.yaml", config)?;
            vec![
                "-c".to_string(),
                file,
                "--concurrency".to_string(),
                workers,
                "--log-level".to_string(),
                "warning".to_string(),
                "--disable-hot-restart".to_string(),
            ]
        }
        PeerName::Nginx => {
            let config = if tcp {
                render(templates::NGINX_TCP, &common)
            } else {
                let tmp = dir.join("tmp");
                fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
                // Listen options may be given once per address: on the first server.
                let first = match (tls.is_some(), h2) {
                    (true, _) => " default_server backlog=4096 ssl",
                    // h2c with prior knowledge (nginx 1.22: `http2` on a plain listen).
                    (false, true) => " default_server backlog=4096 http2",
                    (false, false) => " default_server backlog=4096",
                };
                let pass = match setup.mode {
                    Mode::Grpc => "grpc_pass grpc://backend_local",
                    _ => "proxy_pass http://backend_local",
                };
                let servers: String = hosts("_")
                    .iter()
                    .enumerate()
                    .map(|(i, (_, host))| {
                        let options = if i == 0 { first } else { "" };
                        render(
                            templates::NGINX_SERVER,
                            &[
                                ("PROXY_PORT", port.as_str()),
                                ("LISTEN_OPTIONS", options),
                                ("HOST", host),
                                ("PASS", pass),
                            ],
                        )
                    })
                    .collect();
                let tls_lines = tls.map(|_| render(templates::NGINX_TLS, &common)).unwrap_or_default();
                let upstream = setup.h1_backend_port.filter(|_| setup.mode == Mode::H2).unwrap_or(setup.backend_port);
                let upstream = upstream.to_string();
                let vars = [
                    ("SERVERS", servers.trim_end()),
                    ("TLS", tls_lines.trim_end()),
                    ("UPSTREAM_PORT", upstream.as_str()),
                ];
                render(templates::NGINX_HTTP, &[&common[..], &vars[..]].concat())
            };
            let file = write("nginx.conf", config)?;
            let error_log = dir.join("error.log").display().to_string();
            vec!["-p".to_string(), dir_s.clone(), "-e".to_string(), error_log, "-c".to_string(), file]
        }
        PeerName::Haproxy => {
            let config = if tcp {
                render(templates::HAPROXY_TCP, &common)
            } else {
                let route = if n == 1 {
                    "default_backend be_http".to_string()
                } else {
                    let map: String = (0..n).map(|i| format!("{} be_http\n", host(i))).collect();
                    let map = write("hosts.map", map)?;
                    format!("use_backend %[req.hdr(host),lower,map({map})]")
                };
                let bind = match (tls, h2) {
                    (Some(_), _) => format!(" ssl crt {cert_and_key} alpn http/1.1"),
                    (None, true) => " proto h2".to_string(),
                    (None, false) => String::new(),
                };
                let server = if h2 { " proto h2" } else { "" };
                let vars = [("ROUTE", route.as_str()), ("BIND_OPTIONS", bind.as_str()), ("SERVER_OPTIONS", server)];
                render(templates::HAPROXY_HTTP, &[&common[..], &vars[..]].concat())
            };
            let file = write("haproxy.cfg", config)?;
            vec!["-db".to_string(), "-f".to_string(), file]
        }
    })
}

/// The configs, embedded so the binary runs anywhere.
mod templates {
    pub const STRAIT_GATEWAY_HTTP: &str = include_str!("templates/strait/gateway-http.yaml");
    pub const STRAIT_GATEWAY_HTTPS: &str = include_str!("templates/strait/gateway-https.yaml");
    pub const STRAIT_SERVICE_ENTRY: &str = include_str!("templates/strait/serviceentry.yaml");
    pub const STRAIT_VIRTUAL_SERVICE: &str = include_str!("templates/strait/virtualservice.yaml");
    pub const STRAIT_TCP: &str = include_str!("templates/strait/tcp.yaml");
    pub const ENVOY_HTTP: &str = include_str!("templates/envoy/http.yaml");
    pub const ENVOY_VIRTUAL_HOST: &str = include_str!("templates/envoy/virtual-host.yaml");
    pub const ENVOY_TRANSPORT_SOCKET: &str = include_str!("templates/envoy/transport-socket.yaml");
    pub const ENVOY_UPSTREAM_H2: &str = include_str!("templates/envoy/upstream-h2.yaml");
    pub const ENVOY_TCP: &str = include_str!("templates/envoy/tcp.yaml");
    pub const NGINX_HTTP: &str = include_str!("templates/nginx/http.conf");
    pub const NGINX_SERVER: &str = include_str!("templates/nginx/server.conf");
    pub const NGINX_TLS: &str = include_str!("templates/nginx/tls.conf");
    pub const NGINX_TCP: &str = include_str!("templates/nginx/tcp.conf");
    pub const HAPROXY_HTTP: &str = include_str!("templates/haproxy/http.cfg");
    pub const HAPROXY_TCP: &str = include_str!("templates/haproxy/tcp.cfg");
}

/// Fills each `${NAME}` of `template` from `vars`. Names without a value are a bug in the
/// templates (the tests render every one), so they panic.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let len = rest[start..].find('}').expect("a template placeholder is closed");
        let name = &rest[start + 2..start + len];
        let value = vars.iter().find(|(k, _)| *k == name).unwrap_or_else(|| panic!("no value for ${{{name}}}"));
        out.push_str(value.1);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    fn setup(mode: Mode, virtual_hosts: usize, tls: Option<&TlsFiles>) -> Setup<'_> {
        Setup {
            mode,
            workers: 2,
            virtual_hosts,
            backend_port: 9001,
            h1_backend_port: Some(9002),
            tls,
            strait_args: &[],
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strait-bench-peers-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn render_fills_placeholders() {
        assert_eq!(render("a ${X} b ${Y}${X}", &[("X", "1"), ("Y", "2")]), "a 1 b 21");
        assert_eq!(render("no placeholders %[x]", &[]), "no placeholders %[x]");
    }

    /// Every template of every peer and mode renders without a placeholder left, and the YAML
    /// ones parse.
    #[test]
    fn every_config_renders() {
        let dir = scratch("render");
        let tls = TlsFiles::create(&dir).unwrap();
        let modes = [
            (Mode::Http, 1),
            (Mode::Http, 3),
            (Mode::TlsFull, 1),
            (Mode::TcpThroughput, 1),
            (Mode::H2, 1),
            (Mode::Grpc, 1),
        ];
        for (mode, hosts) in modes {
            for peer in PeerName::ALL {
                let peer_dir = dir.join(format!("{peer}-{}-{hosts}", mode.name()));
                fs::create_dir_all(&peer_dir).unwrap();
                let args = proxy_args(peer, &setup(mode, hosts, Some(&tls)), &peer_dir, 9000).unwrap();
                let mut files: Vec<PathBuf> = fs::read_dir(&peer_dir).unwrap().map(|e| e.unwrap().path()).collect();
                if peer == PeerName::Strait {
                    files = fs::read_dir(peer_dir.join("config")).unwrap().map(|e| e.unwrap().path()).collect();
                    assert!(args.contains(&"--workers".to_string()) && args.contains(&"2".to_string()), "{args:?}");
                }
                for file in files.iter().filter(|f| f.is_file()) {
                    let text = fs::read_to_string(file).unwrap();
                    assert!(!text.contains("${"), "{}: {text}", file.display());
                    let ports = text.contains("9000") || text.contains("9001");
                    assert!(ports || file.ends_with("hosts.map"), "{}", file.display());
                    if file.extension().is_some_and(|e| e == "yaml") {
                        for doc in serde_yaml::Deserializer::from_str(&text) {
                            serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                        }
                    }
                }
            }
        }
        let vs = fs::read_to_string(dir.join("strait-http-3/config/virtualservices.yaml")).unwrap();
        assert_eq!(vs.matches("kind: VirtualService").count(), 3);
        assert!(vs.contains("vs-2.bench.local"));
        let nginx = fs::read_to_string(dir.join("nginx-tls-full-1/nginx.conf")).unwrap();
        assert!(nginx.contains("default_server backlog=4096 ssl;") && nginx.contains("ssl_certificate "), "{nginx}");
        assert!(nginx.contains("ssl_protocols TLSv1.2 TLSv1.3;"), "every peer offers TLS 1.3: {nginx}");
        let envoy = fs::read_to_string(dir.join("envoy-tls-full-1/envoy.yaml")).unwrap();
        assert!(envoy.contains("DownstreamTlsContext"));
        // HTTP/2 both sides where the peer can; nginx h2 downstream, to HTTP/1.1 or by grpc_pass.
        let envoy = fs::read_to_string(dir.join("envoy-h2-1/envoy.yaml")).unwrap();
        assert!(envoy.contains("codec_type: HTTP2") && envoy.contains("http2_protocol_options"), "{envoy}");
        let nginx = fs::read_to_string(dir.join("nginx-h2-1/nginx.conf")).unwrap();
        assert!(nginx.contains("backlog=4096 http2;") && nginx.contains("127.0.0.1:9002;"), "{nginx}");
        let nginx = fs::read_to_string(dir.join("nginx-grpc-1/nginx.conf")).unwrap();
        assert!(nginx.contains("grpc_pass grpc://backend_local;") && nginx.contains("127.0.0.1:9001;"), "{nginx}");
        let haproxy = fs::read_to_string(dir.join("haproxy-grpc-1/haproxy.cfg")).unwrap();
        assert!(haproxy.contains("9000 proto h2") && haproxy.contains("9001 proto h2"), "{haproxy}");
        let strait = fs::read_to_string(dir.join("strait-grpc-1/config/serviceentry.yaml")).unwrap();
        assert!(strait.contains("protocol: GRPC"), "{strait}");
        let haproxy = fs::read_to_string(dir.join("haproxy-http-3/haproxy.cfg")).unwrap();
        assert!(haproxy.contains("map(") && dir.join("haproxy-http-3/hosts.map").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_host_is_the_last() {
        assert_eq!(load_host(1), None);
        assert_eq!(load_host(10_000).as_deref(), Some("vs-9999.bench.local"));
    }

    #[test]
    fn shell_words_quote_what_needs_it() {
        let args = ["-H".to_string(), "Host: a".to_string(), "--cpus".to_string(), "1,2".to_string()];
        assert_eq!(shell_words(Path::new("/bin/x"), &args), "/bin/x -H 'Host: a' --cpus 1,2");
    }

    #[test]
    fn a_spawned_process_is_stopped_on_drop() {
        let dir = scratch("spawn");
        let mut sleeper =
            Spawned::start("sleep", Path::new("sleep"), &["30".to_string()], &Cpus(vec![0]), dir.join("log")).unwrap();
        assert!(sleeper.exited().is_none());
        let pid = sleeper.pid();
        assert!(sleeper.command.starts_with("taskset -c 0 sleep 30"));
        drop(sleeper);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        let mut failing = Spawned::start(
            "false",
            Path::new("sh"),
            &["-c".into(), "echo oops; exit 3".into()],
            &Cpus(vec![0]),
            dir.join("f"),
        )
        .unwrap();
        let why =
            failing.wait_ready("127.0.0.1:1".parse().unwrap(), &Probe::Accepts, Duration::from_secs(5)).unwrap_err();
        assert!(why.contains("exit status: 3") && why.ends_with(": oops"), "{why}");
        let script = "echo 'port 1 (TLS) not served yet'; echo later; sleep 30";
        let mut deaf =
            Spawned::start("deaf", Path::new("sh"), &["-c".into(), script.into()], &Cpus(vec![0]), dir.join("d"))
                .unwrap();
        let why =
            deaf.wait_ready("127.0.0.1:1".parse().unwrap(), &Probe::Accepts, Duration::from_millis(300)).unwrap_err();
        assert!(why.starts_with("deaf not ready on 127.0.0.1:1 after 300ms ("), "{why}");
        assert!(why.ends_with("): port 1 (TLS) not served yet"), "{why}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
