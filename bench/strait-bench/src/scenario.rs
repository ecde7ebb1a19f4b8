//! `strait-bench scenario FILE`: starts the built-in backend, then each peer the file names
//! (Strait with a generated Istio config, Envoy, nginx, HAProxy where installed, or `direct`:
//! no proxy at all), pinned apart from the load; runs the load against each, interleaved over
//! several rounds; reads each proxy's CPU time and memory from /proc; prints one comparison.
//!
//! `model` is the file, `peers` the processes and their configs, `load` one load run, `procfs`
//! what the kernel says a proxy used, `table` the medians and the output.

mod load;
mod model;
mod peers;
mod procfs;
mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{Cpus, ScenarioArgs};
use crate::error::BenchError;
use model::{BackendKind, Mode, PeerName, Placement, Point, Rate, Scenario};
use peers::{Probe, Setup, Spawned, TlsFiles};
use procfs::Memory;
use table::{Command, Measure, Phase, Run, Summary};

/// How long a proxy (or the backend) may take to answer after it starts.
const READY_WITHIN: Duration = Duration::from_secs(15);

pub fn run(args: &ScenarioArgs) -> Result<(), BenchError> {
    let file = &args.file;
    let scenario_error = |msg: String| BenchError::Scenario { file: file.clone(), msg };
    let mut s = Scenario::load(file)?;
    if let Some(rounds) = args.rounds {
        s.rounds = rounds;
    }
    if let Some(duration) = args.duration {
        s.duration = duration;
    }
    if let Some(names) = &args.peers {
        s.peers = names
            .iter()
            .map(|n| n.parse())
            .collect::<Result<_, _>>()
            .map_err(|e| BenchError::Usage(format!("--peers: {e}")))?;
    }
    s.check().map_err(|e| BenchError::Usage(format!("with the overrides given: {e}")))?;
    let usable: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    let place = s.cpus.resolve(&usable).map_err(scenario_error)?;
    peers::pin_self(&place.load).map_err(BenchError::io("pinning the scenario to cpus.load"))?;

    let exe = std::env::current_exe().map_err(BenchError::io("finding this executable"))?;
    let work = WorkDir::new(args.work_dir.as_deref())?;
    let mut notes = Vec::new();
    let mut lineup = Vec::new();
    for &peer in &s.peers {
        match program(peer, args.strait.as_deref(), &exe) {
            Ok(p) => lineup.push((peer, p)),
            Err(note) => notes.push(note),
        }
    }
    let tls = match s.load.mode.is_tls() {
        true => {
            Some(TlsFiles::create(&work.path).map_err(|msg| BenchError::Process { name: "certificate".into(), msg })?)
        }
        false => None,
    };

    let mut commands = Vec::new();
    let backend_port = peers::free_port().map_err(BenchError::Usage)?;
    let mut backend = start_backend(&s, s.backend_kind(), &exe, &work.path, &place, backend_port, None)?;
    commands.push(Command { what: "backend".into(), command: backend.command.clone() });
    // nginx proxies HTTP/2 to HTTP/1.1 upstreams only (gRPC aside, which `grpc_pass` speaks):
    // its h2 runs get an HTTP/1.1 backend that answers alike.
    let h1_backend = match s.load.mode == Mode::H2 && s.peers.contains(&PeerName::Nginx) {
        true => {
            let port = peers::free_port().map_err(BenchError::Usage)?;
            let b = start_backend(&s, BackendKind::Http, &exe, &work.path, &place, port, None)?;
            commands.push(Command { what: "backend (nginx, HTTP/1.1)".into(), command: b.command.clone() });
            Some((b, port))
        }
        false => None,
    };
    // The direct TLS run needs a backend that terminates TLS itself; the proxies get plain HTTP.
    let tls_backend = match &tls {
        Some(t) if s.peers.contains(&PeerName::Direct) => {
            let port = peers::free_port().map_err(BenchError::Usage)?;
            let b = start_backend(&s, s.backend_kind(), &exe, &work.path, &place, port, Some(t))?;
            commands.push(Command { what: "backend (direct TLS)".into(), command: b.command.clone() });
            Some((b, port))
        }
        _ => None,
    };

    let host = peers::load_host(s.proxy.virtual_hosts);
    let plan = load::Plan {
        exe: exe.clone(),
        mode: s.load.mode,
        threads: s.load.threads,
        timeout: s.load.timeout,
        cpus: place.load.clone(),
        path: s.load.path.clone().unwrap_or_else(|| "/".into()),
        headers: host.iter().map(|h| format!("Host: {h}")).chain(s.load.headers.iter().cloned()).collect(),
        pipeline: s.load.pipeline,
        size: s.load.size,
    };
    let setup = Setup {
        mode: s.load.mode,
        workers: s.proxy.workers,
        virtual_hosts: s.proxy.virtual_hosts,
        backend_port,
        h1_backend_port: h1_backend.as_ref().map(|(_, port)| *port),
        tls: tls.as_ref(),
        strait_args: &s.strait.args,
    };
    let probe = match s.load.mode {
        Mode::Http => {
            Probe::Http { host: host.clone().unwrap_or_else(|| "bench.local".into()), path: plan.path.clone() }
        }
        _ => Probe::Accepts,
    };
    let phases = match s.load.rate {
        None => vec![Phase::Closed],
        Some(Rate::Percent(_)) => vec![Phase::Closed, Phase::Open],
        Some(Rate::PerSecond(_)) => vec![Phase::Open],
    };

    let points = s.points();
    let per_run = s.warmup + s.duration + Duration::from_millis(500);
    let runs_per_round = lineup.len() * points.len() * phases.len();
    eprintln!(
        "{}: peers {}; {} round(s) of {} run(s), about {:.0} s",
        s.name,
        lineup.iter().map(|(p, _)| p.name()).collect::<Vec<_>>().join(", "),
        s.rounds,
        runs_per_round,
        per_run.as_secs_f64() * (runs_per_round * s.rounds as usize) as f64,
    );
    let mut runs = Vec::new();
    for round in 0..s.rounds as usize {
        // Rotated each round, so that no peer always runs first (or just after another).
        let shift = round % lineup.len().max(1);
        let order = lineup[shift..].iter().chain(&lineup[..shift]);
        for (peer, program) in order {
            let tag = format!("[round {}/{}] {peer}", round + 1, s.rounds);
            // A fresh proxy each round: nothing one round left behind (pooled upstream
            // connections, a grown heap) carries into the next; and one proxy at a time, so
            // idle peers do not share the proxy's CPU.
            let started = match peer {
                PeerName::Direct => {
                    let addr = match &tls_backend {
                        Some((_, port)) => local(*port),
                        None => local(backend_port),
                    };
                    Ok((None, addr))
                }
                _ => start_proxy(*peer, program, &setup, &work.path, &place.proxy, &probe),
            };
            let (mut proxy, addr) = match started {
                Ok(started) => started,
                Err(why) => {
                    eprintln!("{tag}: FAILED: {why}");
                    for &point in &points {
                        for &phase in &phases {
                            runs.push(Run { peer: *peer, point, phase, outcome: Err(why.clone()) });
                        }
                    }
                    continue;
                }
            };
            if let Some(p) = &proxy {
                upsert(&mut commands, peer.name().to_string(), p.command.clone());
            }
            for &point in &points {
                let c = point.connections;
                let at = match point.streams {
                    Some(streams) => format!("c={c} s={streams}"),
                    None => format!("c={c}"),
                };
                let mut saturated = None;
                for &phase in &phases {
                    let rate = match phase {
                        Phase::Closed => Ok(None),
                        Phase::Open => s.load.rate.and_then(|r| r.resolve(saturated)).map(Some).ok_or_else(|| {
                            "no saturated rate to take a share of: the closed-loop run failed".to_string()
                        }),
                    };
                    let outcome = rate.and_then(|rate| {
                        let load_args = plan.args(addr, point, s.duration, rate);
                        let what = format!("load {peer} {at}{}", if phase == Phase::Open { " open" } else { "" });
                        upsert(&mut commands, what, peers::shell_words(&exe, &load_args));
                        measure(&s, &plan, proxy.as_ref(), addr, point, rate, &load_args)
                    });
                    // A proxy that died says why better than the errors its load saw.
                    let outcome = match proxy.as_mut().and_then(Spawned::exited) {
                        Some(why) => Err(format!("{why} (by the end of this run)")),
                        None => outcome,
                    };
                    if let (Phase::Closed, Ok(m)) = (phase, &outcome) {
                        saturated = Some(m.ops_per_second);
                    }
                    eprintln!(
                        "{tag} {at} {}: {}",
                        if phase == Phase::Open { "open" } else { "closed" },
                        line(&outcome, s.load.mode)
                    );
                    runs.push(Run { peer: *peer, point, phase, outcome });
                }
            }
        }
        if let Some(why) = backend.exited() {
            return Err(BenchError::Process { name: "backend".into(), msg: why });
        }
    }

    let ran: Vec<PeerName> = lineup.iter().map(|(p, _)| *p).collect();
    let rows = table::rows(&runs, &ran, &points, &phases, s.load.mode);
    for r in rows.iter().filter(|r| r.rounds_failed > 0 && r.rounds_ok > 0) {
        notes.push(format!(
            "{} c={}{} {}: {} of {} rounds failed, the last: {}",
            r.peer,
            r.connections,
            r.streams.map(|s| format!(" s={s}")).unwrap_or_default(),
            r.phase,
            r.rounds_failed,
            r.rounds_failed + r.rounds_ok,
            r.failure.as_deref().unwrap_or("")
        ));
    }
    if args.work_dir.is_none() {
        notes.push("configs and logs were in a temporary folder; --work-dir DIR keeps them".into());
    }
    let summary = Summary {
        scenario: s.name.clone(),
        description: s.description.clone(),
        file: file.display().to_string(),
        mode: s.load.mode.name(),
        rounds: s.rounds,
        duration_s: s.duration.as_secs_f64(),
        warmup_s: s.warmup.as_secs_f64(),
        cpus: table::Cpus {
            proxy: peers::cpu_list(&place.proxy),
            backend: peers::cpu_list(&place.backend),
            load: peers::cpu_list(&place.load),
        },
        workers: s.proxy.workers,
        virtual_hosts: s.proxy.virtual_hosts,
        rows,
        notes,
        commands,
        rerun: rerun(args, &exe),
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary).expect("a summary serializes"));
    } else {
        print!("{}", summary.text(s.load.mode));
    }
    drop(tls_backend);
    drop(h1_backend);
    drop(backend);
    drop(work);
    Ok(())
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Where `peer`'s binary is, or a note saying it is skipped. `direct` needs none.
fn program(peer: PeerName, strait: Option<&Path>, exe: &Path) -> Result<PathBuf, String> {
    let found = match peer {
        PeerName::Direct => return Ok(PathBuf::new()),
        PeerName::Strait => {
            let path = strait.map(Path::to_path_buf).unwrap_or_else(|| exe.with_file_name("strait"));
            return match peers::is_executable(&path) {
                true => Ok(path),
                false => Err(format!(
                    "strait: skipped, no binary at {} (cargo build --release --bin strait, or --strait PATH)",
                    path.display()
                )),
            };
        }
        other => peers::find_program(other.name(), &roots(exe)),
    };
    found.ok_or_else(|| format!("{peer}: skipped, not installed (perf/install-peers.sh installs it)"))
}

/// Folders whose `perf/.tools` may hold peers: the current one and the project this binary
/// was built in.
fn roots(exe: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Some(project) = exe.ancestors().find(|d| d.join("Cargo.toml").is_file()) {
        if !roots.iter().any(|r| r == project) {
            roots.push(project.to_path_buf());
        }
    }
    roots
}

/// `strait-bench serve KIND …` on the backend CPUs, ready to answer; with `tls`, terminating it.
fn start_backend(
    s: &Scenario,
    kind: BackendKind,
    exe: &Path,
    work: &Path,
    place: &Placement,
    port: u16,
    tls: Option<&TlsFiles>,
) -> Result<Spawned, BenchError> {
    let mut args = vec!["serve".to_string(), kind.name().to_string()];
    if matches!(kind, BackendKind::Http | BackendKind::H2) {
        args.extend(["--size".into(), s.backend.size.to_string()]);
    }
    if let Some(t) = tls {
        args.extend([
            "--tls-cert".into(),
            t.cert.display().to_string(),
            "--tls-key".into(),
            t.key.display().to_string(),
        ]);
    }
    args.extend([
        "--listen".into(),
        local(port).to_string(),
        "-t".into(),
        s.backend.threads.to_string(),
        "--cpus".into(),
        peers::cpu_list(&place.backend),
    ]);
    let name = match (tls, kind) {
        (Some(_), _) => "backend-tls",
        (None, BackendKind::Http) if s.load.mode == Mode::H2 => "backend-h1",
        _ => "backend",
    };
    let fail = |msg: String| BenchError::Process { name: name.into(), msg };
    let mut backend =
        Spawned::start(name, exe, &args, &place.backend, work.join(format!("{name}.log"))).map_err(fail)?;
    let probe = match kind {
        BackendKind::Http if tls.is_none() => {
            Probe::Http { host: "bench.local".into(), path: s.load.path.clone().unwrap_or_else(|| "/".into()) }
        }
        _ => Probe::Accepts,
    };
    backend.wait_ready(local(port), &probe, READY_WITHIN).map_err(fail)?;
    Ok(backend)
}

/// Writes `peer`'s config, starts it on the proxy CPUs and waits until the path through it works.
fn start_proxy(
    peer: PeerName,
    program: &Path,
    setup: &Setup,
    work: &Path,
    cpus: &Cpus,
    probe: &Probe,
) -> Result<(Option<Spawned>, SocketAddr), String> {
    let dir = work.join(peer.name());
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let port = peers::free_port()?;
    let args = peers::proxy_args(peer, setup, &dir, port)?;
    let mut proxy = Spawned::start(peer.name(), program, &args, cpus, dir.join("log"))?;
    proxy.wait_ready(local(port), probe, READY_WITHIN)?;
    Ok((Some(proxy), local(port)))
}

/// One measured run: a discarded warm-up, then the load with the proxy's CPU time read before
/// and after and its memory sampled throughout.
fn measure(
    s: &Scenario,
    plan: &load::Plan,
    proxy: Option<&Spawned>,
    addr: SocketAddr,
    point: Point,
    rate: Option<f64>,
    args: &[String],
) -> Result<Measure, String> {
    // A separate run, so the CPU counted below matches the operations the report counts.
    if !s.warmup.is_zero() {
        plan.run(&plan.args(addr, point, s.warmup, rate), s.warmup, || {})?;
    }
    let cpu = || proxy.map(|p| procfs::cpu_seconds(&procfs::tree(p.pid())));
    let memory = || proxy.map(|p| procfs::memory(&procfs::tree(p.pid())));
    let before = cpu();
    let mut peak: Option<Memory> = None;
    let mut sample = || peak = memory().map(|m| peak.unwrap_or_default().max(m));
    let report = plan.run(args, s.duration, &mut sample)?;
    let after = cpu();
    sample();
    let used = before.zip(after).map(|(b, a)| a - b);
    Measure::new(&report, s.load.mode, used, peak, rate)
}

/// A run's progress line.
fn line(outcome: &Result<Measure, String>, mode: Mode) -> String {
    let m = match outcome {
        Ok(m) => m,
        Err(why) => return format!("FAILED: {why}"),
    };
    let mut out = match mode {
        Mode::TcpThroughput => format!("{:.2} Gbit/s", m.bytes_per_second * 8.0 / 1e9),
        _ => format!("{}/s", table::thousands(m.ops_per_second)),
    };
    if let Some((p50, p99)) = m.p50_us.zip(m.p99_us) {
        out += &format!(" p50 {} p99 {}", crate::report::human_us(p50), crate::report::human_us(p99));
    }
    let cpu = match mode {
        Mode::TcpThroughput => m.cpu_s_per_gb().map(|c| format!(" CPU {c:.3} s/GB")),
        _ => m.cpu_us_per_op().map(|c| format!(" CPU {c:.2} µs/op")),
    };
    out += &cpu.unwrap_or_default();
    if let Some(mem) = m.memory {
        out += &format!(" PSS {:.1} MiB", mem.pss_kib as f64 / 1024.0);
    }
    if m.errors > 0 {
        out += &format!(" errors {}", m.errors);
    }
    out
}

fn upsert(commands: &mut Vec<Command>, what: String, command: String) {
    match commands.iter_mut().find(|c| c.what == what) {
        Some(c) => c.command = command,
        None => commands.push(Command { what, command }),
    }
}

/// The command line that runs this comparison again.
fn rerun(args: &ScenarioArgs, exe: &Path) -> String {
    let mut words = vec!["scenario".to_string(), args.file.display().to_string()];
    if let Some(p) = &args.strait {
        words.extend(["--strait".into(), p.display().to_string()]);
    }
    if let Some(p) = &args.peers {
        words.extend(["--peers".into(), p.join(",")]);
    }
    if let Some(r) = args.rounds {
        words.extend(["--rounds".into(), r.to_string()]);
    }
    if let Some(d) = args.duration {
        words.extend(["--duration".into(), humantime::format_duration(d).to_string()]);
    }
    peers::shell_words(exe, &words)
}

/// Where configs, certificates and logs go: `--work-dir`, kept; or a temporary folder,
/// removed at the end.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn new(given: Option<&Path>) -> Result<WorkDir, BenchError> {
        let (path, keep) = match given {
            Some(p) => (p.to_path_buf(), true),
            None => {
                let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let name = format!("strait-bench-scenario-{}-{}", std::process::id(), nanos.as_nanos());
                (std::env::temp_dir().join(name), false)
            }
        };
        std::fs::create_dir_all(&path).map_err(BenchError::io(format!("creating {}", path.display())))?;
        // Absolute, since nginx takes it as its prefix and every generated config names files in it.
        let path = path.canonicalize().map_err(BenchError::io(format!("resolving {}", path.display())))?;
        Ok(WorkDir { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
