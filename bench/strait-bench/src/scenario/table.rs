//! From runs to the comparison: one row per peer, load point (connections, and HTTP/2's
//! streams) and phase, each figure the median of the rounds that worked, printed as a table or
//! one JSON document.

use serde::Serialize;

use super::model::{Mode, PeerName, Point};
use super::procfs::Memory;
use crate::report::{human_us, Report};

/// A closed-loop run (as fast as the path goes) or an open-loop one (at a set rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Closed,
    Open,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Closed => "closed",
            Phase::Open => "open",
        }
    }
}

/// One load run of one peer in one round: its figures, or why there are none.
#[derive(Debug, Clone)]
pub struct Run {
    pub peer: PeerName,
    pub point: Point,
    pub phase: Phase,
    pub outcome: Result<Measure, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    pub operations: u64,
    pub ops_per_second: f64,
    pub bytes: u64,
    pub bytes_per_second: f64,
    /// Failures of every kind, answers outside 2xx and 3xx included.
    pub errors: u64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// The proxy's CPU time over the run (none for `direct`).
    pub cpu_seconds: Option<f64>,
    /// The proxy's largest memory seen during the run (none for `direct`).
    pub memory: Option<Memory>,
    /// The open loop's target rate.
    pub rate: Option<f64>,
}

impl Measure {
    /// A run's figures, or why it counts as failed: no operation that worked (for TCP
    /// throughput, no byte moved).
    pub fn new(
        report: &Report,
        mode: Mode,
        cpu_seconds: Option<f64>,
        memory: Option<Memory>,
        rate: Option<f64>,
    ) -> Result<Measure, String> {
        let worked = if mode == Mode::TcpThroughput { report.bytes > 0 } else { report.succeeded() > 0 };
        if !worked {
            let what = |m: &std::collections::BTreeMap<String, u64>| {
                m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
            };
            return Err(match (report.errors.is_empty(), report.statuses.is_empty()) {
                (true, _) => "nothing completed".to_string(),
                (false, true) => format!("every operation failed: {}", what(&report.errors)),
                (false, false) => {
                    format!("every operation failed: {} (answers {})", what(&report.errors), what(&report.statuses))
                }
            });
        }
        Ok(Measure {
            operations: report.operations,
            ops_per_second: report.operations_per_second,
            bytes: report.bytes,
            bytes_per_second: report.bytes_per_second,
            errors: report.errors.values().sum(),
            p50_us: report.latency_us.as_ref().map(|l| l.p50),
            p99_us: report.latency_us.as_ref().map(|l| l.p99),
            cpu_seconds,
            memory,
            rate,
        })
    }

    pub fn cpu_us_per_op(&self) -> Option<f64> {
        self.cpu_seconds.filter(|_| self.operations > 0).map(|s| s * 1e6 / self.operations as f64)
    }

    pub fn cpu_s_per_gb(&self) -> Option<f64> {
        self.cpu_seconds.filter(|_| self.bytes > 0).map(|s| s / (self.bytes as f64 / 1e9))
    }

    /// What a run is compared by in its mode: bytes for TCP throughput, operations otherwise.
    fn throughput(&self, mode: Mode) -> f64 {
        if mode == Mode::TcpThroughput {
            self.bytes_per_second
        } else {
            self.ops_per_second
        }
    }
}

/// The median of the values that exist; the mean of the middle two for an even count.
pub fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().flatten().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// One line of the comparison: medians over the rounds that worked.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub peer: String,
    pub connections: usize,
    /// HTTP/2: concurrent streams in all.
    pub streams: Option<usize>,
    /// `closed` or `open`.
    pub phase: &'static str,
    /// The open loop's target rate per second.
    pub rate: Option<f64>,
    pub ops_per_second: Option<f64>,
    pub gbit_per_second: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Proxy CPU time (user and system, every process and thread) per operation.
    pub cpu_us_per_op: Option<f64>,
    /// The same per gigabyte moved, TCP throughput's figure.
    pub cpu_s_per_gb: Option<f64>,
    pub rss_mib: Option<f64>,
    pub pss_mib: Option<f64>,
    /// Failed operations, summed over the rounds.
    pub errors: u64,
    /// Closed loop: throughput over direct's; open loop: p99 over direct's.
    pub vs_direct: Option<f64>,
    /// Strait's CPU per operation over this peer's (the other proxies' rows only): under 1,
    /// Strait spends less.
    pub strait_cpu_ratio: Option<f64>,
    pub rounds_ok: usize,
    pub rounds_failed: usize,
    /// Why the last failed round failed.
    pub failure: Option<String>,
}

/// The rows, in peer order, then load point, then phase.
pub fn rows(runs: &[Run], peers: &[PeerName], points: &[Point], phases: &[Phase], mode: Mode) -> Vec<Row> {
    let ok = |peer: PeerName, c: Point, phase: Phase| -> Vec<&Measure> {
        runs.iter()
            .filter(|r| r.peer == peer && r.point == c && r.phase == phase)
            .filter_map(|r| r.outcome.as_ref().ok())
            .collect()
    };
    let timed = mode != Mode::TcpThroughput;
    let cpu = |peer: PeerName, c: Point, phase: Phase| {
        median(ok(peer, c, phase).iter().map(|m| m.cpu_us_per_op())).filter(|_| timed)
    };
    let mut rows = Vec::new();
    for &peer in peers {
        for &c in points {
            for &phase in phases {
                let these: Vec<&Run> =
                    runs.iter().filter(|r| r.peer == peer && r.point == c && r.phase == phase).collect();
                if these.is_empty() {
                    continue;
                }
                let good = ok(peer, c, phase);
                let med = |f: &dyn Fn(&Measure) -> Option<f64>| median(good.iter().map(|m| f(m)));
                let mib = |f: fn(&Memory) -> u64| med(&|m: &Measure| m.memory.as_ref().map(|x| f(x) as f64 / 1024.0));
                let p99 = med(&|m| m.p99_us);
                let throughput = med(&|m| Some(m.throughput(mode)));
                let direct = ok(PeerName::Direct, c, phase);
                let vs_direct = match phase {
                    Phase::Closed => {
                        median(direct.iter().map(|m| Some(m.throughput(mode)))).zip(throughput).map(|(d, t)| t / d)
                    }
                    Phase::Open => median(direct.iter().map(|m| m.p99_us)).zip(p99).map(|(d, p)| p / d),
                }
                .filter(|r| r.is_finite() && peer != PeerName::Direct);
                let strait_cpu_ratio = match peer {
                    PeerName::Direct | PeerName::Strait => None,
                    _ => cpu(PeerName::Strait, c, phase).zip(cpu(peer, c, phase)).map(|(s, p)| s / p),
                }
                .filter(|r| r.is_finite());
                rows.push(Row {
                    peer: peer.name().to_string(),
                    connections: c.connections,
                    streams: c.streams,
                    phase: phase.name(),
                    rate: med(&|m| m.rate),
                    ops_per_second: med(&|m| Some(m.ops_per_second)).filter(|_| timed),
                    gbit_per_second: med(&|m| Some(m.bytes_per_second * 8.0 / 1e9)),
                    p50_us: med(&|m| m.p50_us),
                    p99_us: p99,
                    cpu_us_per_op: cpu(peer, c, phase),
                    cpu_s_per_gb: med(&|m| m.cpu_s_per_gb()),
                    rss_mib: mib(|m| m.rss_kib),
                    pss_mib: mib(|m| m.pss_kib),
                    errors: good.iter().map(|m| m.errors).sum(),
                    vs_direct,
                    strait_cpu_ratio,
                    rounds_ok: good.len(),
                    rounds_failed: these.len() - good.len(),
                    failure: these.iter().rev().find_map(|r| r.outcome.as_ref().err().cloned()),
                });
            }
        }
    }
    rows
}

/// A command line the scenario ran, for reproducing a figure by hand.
#[derive(Debug, Clone, Serialize)]
pub struct Command {
    pub what: String,
    pub command: String,
}

/// The whole comparison, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub description: String,
    pub file: String,
    pub mode: &'static str,
    pub rounds: u32,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub cpus: Cpus,
    pub workers: usize,
    pub virtual_hosts: usize,
    pub rows: Vec<Row>,
    /// Peers skipped and rounds that failed.
    pub notes: Vec<String>,
    /// The last round's command lines.
    pub commands: Vec<Command>,
    /// This comparison again.
    pub rerun: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cpus {
    pub proxy: String,
    pub backend: String,
    pub load: String,
}

impl Summary {
    pub fn text(&self, mode: Mode) -> String {
        let mut out = self.scenario.clone();
        if !self.description.is_empty() {
            out += &format!(" — {}", self.description.trim());
        }
        out += &format!(
            "\n{} · {} round{} of {} s (+{} s warm-up) · proxy on CPU {}, backend on CPU {}, load on CPU {} · \
             {} proxy worker{}{} · medians across rounds\n\n",
            self.mode,
            self.rounds,
            plural(self.rounds as usize),
            self.duration_s,
            self.warmup_s,
            self.cpus.proxy,
            self.cpus.backend,
            self.cpus.load,
            self.workers,
            plural(self.workers),
            if self.virtual_hosts > 1 { format!(" · {} virtual hosts", self.virtual_hosts) } else { String::new() },
        );
        let open = self.rows.iter().any(|r| r.phase == "open");
        let bulk = mode == Mode::TcpThroughput;
        let streams = self.rows.iter().any(|r| r.streams.is_some());
        let mut header = vec!["peer", "conns"];
        if streams {
            header.push("streams");
        }
        if open {
            header.push("run");
        }
        header.extend([
            throughput_unit(mode),
            "vs direct",
            "p50",
            "p99",
            if bulk { "CPU s/GB" } else { cpu_unit(mode) },
        ]);
        if !bulk {
            header.push("strait/this CPU");
        }
        header.extend(["RSS MiB", "PSS MiB", "errors"]);
        let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        let mut failed = Vec::new();
        for r in &self.rows {
            let mut cells = vec![r.peer.clone(), r.connections.to_string()];
            if streams {
                cells.push(r.streams.map(|s| s.to_string()).unwrap_or_default());
            }
            if open {
                cells.push(match r.rate {
                    Some(rate) if r.phase == "open" => format!("open {}/s", thousands(rate)),
                    _ => r.phase.to_string(),
                });
            }
            if r.rounds_ok == 0 {
                failed.push(lines.len());
                cells.push(format!("FAILED: {}", r.failure.as_deref().unwrap_or("no run")));
                lines.push(cells);
                continue;
            }
            let dash = || "–".to_string();
            let throughput =
                if bulk { r.gbit_per_second.map(|g| format!("{g:.2}")) } else { r.ops_per_second.map(thousands) };
            let vs = r.vs_direct.map(|v| format!("{v:.2}{}", if r.phase == "open" { " p99" } else { "" }));
            let cpu = if bulk {
                r.cpu_s_per_gb.map(|c| format!("{c:.3}"))
            } else {
                r.cpu_us_per_op.map(|c| format!("{c:.2}"))
            };
            cells.extend([
                throughput.unwrap_or_else(dash),
                vs.unwrap_or_else(dash),
                r.p50_us.map(human_us).unwrap_or_else(dash),
                r.p99_us.map(human_us).unwrap_or_else(dash),
                cpu.unwrap_or_else(dash),
            ]);
            if !bulk {
                cells.push(r.strait_cpu_ratio.map(|v| format!("{v:.2}")).unwrap_or_else(dash));
            }
            cells.extend([
                r.rss_mib.map(|m| format!("{m:.1}")).unwrap_or_else(dash),
                r.pss_mib.map(|m| format!("{m:.1}")).unwrap_or_else(dash),
                r.errors.to_string(),
            ]);
            lines.push(cells);
        }
        let columns = lines[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                lines
                    .iter()
                    .enumerate()
                    .filter(|(n, l)| !failed.contains(n) || i + 1 < l.len())
                    .filter_map(|(_, l)| l.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (n, cells) in lines.iter().enumerate() {
            let line: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| match i {
                    _ if failed.contains(&n) && i + 1 == cells.len() => c.clone(),
                    0 => format!("{c:<w$}", w = widths[i]),
                    _ if open && i == 2 + usize::from(streams) => format!("{c:<w$}", w = widths[i]),
                    _ => format!("{c:>w$}", w = widths[i]),
                })
                .collect();
            out += line.join("  ").trim_end();
            out.push('\n');
        }
        out += &format!(
            "\n{} and p50/p99 as the load measured them; CPU is the proxy's user+system time over the run (every \
             process and thread, from /proc) divided by the {}; RSS and PSS the most seen during the run; vs direct \
             is {} over the run with no proxy{}.\n",
            throughput_unit(mode),
            if bulk { "gigabytes moved" } else { "operations" },
            if open { "throughput (closed loop) or p99 (open loop)" } else { "throughput" },
            if bulk { "" } else { "; strait/this CPU is Strait's median CPU per operation over this peer's" },
        );
        if !self.notes.is_empty() {
            out += "\nnotes:\n";
            for n in &self.notes {
                out += &format!("  {n}\n");
            }
        }
        out += "\ncommands (last round):\n";
        for c in &self.commands {
            out += &format!("  {}: {}\n", c.what, c.command);
        }
        out += &format!("  this comparison: {}\n", self.rerun);
        out
    }
}

fn throughput_unit(mode: Mode) -> &'static str {
    match mode {
        Mode::Http | Mode::TlsRequests | Mode::H2 => "req/s",
        Mode::Grpc => "calls/s",
        Mode::TcpThroughput => "Gbit/s",
        Mode::TcpEcho => "echoes/s",
        Mode::TlsFull | Mode::TlsResumed => "handshakes/s",
    }
}

fn cpu_unit(mode: Mode) -> &'static str {
    match mode {
        Mode::Http | Mode::TlsRequests | Mode::H2 => "CPU µs/req",
        Mode::Grpc => "CPU µs/call",
        Mode::TcpEcho => "CPU µs/echo",
        _ => "CPU µs/handshake",
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// 41,234.
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::Latency;

    fn report(ops: u64, status_errors: u64) -> Report {
        Report {
            mode: "http".into(),
            target: "http://127.0.0.1:1/".into(),
            connections: 16,
            streams: None,
            threads: 1,
            rate: None,
            seconds: 2.0,
            operations: ops,
            operations_per_second: ops as f64 / 2.0,
            bytes: ops * 100,
            bytes_per_second: ops as f64 * 50.0,
            errors: if status_errors > 0 {
                BTreeMap::from([("status".into(), status_errors)])
            } else {
                BTreeMap::new()
            },
            statuses: BTreeMap::from([("2xx".into(), ops - status_errors)]),
            latency_us: Some(Latency { p50: 100.0, p90: 150.0, p99: 300.0, p999: 500.0, max: 900.0, mean: 110.0 }),
            resumed: None,
        }
    }

    fn run(peer: PeerName, ops: u64, cpu: Option<f64>) -> Run {
        let memory = cpu.map(|_| Memory { rss_kib: 10240, pss_kib: 5120 });
        Run {
            peer,
            point: Point { connections: 16, streams: None },
            phase: Phase::Closed,
            outcome: Measure::new(&report(ops, 0), Mode::Http, cpu, memory, None),
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median([Some(3.0), None, Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median([Some(4.0), Some(1.0)]), Some(2.5));
        assert_eq!(median([None, Some(f64::NAN)]), None);
        assert_eq!(median([]), None);
    }

    #[test]
    fn all_errors_is_a_failure() {
        let err = Measure::new(&report(10, 10), Mode::Http, None, None, None).unwrap_err();
        assert_eq!(err, "every operation failed: status 10 (answers 2xx 0)");
        assert_eq!(Measure::new(&report(0, 0), Mode::Http, None, None, None).unwrap_err(), "nothing completed");
        let m = Measure::new(&report(10, 3), Mode::Http, Some(0.001), None, None).unwrap();
        assert_eq!(m.errors, 3);
        assert_eq!(m.cpu_us_per_op(), Some(100.0));
    }

    #[test]
    fn rows_take_medians_and_compare_to_direct() {
        let mut runs = vec![
            run(PeerName::Direct, 40_000, None),
            run(PeerName::Direct, 60_000, None),
            run(PeerName::Direct, 50_000, None),
            run(PeerName::Strait, 20_000, Some(0.2)),
            run(PeerName::Strait, 30_000, Some(0.3)),
        ];
        runs.push(Run { outcome: Err("exit status: 1".into()), ..run(PeerName::Strait, 1, None) });
        runs.push(Run { outcome: Err("not ready".into()), ..run(PeerName::Nginx, 1, None) });
        runs.push(run(PeerName::Envoy, 10_000, Some(0.4)));
        let peers = [PeerName::Direct, PeerName::Strait, PeerName::Nginx, PeerName::Envoy];
        let rows = rows(&runs, &peers, &[Point { connections: 16, streams: None }], &[Phase::Closed], Mode::Http);
        assert_eq!(rows.len(), 4);
        let (direct, strait, nginx, envoy) = (&rows[0], &rows[1], &rows[2], &rows[3]);
        assert_eq!(direct.ops_per_second, Some(25_000.0));
        assert_eq!(direct.vs_direct, None);
        assert_eq!(direct.cpu_us_per_op, None);
        assert_eq!(strait.ops_per_second, Some(12_500.0));
        assert_eq!(strait.vs_direct, Some(0.5));
        assert_eq!(strait.cpu_us_per_op, Some(10.0));
        assert_eq!(strait.rss_mib, Some(10.0));
        assert_eq!((strait.rounds_ok, strait.rounds_failed), (2, 1));
        assert_eq!(nginx.rounds_ok, 0);
        assert_eq!(nginx.failure.as_deref(), Some("not ready"));
        // Strait's 10 µs over Envoy's 40: the ratio the bar reads (≤ 0.5 of Envoy's).
        assert_eq!((strait.strait_cpu_ratio, envoy.strait_cpu_ratio), (None, Some(0.25)));
        let summary = Summary {
            scenario: "t".into(),
            description: String::new(),
            file: "t.yaml".into(),
            mode: "http",
            rounds: 3,
            duration_s: 2.0,
            warmup_s: 0.0,
            cpus: Cpus { proxy: "0".into(), backend: "1".into(), load: "1".into() },
            workers: 1,
            virtual_hosts: 1,
            rows,
            notes: vec!["envoy: skipped".into()],
            commands: Vec::new(),
            rerun: "strait-bench scenario t.yaml".into(),
        };
        let text = summary.text(Mode::Http);
        assert!(text.contains("nginx      16  FAILED: not ready"), "{text}");
        assert!(
            text.contains("strait     16  12,500       0.50  100µs  300µs       10.00                –     10.0"),
            "{text}"
        );
        assert!(
            text.contains("envoy      16   5,000       0.20  100µs  300µs       40.00             0.25     10.0"),
            "{text}"
        );
        assert!(!text.contains("streams"), "no HTTP/2 column for HTTP/1.1: {text}");
        assert!(text.contains("envoy: skipped"));
    }

    #[test]
    fn http2_rows_per_connections_and_streams() {
        let points = [Point { connections: 1, streams: Some(16) }, Point { connections: 8, streams: Some(16) }];
        let runs: Vec<Run> = points
            .iter()
            .zip([10_000, 20_000])
            .map(|(&point, ops)| Run { point, ..run(PeerName::Strait, ops, Some(0.2)) })
            .collect();
        let rows = rows(&runs, &[PeerName::Strait], &points, &[Phase::Closed], Mode::H2);
        let seen: Vec<_> = rows.iter().map(|r| (r.connections, r.streams, r.cpu_us_per_op)).collect();
        assert_eq!(seen, [(1, Some(16), Some(20.0)), (8, Some(16), Some(10.0))]);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(41234.4), "41,234");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }
}
