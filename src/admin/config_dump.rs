//! `/config_dump`: the served snapshot as JSON, walked by hand so the data-plane types carry no
//! serde derives. Shows where each route came from; never shows private key bytes.

use serde_json::{json, Map, Value};

use crate::snapshot::{
    Cluster, Destination, HeaderMatcher, HostTable, L4Route, Listener, ListenerProtocol, MatchBlock, Route,
    RouteAction, RouteSource, RouteTable, Server, ServerTls, Snapshot, StringMatcher, TrafficPolicy, ValueMatcher,
    WeightedDestinations,
};

pub fn to_json(s: &Snapshot) -> Value {
    json!({
        "generation": s.generation,
        "listeners": s.listeners.iter().map(|l| listener(s, l)).collect::<Vec<_>>(),
        "clusters": s.clusters.iter().map(cluster).collect::<Vec<_>>(),
    })
}

fn listener(s: &Snapshot, l: &Listener) -> Value {
    let mut out = json!({
        "port": l.port,
        "bind": l.bind.to_string(),
        "protocol": protocol(l.protocol),
        "servers": l.servers.iter().map(|srv| server(s, l, srv)).collect::<Vec<_>>(),
    });
    // Plain HTTP servers share the listener's merged table: dump it once, here.
    if l.protocol == ListenerProtocol::Http {
        out["virtual_hosts"] = virtual_hosts(s, &l.http_routes);
    }
    out
}

fn protocol(p: ListenerProtocol) -> &'static str {
    match p {
        ListenerProtocol::Http => "HTTP",
        ListenerProtocol::Tls => "TLS",
        ListenerProtocol::Tcp => "TCP",
    }
}

fn server(s: &Snapshot, l: &Listener, srv: &Server) -> Value {
    let mut out = json!({
        "gateway": &*srv.gateway,
        "port_name": &*srv.port_name,
        "protocol": &*srv.protocol,
        "hosts": srv.hosts.iter().map(|h| &**h).collect::<Vec<_>>(),
        "tls": srv.tls.as_ref().map_or(Value::Null, tls),
    });
    if l.protocol == ListenerProtocol::Tls {
        out["virtual_hosts"] = virtual_hosts(s, &srv.routes);
    }
    if !srv.tcp_routes.is_empty() {
        out["tcp_routes"] = srv.tcp_routes.iter().map(|r| l4_route(s, r)).collect();
    }
    if !srv.tls_routes.is_empty() {
        out["tls_routes"] = srv.tls_routes.iter().map(|r| l4_route(s, r)).collect();
    }
    out
}

fn tls(t: &ServerTls) -> Value {
    let strs = |v: &[std::sync::Arc<str>]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    json!({
        "mode": format!("{:?}", t.mode),
        // Sizes only: the material itself stays out of an HTTP answer.
        "cert_chain_bytes": t.cert_chain.as_ref().map(|c| c.len()),
        "private_key": t.private_key.as_ref().map(|_| "[redacted]"),
        "ca_certificates_bytes": t.ca_certificates.as_ref().map(|c| c.len()),
        "ca_crl_bytes": t.ca_crl.as_ref().map(|c| c.len()),
        "source_files": t.source_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "subject_alt_names": strs(&t.subject_alt_names),
        "verify_certificate_spki": strs(&t.verify_certificate_spki),
        "verify_certificate_hash": strs(&t.verify_certificate_hash),
        "min_protocol_version": t.min_protocol_version.map(|v| format!("{v:?}")),
        "max_protocol_version": t.max_protocol_version.map(|v| format!("{v:?}")),
        "cipher_suites": strs(&t.cipher_suites),
    })
}

fn virtual_hosts(s: &Snapshot, table: &RouteTable) -> Value {
    sorted(&table.vhosts)
        .into_iter()
        .map(|(domain, vh)| {
            json!({
                "domain": domain,
                "https_redirect": vh.https_redirect,
                "routes": vh.routes.iter().map(|r| route(s, r)).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// Host tables are hash maps: sort so that two dumps of one snapshot are identical.
fn sorted<T>(table: &HostTable<T>) -> Vec<(String, &T)> {
    let mut v: Vec<_> = table.iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn source(src: &RouteSource) -> Value {
    json!({
        "file": &*src.file,
        "document": src.document,
        "virtual_service": &*src.virtual_service,
        "index": src.index,
    })
}

fn route(s: &Snapshot, r: &Route) -> Value {
    let action = match &r.action {
        RouteAction::Forward(d) => json!({ "forward": destinations(s, d) }),
        RouteAction::Redirect(rd) => json!({ "redirect": {
            "uri": rd.uri.as_deref(),
            "authority": rd.authority.as_deref(),
            "port": format!("{:?}", rd.port),
            "scheme": rd.scheme.as_deref(),
            "code": rd.code,
        }}),
        RouteAction::DirectResponse { status, body } => {
            json!({ "direct_response": { "status": status, "body_bytes": body.len() } })
        }
    };
    let p = &r.policy;
    json!({
        "name": r.name.as_deref(),
        "source": source(&r.source),
        "match": r.matches.iter().map(match_block).collect::<Vec<_>>(),
        "action": action,
        "timeout_ms": p.timeout.map(|t| t.as_millis() as u64),
        "retries": p.retries.attempts,
        "rewrite": p.rewrite().map(|rw| json!({
            "uri": rw.uri.as_deref(),
            "authority": rw.authority.as_deref(),
            "uri_regex": rw.uri_regex.as_ref().map(|(re, sub)| format!("{} -> {sub}", re.as_str())),
        })),
        "mirrors": p.mirrors().iter().map(|m| json!({ "destination": destination(s, &m.destination), "percent": m.percent })).collect::<Vec<_>>(),
        "fault": p.fault().map(|f| format!("{f:?}")),
        "cors": p.cors().is_some(),
    })
}

fn match_block(m: &MatchBlock) -> Value {
    let mut out = Map::new();
    if let Some(name) = &m.name {
        out.insert("name".into(), json!(&**name));
    }
    let mut field = |key: &str, matcher: &Option<StringMatcher>| {
        if let Some(matcher) = matcher {
            out.insert(key.into(), json!(matcher.describe()));
        }
    };
    field("uri", &m.uri);
    field("scheme", &m.scheme);
    field("method", &m.method);
    field("authority", &m.authority);
    if m.ignore_uri_case {
        out.insert("ignore_uri_case".into(), json!(true));
    }
    if !m.headers.is_empty() {
        out.insert("headers".into(), m.headers.iter().map(header).collect());
    }
    if !m.query_params.is_empty() {
        let params = m.query_params.iter().map(|q| json!({ "name": &*q.name, "value": value_matcher(&q.value) }));
        out.insert("query_params".into(), params.collect());
    }
    Value::Object(out)
}

fn header(h: &HeaderMatcher) -> Value {
    json!({ "name": &*h.name, "value": value_matcher(&h.value), "invert": h.invert })
}

fn value_matcher(v: &ValueMatcher) -> String {
    match v {
        ValueMatcher::Present => "present".to_string(),
        ValueMatcher::Value(m) => m.describe(),
    }
}

fn destinations(s: &Snapshot, d: &WeightedDestinations) -> Value {
    d.destinations.iter().map(|dest| destination(s, dest)).collect()
}

fn destination(s: &Snapshot, d: &Destination) -> Value {
    json!({
        "host": &*d.host,
        "subset": d.subset.as_deref(),
        "port": d.port,
        "weight": d.weight,
        // `null`: a dangling reference, answered 503.
        "cluster": d.cluster.map(|id| &*s.cluster(id).name),
    })
}

fn l4_route(s: &Snapshot, r: &L4Route) -> Value {
    let matches = r.matches.iter().map(|m| {
        json!({
            "sni_hosts": m.sni_hosts.iter().map(|h| &**h).collect::<Vec<_>>(),
            "destination_subnets": m.destination_subnets.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "source_subnet": m.source_subnet.map(|n| n.to_string()),
        })
    });
    json!({
        "name": &*r.name,
        "source": source(&r.source),
        "match": matches.collect::<Vec<_>>(),
        "forward": destinations(s, &r.destinations),
    })
}

fn cluster(c: &Cluster) -> Value {
    let endpoints = c.endpoints.iter().map(|e| {
        json!({
            "address": e.addr.to_string(),
            "weight": e.weight,
            "labels": &*e.labels,
            "locality": e.locality.as_deref(),
        })
    });
    json!({
        "name": &*c.name,
        "host": &*c.host,
        "namespace": &*c.namespace,
        "port": c.port,
        "subset": c.subset.as_deref(),
        "protocol": &*c.protocol,
        "endpoints": endpoints.collect::<Vec<_>>(),
        "policy": policy(&c.policy),
    })
}

fn policy(p: &TrafficPolicy) -> Value {
    json!({
        "load_balancer": format!("{:?}", p.load_balancer),
        "connect_timeout_ms": p.connect_timeout.as_millis() as u64,
        "max_connections": p.max_connections,
        "http1_max_pending_requests": p.http1_max_pending_requests,
        "max_requests_per_connection": p.max_requests_per_connection,
        "max_retries": p.max_retries,
        "http_idle_timeout_ms": p.http_idle_timeout.as_millis() as u64,
        "outlier_detection": p.outlier_detection.as_ref().map(|o| format!("{o:?}")),
        "tls": p.tls.as_ref().map(|t| json!({
            "mode": format!("{:?}", t.mode),
            "sni": t.sni.as_deref(),
            "subject_alt_names": t.subject_alt_names.iter().map(|s| &**s).collect::<Vec<_>>(),
            "insecure_skip_verify": t.insecure_skip_verify,
            "client_certificate": t.client_certificate.is_some(),
        })),
    })
}

#[cfg(test)]
mod tests;
