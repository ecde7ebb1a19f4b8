//! One load run: `strait-bench http|tcp|tls|h2|grpc … --json` as a subprocess on the load CPUs,
//! bounded in time, its report read back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::model::{Mode, Point};
use super::peers::{cpu_list, pin};
use crate::cli::Cpus;
use crate::report::Report;

/// A load process gets this long past its duration to connect, finish and report.
const GRACE: Duration = Duration::from_secs(30);

/// How often the proxy's memory is sampled while a load runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// What every load run of a scenario shares.
pub struct Plan {
    pub exe: PathBuf,
    pub mode: Mode,
    pub threads: usize,
    pub timeout: Duration,
    pub cpus: Cpus,
    pub path: String,
    /// Extra request headers, the virtual host's `Host` among them.
    pub headers: Vec<String>,
    pub pipeline: Option<usize>,
    pub size: Option<usize>,
}

impl Plan {
    /// The arguments of one run against `addr`.
    pub fn args(&self, addr: SocketAddr, point: Point, duration: Duration, rate: Option<f64>) -> Vec<String> {
        let mut args: Vec<String> = match self.mode {
            Mode::Http => vec!["http".into(), format!("http://{addr}{}", self.path)],
            Mode::TcpThroughput | Mode::TcpEcho => {
                let mode = if self.mode == Mode::TcpEcho { "echo" } else { "throughput" };
                vec!["tcp".into(), addr.to_string(), "--mode".into(), mode.into()]
            }
            Mode::TlsFull | Mode::TlsResumed | Mode::TlsRequests => {
                let mode = self.mode.name().trim_start_matches("tls-");
                vec!["tls".into(), format!("https://{addr}{}", self.path), "--mode".into(), mode.into(), "-k".into()]
            }
            Mode::H2 => vec!["h2".into(), format!("http://{addr}{}", self.path)],
            // The harness's own unary method, which `serve h2` answers.
            Mode::Grpc => vec!["grpc".into(), format!("http://{addr}/")],
        };
        if let Some(s) = point.per_connection() {
            args.extend(["-s".into(), s.to_string()]);
        }
        if let Some(p) = self.pipeline {
            args.extend(["--pipeline".into(), p.to_string()]);
        }
        if let Some(s) = self.size {
            args.extend(["--size".into(), s.to_string()]);
        }
        if let Some(r) = rate {
            args.extend(["-R".into(), format!("{:.0}", r.max(1.0))]);
        }
        for h in &self.headers {
            args.extend(["-H".into(), h.clone()]);
        }
        args.extend([
            "-c".into(),
            point.connections.to_string(),
            "-t".into(),
            self.threads.to_string(),
            "-d".into(),
            humantime::format_duration(duration).to_string(),
            "--timeout".into(),
            humantime::format_duration(self.timeout).to_string(),
            "--cpus".into(),
            cpu_list(&self.cpus),
            "--json".into(),
            "--quiet".into(),
        ]);
        args
    }

    /// Runs the load with `args` (of `duration`), calling `sample` every half second while it
    /// runs, and reads its report.
    pub fn run(&self, args: &[String], duration: Duration, mut sample: impl FnMut()) -> Result<Report, String> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        pin(&mut cmd, &self.cpus);
        let mut child = cmd.spawn().map_err(|e| format!("cannot start the load: {e}"))?;
        let start = Instant::now();
        let limit = duration + GRACE;
        let mut next_sample = start + SAMPLE_EVERY;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for the load: {e}")),
            }
            let now = Instant::now();
            if now > start + limit {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the load ran past {limit:?} and was stopped"));
            }
            if now >= next_sample {
                sample();
                next_sample = now + SAMPLE_EVERY;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().map_err(|e| format!("reading the load's report: {e}"))?;
        // A load whose operations failed still reports, then exits 1 by its own verdict: the
        // scenario judges the report itself (`table::Measure`), counting errors beside the
        // figures rather than losing the run.
        match serde_json::from_slice(&out.stdout) {
            Ok(report) => Ok(report),
            Err(_) if !out.status.success() => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
                Err(format!("the load {}: {}", out.status, last.trim()))
            }
            Err(e) => Err(format!("the load's report is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mode: Mode) -> Plan {
        Plan {
            exe: PathBuf::from("strait-bench"),
            mode,
            threads: 1,
            timeout: Duration::from_secs(5),
            cpus: Cpus(vec![1]),
            path: "/".into(),
            headers: Vec::new(),
            pipeline: None,
            size: None,
        }
    }

    #[test]
    fn arguments_per_mode() {
        let addr: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let d = Duration::from_secs(2);
        let c = |connections| Point { connections, streams: None };
        let mut http = plan(Mode::Http);
        http.headers = vec!["Host: vs-9.bench.local".into()];
        assert_eq!(
            http.args(addr, c(64), d, Some(15_000.4)).join(" "),
            "http http://127.0.0.1:9000/ -R 15000 -H Host: vs-9.bench.local -c 64 -t 1 -d 2s --timeout 5s --cpus 1 \
             --json --quiet"
        );
        let mut tcp = plan(Mode::TcpThroughput);
        tcp.size = Some(65536);
        assert!(tcp
            .args(addr, c(1), d, None)
            .join(" ")
            .starts_with("tcp 127.0.0.1:9000 --mode throughput --size 65536 -c 1"));
        let tls = plan(Mode::TlsFull).args(addr, c(16), Duration::from_millis(1500), None).join(" ");
        assert!(tls.starts_with("tls https://127.0.0.1:9000/ --mode full -k -c 16 -t 1 -d 1s 500ms"), "{tls}");
        let streams = Point { connections: 8, streams: Some(256) };
        let h2 = plan(Mode::H2).args(addr, streams, d, None).join(" ");
        assert!(h2.starts_with("h2 http://127.0.0.1:9000/ -s 32 -c 8 -t 1 -d 2s"), "{h2}");
        let grpc = plan(Mode::Grpc).args(addr, Point { connections: 1, streams: Some(16) }, d, None).join(" ");
        assert!(grpc.starts_with("grpc http://127.0.0.1:9000/ -s 16 -c 1 -t 1"), "{grpc}");
    }

    #[test]
    fn a_failing_load_says_why() {
        let mut p = plan(Mode::Http);
        p.exe = PathBuf::from("sh");
        p.cpus = Cpus(vec![0]);
        let args = ["-c".to_string(), "echo 'bad url' >&2; exit 2".to_string()];
        let err = p.run(&args, Duration::from_secs(1), || {}).unwrap_err();
        assert_eq!(err, "the load exit status: 2: bad url");
    }

    #[test]
    fn a_load_failing_its_verdict_still_hands_over_its_report() {
        let mut rec = crate::stats::Recorder::empty();
        rec.error(std::time::Instant::now(), crate::stats::ErrorKind::Connect);
        let report = Report::new("http", "http://127.0.0.1:1/", 1, 1, &rec, Duration::from_secs(1));
        let json = serde_json::to_string(&report).unwrap();
        let mut p = plan(Mode::Http);
        p.exe = PathBuf::from("sh");
        p.cpus = Cpus(vec![0]);
        let args = ["-c".to_string(), format!("echo '{json}'; echo 'no operation succeeded' >&2; exit 1")];
        let back = p.run(&args, Duration::from_secs(1), || {}).unwrap();
        assert_eq!(back.errors.get("connect"), Some(&1));
    }
}
