//! The end of a run: merged measurements as a human table or one JSON document (the form
//! `scenario` reads back from the load processes it starts), and the verdict on its target.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::BenchError;
use crate::stats::{ErrorKind, Recorder};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// One run's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `http`, `http-open-loop`, `h2`, `h2-open-loop`, `grpc`, `grpc-open-loop`,
    /// `tcp-throughput`, `tcp-echo`, `tls-full`, `tls-resumed`, `tls-requests`.
    pub mode: String,
    pub target: String,
    pub connections: usize,
    /// HTTP/2 modes: concurrent streams per connection.
    #[serde(default)]
    pub streams: Option<usize>,
    pub threads: usize,
    /// The open loop's target rate, per second.
    pub rate: Option<f64>,
    /// The measured part's length.
    pub seconds: f64,
    /// Requests, handshakes or echoes that completed (whatever their status).
    pub operations: u64,
    pub operations_per_second: f64,
    pub bytes: u64,
    pub bytes_per_second: f64,
    /// Failures by kind (only kinds that happened).
    pub errors: BTreeMap<String, u64>,
    /// HTTP answers by class: `2xx`, `5xx`, `other`.
    pub statuses: BTreeMap<String, u64>,
    /// Absent when no operation completed (or none is timed, as in TCP throughput).
    pub latency_us: Option<Latency>,
    /// TLS handshake modes: how many of the operations resumed a session (the rest were full).
    #[serde(default)]
    pub resumed: Option<u64>,
}

impl Report {
    pub fn new(
        mode: &str,
        target: &str,
        connections: usize,
        threads: usize,
        rec: &Recorder,
        elapsed: Duration,
    ) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let h = &rec.latency;
        let us = |ns: u64| ns as f64 / 1000.0;
        let latency = (!h.is_empty()).then(|| Latency {
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        });
        let errors = ErrorKind::ALL
            .iter()
            .filter(|k| rec.errors[**k as usize] > 0)
            .map(|k| (k.name().to_string(), rec.errors[*k as usize]))
            .collect();
        let statuses = rec
            .statuses
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(class, n)| (if class == 0 { "other".to_string() } else { format!("{class}xx") }, *n))
            .collect();
        Report {
            mode: mode.to_string(),
            target: target.to_string(),
            connections,
            streams: None,
            threads,
            rate: None,
            seconds,
            operations: rec.operations,
            operations_per_second: rec.operations as f64 / seconds,
            bytes: rec.bytes,
            bytes_per_second: rec.bytes as f64 / seconds,
            errors,
            statuses,
            latency_us: latency,
            resumed: None,
        }
    }

    /// Operations that completed and were not refused. A refused status (HTTP, or gRPC's) is an
    /// answer, counted in `operations` too; every other error is an operation that never
    /// completed.
    pub fn succeeded(&self) -> u64 {
        let refused: u64 =
            [ErrorKind::Status, ErrorKind::Grpc].iter().map(|k| self.errors.get(k.name()).copied().unwrap_or(0)).sum();
        self.operations.saturating_sub(refused)
    }

    /// Whether the target held up: some operation succeeded, and no more than
    /// `max_error_rate` of them failed.
    pub fn verdict(&self, max_error_rate: f64) -> Result<(), BenchError> {
        let failed: u64 = self.errors.values().sum();
        let succeeded = self.succeeded();
        let errors = if failed == 0 { "none completed".to_string() } else { pairs(&self.errors) };
        if succeeded == 0 {
            return Err(BenchError::NothingSucceeded { errors });
        }
        let tried = succeeded + failed;
        if failed as f64 > max_error_rate * tried as f64 {
            return Err(BenchError::TooManyErrors { failed, tried, errors, max: max_error_rate });
        }
        Ok(())
    }

    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).expect("a report serializes"));
        } else {
            print!("{}", self.table());
        }
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "{} {} · {} connections{} · {} threads · {:.2} s{}\n",
            self.mode,
            self.target,
            self.connections,
            self.streams.map(|s| format!(" × {s} streams")).unwrap_or_default(),
            self.threads,
            self.seconds,
            self.rate.map(|r| format!(" · open loop at {r:.0}/s")).unwrap_or_default(),
        );
        out += &format!("  operations  {:>12}  {:>12.1}/s\n", self.operations, self.operations_per_second);
        out += &format!(
            "  bytes       {:>12}  {:>12}/s  ({:.2} Gbit/s)\n",
            self.bytes,
            human_bytes(self.bytes_per_second),
            self.bytes_per_second * 8.0 / 1e9
        );
        if let Some(l) = &self.latency_us {
            out += &format!(
                "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}\n",
                human_us(l.p50),
                human_us(l.p90),
                human_us(l.p99),
                human_us(l.p999),
                human_us(l.max),
                human_us(l.mean)
            );
        }
        if let Some(resumed) = self.resumed {
            out += &format!("  handshakes  {resumed} resumed, {} full\n", self.operations.saturating_sub(resumed));
        }
        if !self.statuses.is_empty() {
            out += &format!("  statuses    {}\n", pairs(&self.statuses));
        }
        out += &format!(
            "  errors      {}\n",
            if self.errors.is_empty() { "none".to_string() } else { pairs(&self.errors) }
        );
        out
    }
}

fn pairs(m: &BTreeMap<String, u64>) -> String {
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// 1.5 KiB, 12.3 MiB, 2.1 GiB.
pub fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// 87µs, 1.25ms, 1.002s.
pub fn human_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.3}s", us / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn report_from_a_recorder_round_trips_as_json() {
        let mut rec = Recorder::empty();
        let now = Instant::now();
        for _ in 0..99 {
            rec.record(now, Duration::from_micros(100));
            rec.status(now, 200);
        }
        rec.record(now, Duration::from_millis(50));
        rec.status(now, 502);
        rec.error(now, ErrorKind::Status);
        rec.bytes(now, 2048);
        let r = Report::new("http", "http://127.0.0.1:1/", 4, 1, &rec, Duration::from_secs(2));
        assert_eq!(r.operations_per_second, 50.0);
        assert_eq!(r.bytes_per_second, 1024.0);
        assert_eq!(r.errors.get("status"), Some(&1));
        assert_eq!(r.statuses.get("5xx"), Some(&1));
        let l = r.latency_us.as_ref().unwrap();
        assert!((99.0..=101.0).contains(&l.p50), "{l:?}");
        assert!(l.max >= 49_900.0, "{l:?}");
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.latency_us, r.latency_us);
        assert!(r.table().contains("errors      status 1"));
    }

    fn report(operations: u64, errors: &[(&str, u64)]) -> Report {
        let mut rec = Recorder::empty();
        let now = Instant::now();
        for _ in 0..operations {
            rec.record(now, Duration::from_micros(100));
        }
        let mut r = Report::new("http", "http://127.0.0.1:1/", 1, 1, &rec, Duration::from_secs(1));
        r.errors = errors.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        r
    }

    #[test]
    fn the_verdict_fails_a_run_where_nothing_succeeded() {
        for r in [report(0, &[]), report(0, &[("connect", 40)]), report(100, &[("status", 100)])] {
            let err = r.verdict(1.0).unwrap_err();
            assert!(matches!(err, BenchError::NothingSucceeded { .. }), "{err}");
        }
        assert_eq!(
            report(0, &[("connect", 40)]).verdict(1.0).unwrap_err().to_string(),
            "no operation succeeded (connect 40)"
        );
    }

    #[test]
    fn the_verdict_fails_errors_past_the_rate() {
        // 90 answers of which 9 refused, and 10 resets: 19 of 100 tried failed.
        let r = report(90, &[("status", 9), ("io", 10)]);
        assert!(r.verdict(0.2).is_ok());
        assert!(r.verdict(0.19).is_ok(), "at the rate is not past it");
        let err = r.verdict(0.18).unwrap_err().to_string();
        assert_eq!(err, "19 of 100 operations failed (io 10, status 9), more than --max-error-rate 0.18 allows");
        assert!(report(10, &[]).verdict(0.0).is_ok());
        assert!(report(1000, &[("timeout", 1)]).verdict(0.0).is_err());
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_us(87.4), "87µs");
        assert_eq!(human_us(1250.0), "1.25ms");
        assert_eq!(human_us(1_002_000.0), "1.002s");
    }
}
