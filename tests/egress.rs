//! Istio's egress gateway tasks end to end on both drivers: each task's YAML (what it applies
//! that reaches the `istio-egressgateway`, in `tests/egress/`) run through the real binary as
//! the egress gateway (`--label istio=egressgateway`, `--namespace istio-system`), its external
//! hostnames answered by the tests' DNS server with 127.0.0.1, where plain and TLS backends
//! signed by the test CA stand in for the external services. What differs from the tasks: the
//! ports (the test's own in place of 80 and 443), the test CA trusted as the system's roots
//! (`SSL_CERT_FILE`), and the sidecar's leg into the gateway, which the tasks secure with
//! `ISTIO_MUTUAL` (Istio's mesh certificates, which Strait does not have), taken as plain HTTP.

use strait_test_support::{self as support, both_drivers, gateway};

use std::net::{Ipv4Addr, SocketAddr};

use base64::Engine as _;
use support::backend::Backend;
use support::client;
use support::dns::DnsServer;
use support::tls::{secret_in, Ca, TlsBackend, TlsClient};
use support::{free_port, Driver, Gateway};

const HTTP: &str = include_str!("egress/http.yaml");
const PASSTHROUGH: &str = include_str!("egress/passthrough.yaml");
const TLS_ORIGINATION: &str = include_str!("egress/tls-origination.yaml");
const MTLS_ORIGINATION: &str = include_str!("egress/mtls-origination.yaml");
const WILDCARD: &str = include_str!("egress/wildcard.yaml");

/// `yaml` with each `(from, to)` replaced, every `from` found at least once.
fn replaced(yaml: &str, replace: &[(String, String)]) -> String {
    replace.iter().fold(yaml.to_string(), |text, (from, to)| {
        assert!(text.contains(from.as_str()), "the task's YAML no longer holds `{from}`");
        text.replace(from.as_str(), to)
    })
}

/// A task's YAML with the gateway's port `listen.0` moved to `listen.1` (the Gateway server's
/// `number` and the routes' match `port`, by their indentation) and the external service's port
/// `upstream.0` to `upstream.1` (the ServiceEntry's, the destinations' and a DestinationRule's
/// `portLevelSettings`), so that tests can run side by side.
fn moved(yaml: &str, listen: (u16, u16), upstream: (u16, u16)) -> String {
    let mut replace = vec![(format!("\n      number: {}\n", listen.0), format!("\n      number: {}\n", listen.1))];
    replace.push((format!("\n  - number: {}\n", upstream.0), format!("\n  - number: {}\n", upstream.1)));
    let optional = [
        (format!("\n      port: {}\n", listen.0), format!("\n      port: {}\n", listen.1)),
        (format!("\n          number: {}\n", upstream.0), format!("\n          number: {}\n", upstream.1)),
        (format!("\n        number: {}\n", upstream.0), format!("\n        number: {}\n", upstream.1)),
    ];
    let mut text = replaced(yaml, &replace);
    for (from, to) in optional {
        text = text.replace(&from, &to);
    }
    text
}

/// The task's Gateway server for `host` secured with `ISTIO_MUTUAL` (the sidecar's leg into the
/// egress gateway), taken as plain HTTP.
fn plain_sidecar_leg(yaml: &str, host: &str) -> String {
    let mutual = format!("      protocol: HTTPS\n    hosts:\n    - {host}\n    tls:\n      mode: ISTIO_MUTUAL\n");
    replaced(yaml, &[(mutual, format!("      protocol: HTTP\n    hosts:\n    - {host}\n"))])
}

/// The egress gateway serving `yaml`, asking `dns` for names, with the access log on.
fn egress(driver: Driver, yaml: &str, dns: &DnsServer) -> support::GatewayBuilder {
    let args = ["--label", "istio=egressgateway", "--namespace", "istio-system", "--access-log", "--dns-server"];
    args.iter().fold(gateway!(driver).file("egress.yaml", yaml), |gw, arg| gw.arg(arg)).arg(&dns.addr.to_string())
}

/// A DNS server answering 127.0.0.1 for `names`.
fn dns(names: &[&str]) -> DnsServer {
    let dns = DnsServer::start();
    for name in names {
        dns.set(name, &[Ipv4Addr::LOCALHOST]);
    }
    dns
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The access-log lines naming `cluster`, once `count` are written (a connection's line is
/// written when it ends, after the client has its answer).
fn logged(gw: &Gateway, cluster: &str, count: usize) -> String {
    let lines = || gw.stdout().lines().filter(|l| l.contains(cluster)).collect::<Vec<_>>().join("\n");
    let found = support::wait_until(std::time::Duration::from_secs(10), || lines().lines().count() >= count);
    assert!(found.is_some(), "{count} access-log lines never named {cluster}:\n{}\n{}", gw.stdout(), gw.logs());
    lines()
}

/// The value of the `family` sample whose labels hold every one of `labels`.
fn sample(gw: &Gateway, family: &str, labels: &[&str]) -> Option<f64> {
    let body = gw.admin_get("/stats/prometheus").1;
    body.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && labels.iter().all(|want| l.contains(want)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// README's egress example is the HTTP task's YAML that `http_to_an_external_host…` runs.
#[test]
fn the_readme_shows_the_http_task_as_tested() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let yaml: String = HTTP.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    assert!(readme.contains(&format!("```yaml\n{yaml}```\n")), "README's egress example is not tests/egress/http.yaml");
}

const NGINX: &str = "my-nginx.mesh-external.svc.cluster.local";

/// The head of the task's mutual TLS DestinationRule, and a `workloadSelector` for the gateway.
const TASK_RULE: &str = "  name: originate-mtls-for-nginx\n  namespace: istio-system\nspec:\n";
const SELECTOR: &str = "  workloadSelector:\n    matchLabels:\n      istio: egressgateway\n";

/// A DestinationRule for the mutual TLS task's server, port 443's `tls` block given, ending in `---`.
fn nginx_rule(name: &str, namespace: &str, selector: &str, tls: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{selector}  host: {NGINX}\n  trafficPolicy:\n    portLevelSettings:\n    - port:\n        number: 443\n      tls:\n{tls}---\n"
    )
}

/// The mutual TLS task's server: it requires a client certificate the test CA signed.
struct Nginx {
    ca: Ca,
    client: support::tls::Leaf,
    server: TlsBackend,
    dns: DnsServer,
    port: u16,
}

impl Nginx {
    fn start() -> Nginx {
        let ca = Ca::new("egress test ca");
        let server = TlsBackend::start("nginx", &ca.server(&[NGINX]), Some(&ca));
        Nginx { client: ca.client("client.example.com", None), ca, server, dns: dns(&[NGINX]), port: free_port() }
    }

    /// `task` with the task's Secret and a ServiceEntry for the server, ports moved, the
    /// sidecar's leg plain.
    fn config(&self, task: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        // `kubectl create secret -n istio-system generic client-credential` with tls.key, tls.crt, ca.crt.
        let credential = format!(
            "{}  ca.crt: {}\n",
            secret_in("istio-system", "client-credential", &self.client),
            b64(&self.ca.pem())
        );
        // The task's server is a Kubernetes Service; Strait knows hosts from ServiceEntries.
        let service = format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: my-nginx\nspec:\n  hosts:\n  - {NGINX}\n  ports:\n  - number: 443\n    name: https\n    protocol: HTTPS\n  resolution: DNS\n"
        );
        let yaml = format!("{task}---\n{credential}---\n{service}");
        plain_sidecar_leg(&moved(&yaml, (443, self.port), (443, self.server.port())), NGINX)
    }

    /// A request through `gw` reaches the server over TLS with the credential's certificate.
    fn assert_mutual(&self, gw: &Gateway) {
        let r = client::get(local(self.port), NGINX, "/");
        assert_eq!((r.status, r.body_text().as_str()), (200, "nginx"), "{}", gw.logs());
        assert_eq!(
            self.server.client_certs.lock().unwrap().last(),
            Some(&self.client.der),
            "the credential's certificate"
        );
        assert_eq!(self.server.snis.lock().unwrap().last().cloned().flatten().as_deref(), Some(NGINX));
        logged(gw, &format!("outbound|{}||{NGINX}", self.server.port()), 1);
    }
}

both_drivers! {
    fn http_to_an_external_host_leaves_through_the_gateway(driver) {
        let cnn = Backend::start("cnn");
        let port = free_port();
        let dns = dns(&["edition.cnn.com"]);
        let gw = egress(driver, &moved(HTTP, (80, port), (80, cnn.port())), &dns).start();

        let r = client::get(local(port), "edition.cnn.com", "/politics");
        assert_eq!((r.status, r.body_text().as_str()), (200, "cnn"), "{}", gw.logs());
        assert_eq!(cnn.last().target, "/politics");
        // The gateway serves only the Gateway's hosts: another name finds no route.
        assert_eq!(client::get(local(port), "other.example.com", "/").status, 404);

        // Istio's egress gateway names the external service: cluster, authority, upstream.
        let cluster = format!("outbound|{}||edition.cnn.com", cnn.port());
        let line = logged(&gw, &cluster, 1);
        assert!(line.contains("\"GET /politics HTTP/1.1\" 200"), "{line}");
        assert!(line.contains(&format!("\"edition.cnn.com\" \"127.0.0.1:{}\"", cnn.port())), "{line}");
        let labels = [
            "source_workload=\"istio-egressgateway\"",
            "source_app=\"istio-egressgateway\"",
            "destination_service=\"edition.cnn.com\"",
            "destination_service_name=\"edition.cnn.com\"",
            "response_code=\"200\"",
        ];
        assert_eq!(sample(&gw, "istio_requests_total", &labels), Some(1.0), "{}", gw.admin_get("/stats/prometheus").1);
    }

    fn https_passes_through_the_gateway_routed_by_sni(driver) {
        let ca = Ca::new("egress test ca");
        let cnn = TlsBackend::start("cnn", &ca.server(&["edition.cnn.com"]), None);
        let port = free_port();
        let dns = dns(&["edition.cnn.com"]);
        let gw = egress(driver, &moved(PASSTHROUGH, (443, port), (443, cnn.port())), &dns).start();

        let client = TlsClient::new(&ca);
        let r = client.get(local(port), "edition.cnn.com", "edition.cnn.com", "/politics").unwrap_or_else(|e| panic!("{e}:\n{}", gw.logs()));
        assert_eq!((r.status, r.body_text().as_str()), (200, "cnn"));
        assert_eq!(cnn.snis.lock().unwrap().last().cloned().flatten().as_deref(), Some("edition.cnn.com"));
        // An SNI no tls route names is closed, and reaches no backend.
        assert!(client.get(local(port), "other.example.com", "other.example.com", "/").is_err());
        assert_eq!(cnn.count(), 1);

        let cluster = format!("outbound|{}||edition.cnn.com", cnn.port());
        let line = logged(&gw, &cluster, 1);
        assert!(line.starts_with("[") && line.contains("\"- - -\" 0 "), "{line}");
        assert!(line.contains(&format!("\"127.0.0.1:{}\" {cluster} ", cnn.port())), "{line}");
        assert!(line.contains(" edition.cnn.com"), "the SNI is logged: {line}");
        let opened = sample(&gw, "istio_tcp_connections_opened_total", &["destination_service=\"edition.cnn.com\""]);
        assert!(opened >= Some(1.0), "{}", gw.admin_get("/stats/prometheus").1);
    }

    fn the_gateway_originates_tls_to_the_external_host(driver) {
        let ca = Ca::new("egress test ca");
        let cnn = TlsBackend::start("cnn", &ca.server(&["edition.cnn.com"]), None);
        let roots = tempfile::tempdir().unwrap();
        let roots_file = ca.write(roots.path(), "roots.pem");
        let port = free_port();
        let dns = dns(&["edition.cnn.com"]);
        let yaml = plain_sidecar_leg(&moved(TLS_ORIGINATION, (80, port), (443, cnn.port())), "edition.cnn.com");
        let gw = egress(driver, &yaml, &dns).env("SSL_CERT_FILE", roots_file.to_str().unwrap()).start();

        let r = client::get(local(port), "edition.cnn.com", "/politics");
        assert_eq!((r.status, r.body_text().as_str()), (200, "cnn"), "{}", gw.logs());
        assert_eq!(cnn.last().target, "/politics");
        // No `sni` in the rule: the request's Host is the SNI, checked against the certificate.
        assert_eq!(cnn.snis.lock().unwrap().last().cloned().flatten().as_deref(), Some("edition.cnn.com"));
        let line = logged(&gw, &format!("outbound|{}||edition.cnn.com", cnn.port()), 1);
        assert!(line.contains("\"GET /politics HTTP/1.1\" 200"), "{line}");
    }

    fn the_gateway_originates_mutual_tls_with_the_credential_named(driver) {
        let nginx = Nginx::start();
        let yaml = nginx.config(MTLS_ORIGINATION);
        let gw = egress(driver, &yaml, &nginx.dns).start();
        nginx.assert_mutual(&gw);
    }

    fn a_destination_rule_selecting_the_gateway_replaces_the_rules_for_every_workload(driver) {
        let nginx = Nginx::start();
        // The task's rule selecting the gateway, after a rule for every workload (no client
        // certificate: the server refuses it). istiod takes the selecting rule whole.
        let every = nginx_rule("every-workload", "istio-system", "", "        mode: SIMPLE\n        credentialName: client-credential\n");
        let task = replaced(MTLS_ORIGINATION, &[(TASK_RULE.to_string(), format!("{TASK_RULE}{SELECTOR}"))]);
        let gw = egress(driver, &nginx.config(&format!("{every}{task}")), &nginx.dns).start();
        nginx.assert_mutual(&gw);
    }

    fn a_destination_rule_selecting_the_gateway_from_another_namespace_never_applies(driver) {
        let nginx = Nginx::start();
        // Selecting the gateway's labels from the Gateway resource's namespace, not the
        // gateway's own (plain text: the server refuses it). istiod keeps such a rule to its
        // namespace's workloads.
        let elsewhere = nginx_rule("elsewhere", "default", SELECTOR, "        mode: DISABLE\n");
        let gw = egress(driver, &nginx.config(&format!("{elsewhere}{MTLS_ORIGINATION}")), &nginx.dns).start();
        nginx.assert_mutual(&gw);
    }

    fn every_sni_of_a_wildcard_host_passes_through_to_the_one_named(driver) {
        let ca = Ca::new("egress test ca");
        let wikipedia = TlsBackend::start("wikipedia", &ca.server(&["*.wikipedia.org"]), None);
        let port = free_port();
        let dns = dns(&["www.wikipedia.org"]);
        let gw = egress(driver, &moved(WILDCARD, (443, port), (443, wikipedia.port())), &dns).start();

        let client = TlsClient::new(&ca);
        for sni in ["en.wikipedia.org", "de.wikipedia.org"] {
            let r = client.get(local(port), sni, sni, "/wiki/Main_Page").unwrap_or_else(|e| panic!("{sni}: {e}:\n{}", gw.logs()));
            assert_eq!((r.status, r.body_text().as_str()), (200, "wikipedia"));
            assert_eq!(wikipedia.snis.lock().unwrap().last().cloned().flatten().as_deref(), Some(sni));
        }
        assert!(client.get(local(port), "wikipedia.com", "wikipedia.com", "/").is_err(), "not a *.wikipedia.org name");
        logged(&gw, &format!("outbound|{}||www.wikipedia.org", wikipedia.port()), 2);
    }

    fn export_to_is_read_from_the_gateway_s_own_namespace(driver) {
        let cnn = Backend::start("cnn");
        let dns = dns(&["edition.cnn.com"]);
        // The task's ServiceEntry beside its Gateway resource (namespace default), exported
        // only there: istiod keeps it from the gateway, which runs in istio-system. Exported to
        // istio-system, the gateway has it.
        for (export_to, status) in [("[\".\"]", 503), ("[istio-system]", 200)] {
            let port = free_port();
            let head = "  name: cnn\nspec:\n".to_string();
            let yaml = replaced(HTTP, &[(head.clone(), format!("{head}  exportTo: {export_to}\n"))]);
            let gw = egress(driver, &moved(&yaml, (80, port), (80, cnn.port())), &dns).start();
            let r = client::get(local(port), "edition.cnn.com", "/politics");
            assert_eq!(r.status, status, "exportTo: {export_to}:\n{}", gw.logs());
        }
        assert_eq!(cnn.count(), 1);
    }

    fn istio_mutual_into_the_gateway_is_refused_by_name(driver) {
        let dns = dns(&["edition.cnn.com"]);
        let (status, logs) = egress(driver, &moved(TLS_ORIGINATION, (80, free_port()), (443, 8443)), &dns).start_refused();
        assert!(!status.success());
        assert!(logs.contains("istio-egressgateway") && logs.contains("ISTIO_MUTUAL"), "{logs}");
    }
}
