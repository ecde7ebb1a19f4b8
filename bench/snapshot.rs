//! Snapshot bench: compile time and route lookup cost for 100 and 10,000 VirtualServices.
//!
//! `cargo bench --bench snapshot`. Each figure is the median of 5 runs. Lookups route one fixed
//! request (Host, method, path, two headers) through `RouteTable::route`, as a worker does.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use strait::config;
use strait::snapshot::{compile, CompileOptions, RequestInfo, RouteDecision, RouteTable};

const RUNS: usize = 5;
const LOOKUPS: u32 = 1_000_000;
const BACKENDS: usize = 100;

/// One Gateway on 8080, `n` VirtualServices (every tenth with a wildcard host) of three routes
/// each, in ten namespaces, routing to 100 ServiceEntries.
fn config_yaml(n: usize) -> String {
    let mut y = String::from(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: bench}\n\
         spec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n",
    );
    for b in 0..BACKENDS {
        write!(
            y,
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: backend-{b}, namespace: bench}}\n\
             spec:\n  hosts: [backend-{b}.bench.svc.cluster.local]\n  resolution: STATIC\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n\
             \x20 endpoints: [{{address: 10.0.{}.{}}}]\n",
            b / 250,
            b % 250 + 1
        )
        .unwrap();
    }
    for i in 0..n {
        let host = if i % 10 == 0 { format!("\"*.w{i}.example.com\"") } else { format!("svc-{i}.example.com") };
        let b = i % BACKENDS;
        write!(
            y,
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs-{i}, namespace: ns-{}}}\n\
             spec:\n  hosts: [{host}]\n  gateways: [bench/edge]\n  http:\n\
             \x20 - match: [{{uri: {{prefix: /admin}}, headers: {{x-role: {{exact: admin}}}}}}]\n\
             \x20   route: [{{destination: {{host: backend-{b}.bench.svc.cluster.local}}}}]\n\
             \x20 - match: [{{uri: {{regex: \"/api/v[0-9]+/.*\"}}}}]\n\
             \x20   route: [{{destination: {{host: backend-{b}.bench.svc.cluster.local}}}}]\n\
             \x20   retries: {{attempts: 3, retryOn: \"5xx,reset\"}}\n\
             \x20 - route: [{{destination: {{host: backend-{b}.bench.svc.cluster.local}}}}]\n",
            i % 10
        )
        .unwrap();
    }
    y
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Nanoseconds per `route` call for `host`, the median of `RUNS` timed loops.
fn lookup_ns(table: &RouteTable, host: &str, expect_match: bool) -> f64 {
    let headers = [
        httparse::Header { name: "Host", value: host.as_bytes() },
        httparse::Header { name: "User-Agent", value: b"bench" },
        httparse::Header { name: "Accept", value: b"*/*" },
    ];
    let req = RequestInfo {
        host,
        method: "GET",
        path: "/api/v1/items",
        query: Some("page=2"),
        scheme: "http",
        headers: &headers,
    };
    let matched = matches!(table.route(&req), RouteDecision::Matched { .. });
    assert_eq!(matched, expect_match, "{host}");
    let runs = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..LOOKUPS {
                black_box(table.route(black_box(&req)));
            }
            start.elapsed()
        })
        .collect();
    median(runs).as_nanos() as f64 / f64::from(LOOKUPS)
}

fn main() {
    let dir = std::env::temp_dir().join(format!("strait-snapshot-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!(
        "| VirtualServices | load (ms) | compile (ms) | exact host (ns/op) | wildcard host (ns/op) | miss (ns/op) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in [100, 10_000] {
        let file: PathBuf = dir.join(format!("bench-{n}.yaml"));
        std::fs::write(&file, config_yaml(n)).expect("write config");
        let start = Instant::now();
        let set = config::load(std::slice::from_ref(&file)).unwrap_or_else(|e| panic!("{e}"));
        let load = start.elapsed();
        let opts = CompileOptions::default();
        let compiles: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                let snapshot = black_box(compile(&set, &opts).unwrap_or_else(|e| panic!("{e}")));
                let elapsed = start.elapsed();
                // Dropping the old snapshot is the worker's business, after the swap.
                drop(snapshot);
                elapsed
            })
            .collect();
        let snapshot = compile(&set, &opts).unwrap();
        let table = &snapshot.listener(8080).expect("listener").http_routes;
        assert_eq!(table.vhosts.len(), n);
        let exact = lookup_ns(table, &format!("svc-{}.example.com", n / 2 + 1), true);
        let wildcard = lookup_ns(table, &format!("api.W{}.example.com:8080", n / 2), true);
        let miss = lookup_ns(table, "nomatch.other.org", false);
        println!(
            "| {n} | {:.1} | {:.1} | {exact:.0} | {wildcard:.0} | {miss:.0} |",
            load.as_secs_f64() * 1e3,
            median(compiles).as_secs_f64() * 1e3
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
