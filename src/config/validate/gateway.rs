//! Gateway rules: server ports, protocols, hosts and TLS settings (Istio's `ValidateGateway`);
//! a Gateway whose selector this instance does not satisfy, as `istioctl analyze` reports a
//! selector no workload matches (IST0101); and, for the Gateways that select this instance,
//! what compiling them needs (readable certificates, one protocol family per port) and the
//! servers two of them claim alike (IST0145).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{dns_label, At, ValidateOptions};
use crate::config::credentials::{server_material, Secrets};
use crate::config::gateway::{ProtocolFamily, Server, ServerTlsMode, ServerTlsSettings};
use crate::config::index::labels_subset;
use crate::config::{ConfigSet, Diagnostics, Gateway, Resource, Severity};

/// The protocols Istio accepts on a Gateway server, upper-case (Istio parses them
/// case-insensitively).
const PROTOCOLS: [&str; 11] =
    ["HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "MYSQL", "REDIS", "TCP", "TLS", "UDP"];

pub(super) fn check(set: &ConfigSet, opts: &ValidateOptions, labels: &BTreeMap<String, String>, out: &mut Diagnostics) {
    let secrets = Secrets::new(set, opts.secrets_dir.as_deref());
    // Port → (protocol, family, Gateway, server index) of the first selected server on it.
    type First<'a> = (&'a str, ProtocolFamily, String, usize);
    let mut first_on_port: HashMap<u32, First<'_>> = HashMap::new();
    for gw in &set.gateways {
        let selected = labels_subset(&gw.spec.selector, labels);
        let mut at = At { resource: gw, out: &mut *out };
        if !selected {
            at.push(
                Severity::Dangling,
                "spec.selector",
                format!(
                    "referenced selector not found: \"{}\" (IST0101): this instance's labels (--label) are \
                     {}, so none of this Gateway's servers is served",
                    selector(&gw.spec.selector),
                    selector(labels)
                ),
            );
        }
        let mut port_names = HashSet::new();
        if gw.spec.servers.is_empty() {
            at.error("spec.servers", "gateway must have at least one server");
        }
        for (i, server) in gw.spec.servers.iter().enumerate() {
            let prefix = format!("spec.servers[{i}]");
            let tls_ok = check_server(&mut at, &prefix, server);
            if let Some(name) = server.port.name.as_deref() {
                if !port_names.insert(name) {
                    at.error(
                        format!("{prefix}.port.name"),
                        format!("port names in servers must be unique: duplicate name {name}"),
                    );
                }
            }
            if !selected {
                continue;
            }
            // Only the servers this instance serves need their certificates here.
            if let (true, Some(tls)) = (tls_ok, &server.tls) {
                if server.port.family() == ProtocolFamily::Tls {
                    if let Err((field, message)) = server_material(tls, &opts.namespace, &secrets) {
                        at.error(format!("{prefix}.tls.{field}"), message);
                    }
                }
            }
            // Istio (and compile) keep the first server of a port; a server of another
            // protocol family cannot share that listener.
            let (protocol, family) = (server.port.protocol.as_str(), server.port.family());
            match first_on_port.get(&server.port.number) {
                None => {
                    first_on_port.insert(server.port.number, (protocol, family, gw.key(), i));
                }
                Some((first, first_family, key, j)) if family != *first_family => {
                    at.error(
                        format!("{prefix}.port.protocol"),
                        format!(
                            "protocol {protocol} conflicts with {first} on port {}, served by \
                             Gateway {key} spec.servers[{j}]",
                            server.port.number
                        ),
                    );
                }
                Some(_) => {}
            }
        }
    }
    conflicts(set, labels, out);
}

/// `istioctl analyze`'s ConflictingGateways (IST0145): a server of a Gateway selecting this
/// instance whose port, bind and one of whose hosts (as written) another such Gateway also
/// claims. Each Gateway involved is told, naming the others, in one pass over a host index.
fn conflicts(set: &ConfigSet, labels: &BTreeMap<String, String>, out: &mut Diagnostics) {
    let selected: Vec<&Resource<Gateway>> =
        set.gateways.iter().filter(|gw| labels_subset(&gw.spec.selector, labels)).collect();
    let claim = |server: &'_ Server, host: &'_ str| {
        (server.port.number, server.bind.clone().unwrap_or_default(), host.to_owned())
    };
    // (port, bind, host) → the Gateways claiming it, by index in `selected`.
    let mut claims: HashMap<(u32, String, String), Vec<usize>> = HashMap::new();
    for (g, gw) in selected.iter().enumerate() {
        for server in &gw.spec.servers {
            for host in &server.hosts {
                let owners = claims.entry(claim(server, host)).or_default();
                if owners.last() != Some(&g) {
                    owners.push(g);
                }
            }
        }
    }
    for (g, gw) in selected.iter().enumerate() {
        let mut at = At { resource: *gw, out: &mut *out };
        for (i, server) in gw.spec.servers.iter().enumerate() {
            let mut others: Vec<String> = server
                .hosts
                .iter()
                .flat_map(|host| &claims[&claim(server, host)])
                .filter(|&&o| o != g)
                .map(|&o| selected[o].key())
                .collect();
            if others.is_empty() {
                continue;
            }
            others.sort();
            others.dedup();
            at.push(
                Severity::Dangling,
                format!("spec.servers[{i}]"),
                format!(
                    "conflict with gateways {} (workload selector {}, port {}, hosts {}) (IST0145)",
                    others.join(","),
                    selector(&gw.spec.selector),
                    server.port.number,
                    server.hosts.join(",")
                ),
            );
        }
    }
}

/// Labels as a Kubernetes selector prints them (and istioctl quotes them): `k=v,k2=v2`, sorted.
fn selector(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// One server's own rules; whether its `tls` block is complete enough to load certificates.
fn check_server(at: &mut At<'_, Gateway>, prefix: &str, server: &Server) -> bool {
    at.port(format!("{prefix}.port.number"), server.port.number);
    let protocol = server.port.protocol.to_ascii_uppercase();
    if !PROTOCOLS.contains(&protocol.as_str()) {
        at.error(
            format!("{prefix}.port.protocol"),
            format!("unknown protocol {} (Istio accepts {})", server.port.protocol, PROTOCOLS.join(", ")),
        );
    }
    if server.hosts.is_empty() {
        at.error(format!("{prefix}.hosts"), "server must have at least one host");
    }
    for (j, host) in server.hosts.iter().enumerate() {
        let field = format!("{prefix}.hosts[{j}]");
        match server_host_error(host) {
            Some(message) => at.error(field, message),
            None => at.host(field, host.split_once('/').map_or(host.as_str(), |(_, h)| h)),
        }
    }
    let is_tls = matches!(protocol.as_str(), "HTTPS" | "TLS");
    match &server.tls {
        None if is_tls => {
            at.error(format!("{prefix}.tls"), format!("server with protocol {protocol} must have tls settings"));
            false
        }
        None => true,
        Some(tls) if !is_tls => {
            if tls != &(ServerTlsSettings { https_redirect: tls.https_redirect, ..Default::default() }) {
                at.error(
                    format!("{prefix}.tls"),
                    "server cannot have tls settings other than httpsRedirect for plain-text \
                     protocols",
                );
            }
            true
        }
        Some(tls) => check_tls(at, &format!("{prefix}.tls"), tls),
    }
}

/// Istio's `validateTlsOptions` for terminating modes: some certificate source, and a CA for
/// client verification when it comes from files.
fn check_tls(at: &mut At<'_, Gateway>, prefix: &str, tls: &ServerTlsSettings) -> bool {
    let mode = match tls.mode {
        Some(m @ (ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual)) => m,
        _ => return true,
    };
    let credential = tls.credential_name.is_some() || !tls.credential_names.is_empty();
    let files = tls.server_certificate.is_some() && tls.private_key.is_some();
    if !credential && !files && tls.tls_certificates.is_empty() {
        at.error(
            format!("{prefix}.mode"),
            format!("tls mode {mode} requires credentialName, or serverCertificate and privateKey"),
        );
        return false;
    }
    let file_ca = tls.ca_certificates.is_some() || tls.tls_certificates.iter().any(|c| c.ca_certificates.is_some());
    if mode != ServerTlsMode::Simple && !credential && !file_ca {
        at.error(
            format!("{prefix}.caCertificates"),
            format!("tls mode {mode} requires caCertificates to verify client certificates"),
        );
        return false;
    }
    true
}

/// Istio's `validateNamespaceSlashWildcardHostname` for gateways: `[ns/]dnsName`, the namespace
/// `*`, `.` or a DNS-1123 label, the name `*`, an IP, or a fully qualified name of DNS labels
/// (a `*` label leftmost only, which [`At::host`] words).
fn server_host_error(host: &str) -> Option<String> {
    let name = match host.split_once('/') {
        Some((ns, name)) if ns.is_empty() || name.is_empty() => {
            return Some("config namespace and dnsName in host entry cannot be empty".to_owned());
        }
        Some((ns, _)) if ns != "*" && ns != "." && !dns_label(ns) => {
            return Some(format!("invalid namespace value {ns:?} in gateway"));
        }
        Some((_, name)) => name,
        None => host,
    };
    if name == "*" || name.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    if !name.contains('.') {
        return Some(format!("invalid host {name}: short names (non FQDN) are not allowed"));
    }
    // Labels with a `*` are judged by where the wildcard stands, in `At::host`.
    let bad_label = name.split('.').any(|label| {
        !label.contains('*')
            && (label.is_empty()
                || label.len() > 63
                || label.starts_with('-')
                || label.ends_with('-')
                || !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    });
    bad_label.then(|| format!("invalid host {name}: not a DNS name"))
}
