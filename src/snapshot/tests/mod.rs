//! Compile tests: Istio YAML fixtures (tests/fixtures/) loaded through `config::load`, compiled,
//! then asked how requests route, as the data plane asks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{self, ConfigSet};

use super::*;

fn load(files: &[&str]) -> ConfigSet {
    let paths: Vec<PathBuf> = files.iter().map(|f| PathBuf::from("tests/fixtures").join(f)).collect();
    config::load(&paths).unwrap_or_else(|e| panic!("fixtures do not load:\n{e}"))
}

fn options(labels: &[(&str, &str)]) -> CompileOptions {
    let mut opts =
        CompileOptions { secrets_dir: Some("tests/fixtures/snapshot/secrets".into()), ..CompileOptions::default() };
    if !labels.is_empty() {
        opts.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }
    opts
}

fn build(files: &[&str]) -> Snapshot {
    compile(&load(files), &options(&[])).unwrap_or_else(|e| panic!("compile failed:\n{e}"))
}

/// The seeds name certificates under /etc/certs; point them at the test pair.
pub(crate) fn with_test_certs(mut set: ConfigSet) -> ConfigSet {
    for gw in &mut set.gateways {
        for server in &mut gw.spec.servers {
            if let Some(tls) = &mut server.tls {
                if tls.server_certificate.is_some() {
                    tls.server_certificate = Some("tests/fixtures/snapshot/certs/server.pem".into());
                    tls.private_key = Some("tests/fixtures/snapshot/certs/server-key.pem".into());
                }
            }
        }
    }
    set
}

fn table(snapshot: &Snapshot, port: u16) -> &RouteTable {
    &snapshot.listener(port).unwrap_or_else(|| panic!("no listener on {port}")).http_routes
}

/// Routes a request as an HTTP/1.1 client sends it: the Host header is among the headers.
fn decide<'s>(
    table: &'s RouteTable,
    host: &str,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> RouteDecision<'s> {
    let host_line = [("Host", host)];
    let headers: Vec<httparse::Header<'_>> =
        host_line.iter().chain(headers).map(|(n, v)| httparse::Header { name: n, value: v.as_bytes() }).collect();
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    table.route(&RequestInfo { host, method, path, query, scheme: "http", headers: &headers })
}

/// A short name for the outcome, to compare against.
fn outcome(d: &RouteDecision<'_>) -> String {
    match d {
        RouteDecision::NoVirtualHost => "no-vhost".into(),
        RouteDecision::NoRoute(_) => "no-route".into(),
        RouteDecision::HttpsRedirect(_) => "https-redirect".into(),
        RouteDecision::Matched { route, .. } => match &route.action {
            RouteAction::DirectResponse { status, body } if body.is_empty() => status.to_string(),
            RouteAction::DirectResponse { status, body } => {
                format!("{status} {}", String::from_utf8_lossy(body))
            }
            RouteAction::Redirect(r) => format!("redirect {}", r.code),
            RouteAction::Forward(w) => {
                let d: Vec<String> = w.destinations.iter().map(|d| format!("{}:{}", d.host, d.port)).collect();
                format!("forward {}", d.join(","))
            }
        },
    }
}

fn get(table: &RouteTable, host: &str, uri: &str) -> String {
    outcome(&decide(table, host, "GET", uri, &[]))
}

fn matched<'s>(d: RouteDecision<'s>) -> &'s Route {
    match d {
        RouteDecision::Matched { route, .. } => route,
        other => panic!("expected a route, got {}", outcome(&other)),
    }
}

fn forward(route: &Route) -> &WeightedDestinations {
    match &route.action {
        RouteAction::Forward(w) => w,
        _ => panic!("not a forward route"),
    }
}

fn cluster_name(s: &Snapshot, d: &Destination) -> Option<String> {
    d.cluster.map(|id| s.cluster(id).name.to_string())
}

/// Istio's metrics name the gateway by its Deployment, which its charts label `app` and `istio`.
#[test]
fn source_workload_follows_the_gateway_labels() {
    let name = |labels: &[(&str, &str)]| {
        compile::source_workload(&labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    };
    assert_eq!(name(&[("istio", "ingressgateway")]), "istio-ingressgateway");
    assert_eq!(name(&[("istio", "egressgateway")]), "istio-egressgateway");
    assert_eq!(name(&[("istio", "egressgateway"), ("app", "cnn-egress")]), "cnn-egress");
    assert_eq!(name(&[("team", "edge")]), "istio-ingressgateway");
}

mod listeners;
mod ratelimit;
mod routes;
mod routing;
