//! Loader tests: every seed example loads; every loader-level fault gives one exact diagnostic.

use std::path::PathBuf;

use crate::config::gateway::ServerTlsMode;
use crate::config::*;

const SEEDS: &str = "tests/fixtures/config/seeds";
const BROKEN: &str = "tests/fixtures/config/broken";

fn load_one(path: &str) -> Result<ConfigSet, Diagnostics> {
    load(&[PathBuf::from(path)])
}

fn seed(name: &str) -> ConfigSet {
    load_one(&format!("{SEEDS}/{name}")).unwrap_or_else(|d| panic!("{name} does not load:\n{d}"))
}

/// A scratch directory of YAML files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str, files: &[(&str, &str)]) -> Scratch {
        let dir = std::env::temp_dir().join(format!("strait-config-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn seed_http_gateway() {
    let set = seed("000-http-gateway.yaml");
    assert_eq!(set.gateways.len(), 1);
    let gw = &set.gateways[0];
    assert_eq!(gw.key(), "default/http-gateway");
    assert_eq!(gw.api_version, "networking.istio.io/v1alpha3");
    assert_eq!((gw.origin.document, gw.origin.line), (1, 2));
    assert_eq!(gw.spec.selector.get("istio").map(String::as_str), Some("ingressgateway"));
    let server = &gw.spec.servers[0];
    assert_eq!((server.port.number, server.port.protocol.as_str()), (80, "HTTP"));
    assert_eq!(server.hosts, ["*.example.com"]);
    assert!(server.tls.as_ref().unwrap().https_redirect);
}

#[test]
fn seed_https_gateway() {
    let set = seed("000-https-gateway.yaml");
    let tls = set.gateways[0].spec.servers[0].tls.as_ref().unwrap();
    assert_eq!(tls.mode, Some(ServerTlsMode::Simple));
    assert_eq!(tls.credential_name.as_deref(), Some("bookinfo-tls-secret"));
}

#[test]
fn seed_multi_port_gateway() {
    let set = seed("000-multi-port-gateway.yaml");
    let gw = &set.gateways[0];
    assert_eq!(gw.key(), "some-config-namespace/my-gateway");
    let ports: Vec<u32> = gw.spec.servers.iter().map(|s| s.port.number).collect();
    assert_eq!(ports, [80, 443, 9443, 9080]);
    let tls = gw.spec.servers[1].tls.as_ref().unwrap();
    assert_eq!(tls.server_certificate.as_deref(), Some("/etc/certs/servercert.pem"));
    assert_eq!(gw.spec.servers[2].hosts, ["bookinfo-namespace/*.bookinfo.com"]);
}

#[test]
fn seed_bookinfo() {
    let set = seed("001-bookinfo.yaml");
    assert_eq!((set.gateways.len(), set.virtual_services.len()), (1, 2));
    let gw = &set.gateways[0];
    let mongo = gw.spec.servers.last().unwrap();
    assert_eq!((mongo.port.number, mongo.port.protocol.as_str()), (27017, "MONGO"));

    let rule = &set.virtual_services[0];
    assert_eq!(rule.key(), "bookinfo-namespace/bookinfo-rule");
    assert_eq!((rule.origin.document, rule.origin.line), (2, 55));
    assert_eq!(rule.spec.gateways, ["some-config-namespace/my-gateway", "mesh"]);
    let cookie = &rule.spec.http[0].matches[0].headers["cookie"];
    assert_eq!(cookie.exact.as_deref(), Some("user=dev-123"));
    let to_qa = &rule.spec.http[0].route[0].destination;
    assert_eq!(to_qa.host, "reviews.qa.svc.cluster.local");
    assert_eq!(to_qa.port.as_ref().map(|p| p.number), Some(7777));
    let split = &rule.spec.http[1];
    assert_eq!(split.matches[0].uri.as_ref().unwrap().prefix.as_deref(), Some("/reviews/"));
    let weights: Vec<Option<i32>> = split.route.iter().map(|r| r.weight).collect();
    assert_eq!(weights, [Some(80), Some(20)]);
    assert_eq!(split.route[1].destination.port, None);

    let tcp = &set.virtual_services[1];
    assert_eq!((tcp.name(), tcp.origin.document), ("bookinfo-Mongo", 3));
    assert_eq!(tcp.spec.tcp[0].matches[0].port, Some(27017));
    let dest = &tcp.spec.tcp[0].route[0].destination;
    assert_eq!((dest.host.as_str(), dest.port.as_ref().unwrap().number), ("mongo.prod.svc.cluster.local", 5555));
}

#[test]
fn seed_namespace_restricted_gateway() {
    let set = seed("001-namespace-restricted-gateway.yaml");
    assert_eq!(set.gateways[0].spec.servers[0].hosts, ["ns1/*", "ns2/foo.bar.com"]);
}

#[test]
fn seed_server_examples() {
    let set = seed("001-server-examples.yaml");
    let keys: Vec<String> = set.gateways.iter().map(Resource::key).collect();
    assert_eq!(keys, ["default/my-ingress", "default/my-tcp-ingress", "default/my-tls-ingress"]);
    assert_eq!(set.gateways[0].spec.servers[0].port.protocol, "HTTP2");
    assert_eq!(set.gateways[2].origin.document, 3);
}

/// The seed directory as one config: files in name order, and the three copies of
/// `some-config-namespace/my-gateway` in three files are duplicates of the first.
#[test]
fn seed_directory_reports_cross_file_duplicates() {
    let errors = load_one(SEEDS).unwrap_err();
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let first = format!("{SEEDS}/000-multi-port-gateway.yaml:5 (document 1)");
    assert_eq!(
        lines,
        [
            format!(
                "{SEEDS}/001-bookinfo.yaml:7: document 1: Gateway some-config-namespace/my-gateway: \
                 metadata.name: Gateway some-config-namespace/my-gateway is defined twice: first at {first}"
            ),
            format!(
                "{SEEDS}/001-namespace-restricted-gateway.yaml:5: document 1: Gateway \
                 some-config-namespace/my-gateway: metadata.name: Gateway \
                 some-config-namespace/my-gateway is defined twice: first at {first}"
            ),
        ]
    );
}

/// Each broken fixture yields exactly this one diagnostic (Error, or Dangling for a reference).
#[test]
fn broken_fixtures() {
    let cases = [
        ("01-syntax.yaml", "9:4: document 1: did not find expected key"),
        ("02-tab.yaml", "5:1: document 1: tab character in indentation (YAML indents with spaces only)"),
        (
            "03-duplicate-key.yaml",
            "15: document 1: spec.http[0].route[0].destination.host: duplicate key \"host\" \
             (first at line 12)",
        ),
        (
            "04-unknown-kind.yaml",
            "3: document 1: Virtualservice bookinfo/reviews: kind Virtualservice is not a \
             networking.istio.io kind (Gateway, VirtualService, DestinationRule, ServiceEntry, \
             EnvoyFilter, Sidecar, WorkloadEntry, WorkloadGroup, ProxyConfig)",
        ),
        (
            "05-unknown-api-version.yaml",
            "2: document 1: Gateway default/gw: apiVersion networking.istio.io/v2 is not \
             supported (networking.istio.io versions: v1alpha3, v1beta1, v1)",
        ),
        (
            "06-unknown-field.yaml",
            "25: document 2: VirtualService bookinfo/reviews: spec.http[0].timeOut: unknown \
             field `timeOut`, expected one of `name`, `match`, `route`, `redirect`, \
             `directResponse`, `delegate`, `rewrite`, `timeout`, `retries`, `fault`, `mirror`, \
             `mirrors`, `mirrorPercent`, `mirrorPercentage`, `corsPolicy`, `headers`",
        ),
        (
            "07-wrong-type.yaml",
            "11: document 1: Gateway default/gw: spec.servers[0].port.number: invalid type: \
             string \"eighty\", expected u32",
        ),
        (
            "08-bad-enum.yaml",
            "16: document 1: Gateway default/gw: spec.servers[0].tls.mode: unknown variant \
             `STRICT`, expected one of `PASSTHROUGH`, `SIMPLE`, `MUTUAL`, `AUTO_PASSTHROUGH`, \
             `ISTIO_MUTUAL`, `OPTIONAL_MUTUAL`",
        ),
        (
            "09-bad-duration.yaml",
            "13: document 1: VirtualService default/reviews: spec.http[0].timeout: invalid \
             duration \"5\": missing unit (one of ns, us, ms, s, m, h)",
        ),
        (
            "10-duplicate-name.yaml",
            "13: document 2: DestinationRule bookinfo/reviews: metadata.name: DestinationRule \
             bookinfo/reviews is defined twice: first at \
             tests/fixtures/config/broken/10-duplicate-name.yaml:5 (document 1)",
        ),
        (
            "11-weights-all-zero.yaml",
            "21: document 2: VirtualService default/reviews: spec.http[0].route: total destination weight = 0",
        ),
        (
            "12-route-and-redirect.yaml",
            "21: document 2: VirtualService default/reviews: spec.http[0]: http route cannot contain both route and redirect",
        ),
        (
            "13-no-action.yaml",
            "21: document 2: VirtualService default/reviews: spec.http[0]: http route must have one of route, redirect, directResponse or delegate",
        ),
        (
            "14-bad-regex.yaml",
            "22: document 2: VirtualService default/reviews: spec.http[0].match[0].uri.regex: invalid regex \"/api/(v1\": unclosed group (RE2 syntax)",
        ),
        (
            "15-port-out-of-range.yaml",
            "10: document 1: Gateway default/gw: spec.servers[0].port.number: port number 80800 must be in the range 1..65535",
        ),
        (
            "16-percent-out-of-range.yaml",
            "24: document 2: VirtualService default/reviews: spec.http[0].fault.abort.percentage.value: percentage 150 is not in range 0..100",
        ),
        (
            "17-unknown-protocol.yaml",
            "10: document 1: Gateway default/gw: spec.servers[0].port.protocol: unknown protocol HTTP3 (Istio accepts HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, MYSQL, REDIS, TCP, TLS, UDP)",
        ),
        (
            "18-https-without-tls.yaml",
            "10: document 1: Gateway default/gw: spec.servers[0].tls: server with protocol HTTPS must have tls settings",
        ),
        (
            "19-missing-cert-file.yaml",
            "14: document 1: Gateway default/gw: spec.servers[0].tls.serverCertificate: cannot read tests/fixtures/config/broken/missing/cert.pem: No such file or directory (os error 2)",
        ),
        (
            "20-unparsable-cert-file.yaml",
            "14: document 1: Gateway default/gw: spec.servers[0].tls.serverCertificate: no PEM certificate found",
        ),
        (
            "21-conflicting-protocols.yaml",
            "21: document 2: Gateway default/secure: spec.servers[0].port.protocol: protocol HTTPS conflicts with HTTP on port 80, served by Gateway default/gw spec.servers[0]",
        ),
        (
            "22-missing-gateway.yaml",
            "8: document 1: VirtualService default/reviews: spec.gateways[0]: referenced gateway not found: edge/gw",
        ),
        (
            "23-unknown-host.yaml",
            "22: document 2: VirtualService default/reviews: spec.http[0].route[0].destination.host: referenced host not found: ratings.example.com (no ServiceEntry visible from namespace default declares it)",
        ),
        (
            "24-unknown-subset.yaml",
            "22: document 2: VirtualService default/reviews: spec.http[0].route[0].destination.subset: referenced subset not found: no DestinationRule visible from namespace default declares subset v2 for reviews.example.com",
        ),
        (
            "25-unknown-port.yaml",
            "22: document 2: VirtualService default/reviews: spec.http[0].route[0].destination.port.number: referenced port not found: ServiceEntry default/reviews has no port 8080 for reviews.example.com",
        ),
        (
            "26-bad-redirect-code.yaml",
            "21: document 2: VirtualService default/reviews: spec.http[0].redirect.redirectCode: redirectCode 200 is not one of 301, 302, 303, 307, 308",
        ),
        (
            "27-wildcard-not-leftmost.yaml",
            "18: document 2: VirtualService default/reviews: spec.hosts[0]: invalid host reviews.*.com: a wildcard is only allowed as the leftmost character",
        ),
        (
            "28-empty-hosts.yaml",
            "17: document 2: VirtualService default/reviews: spec.hosts: virtual service must have at least one host",
        ),
        (
            "29-duplicate-subset-names.yaml",
            "11: document 1: DestinationRule default/reviews: spec.subsets[1].name: duplicate subset name v1",
        ),
        (
            "30-static-endpoint-without-address.yaml",
            "12: document 1: ServiceEntry default/reviews: spec.endpoints[0].address: endpoint address is required for resolution type STATIC",
        ),
        (
            "31-negative-weight.yaml",
            "27: document 2: VirtualService default/reviews: spec.http[0].route[2].weight: weight -10 < 0",
        ),
        (
            "32-direct-response-status.yaml",
            "21: document 2: VirtualService default/reviews: spec.http[0].directResponse.status: status 99 is not in range 200..599",
        ),
        (
            "33-resolution-none-with-endpoints.yaml",
            "11: document 1: ServiceEntry default/reviews: spec.endpoints: no endpoints should be provided for resolution type NONE",
        ),
        (
            "34-duplicate-service-port.yaml",
            "11: document 1: ServiceEntry default/reviews: spec.ports[1].number: service entry port 9080 already defined",
        ),
        (
            "35-missing-credential.yaml",
            "14: document 1: Gateway default/gw: spec.servers[0].tls.credentialName: no Secret nowhere-cert in namespace default (the gateway's namespace, --namespace) and no directory tests/fixtures/snapshot/secrets/nowhere-cert",
        ),
        (
            "36-gateway-without-servers.yaml",
            "9: document 1: Gateway default/gw: spec.servers: gateway must have at least one server",
        ),
        (
            "37-short-server-host.yaml",
            "11: document 1: Gateway default/gw: spec.servers[0].hosts[0]: invalid host reviews: short names (non FQDN) are not allowed",
        ),
        (
            "38-bad-host-namespace.yaml",
            "11: document 1: Gateway default/gw: spec.servers[0].hosts[0]: invalid namespace value \"Team_A\" in gateway",
        ),
        (
            "39-duplicate-virtual-service-hosts.yaml",
            "18: document 2: VirtualService default/reviews: spec.hosts[1]: duplicate hosts in virtual service: *.example.com & reviews.example.com",
        ),
        (
            "40-bad-header-name.yaml",
            "23: document 2: VirtualService default/reviews: spec.http[0].match[0].headers.end user: header name \"end user\" is not a valid header name",
        ),
        (
            "41-redirect-and-rewrite.yaml",
            "22: document 2: VirtualService default/reviews: spec.http[0].rewrite: http route cannot contain both rewrite and redirect",
        ),
        (
            "42-bad-tcp-subnet.yaml",
            "22: document 2: VirtualService default/mongo: spec.tcp[0].match[0].sourceSubnet: \"10.0.0.0/33\" is not a valid IP address or CIDR block",
        ),
    ];
    let opts =
        ValidateOptions { secrets_dir: Some("tests/fixtures/snapshot/secrets".into()), ..ValidateOptions::default() };
    for (file, expected) in cases {
        let path = format!("{BROKEN}/{file}");
        // Load faults first, as `strait validate` reports them; else validation's, less the
        // not-enforced warnings.
        let faults = match load_one(&path) {
            Err(errors) => errors,
            Ok(set) => validate(&set, &opts).into_iter().filter(|d| d.severity != Severity::NotEnforced).collect(),
        };
        let got: Vec<String> = faults.iter().map(ToString::to_string).collect();
        assert_eq!(got, [format!("{path}:{expected}")], "{file}");
    }
    let count = std::fs::read_dir(BROKEN).unwrap().count();
    assert_eq!(count, cases.len(), "every broken fixture is asserted");
}

/// Errors of every file and document are collected, in order, and good documents around a
/// bad one do not hide it.
#[test]
fn all_errors_are_collected_in_order() {
    let scratch = Scratch::new(
        "collect",
        &[
            ("a.yaml", "kind: Gateway\nmetadata: {name: a}\n---\n- 1\n---\napiVersion: networking.istio.io/v1\n"),
            ("b.yml", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: b}\nspec: {servers: 3}\n"),
            ("c.txt", "not: [yaml\n"),
        ],
    );
    let missing = scratch.path("missing.yaml");
    let errors = load(&[scratch.0.clone(), missing.clone()]).unwrap_err();
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let (a, b) = (scratch.path("a.yaml"), scratch.path("b.yml"));
    assert_eq!(
        got,
        [
            format!("{}:1: document 1: missing apiVersion", a.display()),
            format!("{}:4: document 2: expected a Kubernetes object (a mapping with apiVersion and kind)", a.display()),
            format!("{}:6: document 3: missing kind", a.display()),
            format!(
                "{}:4: document 1: Gateway default/b: spec.servers: invalid type: integer `3`, \
                 expected a sequence",
                b.display()
            ),
            format!("{}: cannot read: No such file or directory (os error 2)", missing.display()),
        ]
    );
}

#[test]
fn other_kinds_are_skipped_and_lists_and_secrets_are_read() {
    let scratch = Scratch::new(
        "kinds",
        &[(
            "all.yaml",
            "# leading comment\n\
             ---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec: {replicas: 1}\n\
             ---\n\
             ---\n\
             apiVersion: v1\nkind: Secret\nmetadata:\n  name: cert\n  namespace: istio-system\n\
             type: kubernetes.io/tls\ndata:\n  tls.crt: Y2VydA==\n  tls.key: a2V5\n\
             stringData:\n  ca.crt: ca\n\
             ---\n\
             apiVersion: v1\nkind: List\nitems:\n\
             - apiVersion: networking.istio.io/v1beta1\n  kind: ServiceEntry\n  metadata: {name: ext}\n  \
               spec:\n    hosts: [api.example.com]\n    resolution: DNS\n    ports: [{number: 443, name: https, protocol: TLS}]\n\
             - apiVersion: networking.istio.io/v1beta1\n  kind: DestinationRule\n  metadata: {name: ext}\n  \
               spec:\n    host: api.example.com\n    trafficPolicy: {tls: {mode: SIMPLE}}\n",
        )],
    );
    let set = load(&[scratch.path("all.yaml")]).unwrap();
    assert!(set.gateways.is_empty() && set.virtual_services.is_empty());

    let secret = &set.secrets[0];
    assert_eq!((secret.key().as_str(), secret.origin.document), ("istio-system/cert", 3));
    assert_eq!(secret.spec.tls_cert().unwrap().as_deref(), Some(&b"cert"[..]));
    assert_eq!(secret.spec.tls_key().unwrap().as_deref(), Some(&b"key"[..]));
    assert_eq!(secret.spec.ca_cert().unwrap().as_deref(), Some(&b"ca"[..]));
    assert_eq!(secret.spec.get("nope").unwrap(), None);

    let se = &set.service_entries[0];
    assert_eq!((se.key().as_str(), se.origin.item, se.origin.line), ("default/ext", Some(0), 24));
    assert_eq!(se.spec.resolution, Some(service_entry::Resolution::Dns));
    let dr = &set.destination_rules[0];
    assert_eq!((dr.origin.document, dr.origin.item, dr.origin.line), (4, Some(1), 31));
    // Field lines inside a List item are found through the item.
    assert_eq!(dr.origin.locate("spec.trafficPolicy"), 36);
}

#[test]
fn istio_kinds_not_acted_on_are_kept_for_listing() {
    let scratch = Scratch::new(
        "unenforced",
        &[(
            "p.yaml",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny, namespace: istio-system}\n\
             spec: {action: DENY}\n---\n\
             apiVersion: telemetry.istio.io/v1alpha1\nkind: Telemetry\nmetadata: {name: mesh-default}\nspec: {}\n---\n\
             apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: f}\nspec: {configPatches: []}\n---\n\
             apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nspec: {url: oci://x}\n",
        )],
    );
    let set = load(&[scratch.path("p.yaml")]).unwrap();
    let got: Vec<(&str, Option<&str>, usize, usize)> = set
        .not_enforced
        .iter()
        .map(|d| (d.kind.as_str(), d.resource.as_deref(), d.origin.document, d.origin.line))
        .collect();
    assert_eq!(
        got,
        [
            ("AuthorizationPolicy", Some("istio-system/deny"), 1, 1),
            ("Telemetry", Some("default/mesh-default"), 2, 6),
            ("EnvoyFilter", Some("default/f"), 3, 11),
            ("WasmPlugin", None, 4, 16),
        ]
    );
}

#[test]
fn istio_kinds_and_versions_that_do_not_exist_are_errors() {
    let scratch = Scratch::new(
        "no-such-kind",
        &[(
            "k.yaml",
            "apiVersion: networking.istio.io/v1\nkind: EnvoyFilter\nmetadata: {name: f}\n---\n\
             apiVersion: security.istio.io/v1\nkind: AuthorizationPolicies\nmetadata: {name: a}\n---\n\
             apiVersion: telemetry.istio.io/v2\nkind: Telemetry\nmetadata: {name: t}\n",
        )],
    );
    let file = scratch.path("k.yaml");
    let got: Vec<String> = load(std::slice::from_ref(&file)).unwrap_err().iter().map(ToString::to_string).collect();
    let f = file.display();
    assert_eq!(
        got,
        [
            format!(
                "{f}:1: document 1: EnvoyFilter default/f: apiVersion networking.istio.io/v1 is not served \
                 for EnvoyFilter (versions: v1alpha3)"
            ),
            format!(
                "{f}:6: document 2: AuthorizationPolicies default/a: kind AuthorizationPolicies is not a \
                 security.istio.io kind (AuthorizationPolicy, PeerAuthentication, RequestAuthentication)"
            ),
            format!(
                "{f}:9: document 3: Telemetry default/t: apiVersion telemetry.istio.io/v2 is not served for \
                 Telemetry (versions: v1, v1alpha1)"
            ),
        ]
    );
}

#[test]
fn a_config_with_nothing_strait_reads_is_an_error() {
    let other = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n---\napiVersion: v1\nkind: Service\n\
                 metadata: {name: app}\n";
    let scratch = Scratch::new("nothing", &[("apps.yaml", other), ("notes.txt", "apiVersion: v1\nkind: Secret\n")]);
    let empty = scratch.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let message =
        |paths: &[&PathBuf]| load(&paths.iter().map(|p| p.to_path_buf()).collect::<Vec<_>>()).unwrap_err().to_string();
    let apps = scratch.path("apps.yaml");
    assert_eq!(
        message(&[&empty]),
        format!(
            "--config {}: no Istio resource or v1 Secret (a directory contributes the *.yaml and *.yml files \
             directly in it)",
            empty.display()
        )
    );
    assert_eq!(
        message(&[&scratch.0, &empty]),
        format!(
            "--config {}, {}: nothing Strait reads: 2 documents, none an Istio resource (*.istio.io) or a v1 Secret",
            scratch.0.display(),
            empty.display()
        )
    );
    // A kind Strait does not act on yet is read: its warning says the rest.
    let policy = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict}\n";
    std::fs::write(scratch.path("policy.yaml"), policy).unwrap();
    let set = load(&[apps, scratch.path("policy.yaml")]).unwrap();
    assert_eq!(set.not_enforced.len(), 1);
}

#[test]
fn resource_diagnostics_carry_the_field_line() {
    let set = seed("001-bookinfo.yaml");
    let vs = &set.virtual_services[0];
    let d = vs.diagnostic(Severity::Dangling, "spec.http[1].route[1].destination.host", "no such host");
    assert_eq!(
        d.to_string(),
        format!(
            "{SEEDS}/001-bookinfo.yaml:88: document 2: VirtualService bookinfo-namespace/bookinfo-rule: \
             spec.http[1].route[1].destination.host: no such host"
        )
    );
    assert!(!Diagnostics::from(d).has_errors());
    // A field that does not exist is placed on its deepest existing parent.
    assert_eq!(vs.origin.locate("spec.http[1].route[1].destination.subset"), 87);
    assert_eq!(vs.origin.locate("spec.http[5]"), 68);
    assert_eq!(vs.origin.locate(""), 55);
}

/// A parsed resource serializes back compactly (what `/config_dump` shows) and to the same
/// value.
#[test]
fn specs_round_trip_compactly() {
    let set = seed("001-bookinfo.yaml");
    let vs = &set.virtual_services[1].spec;
    let json = serde_json::to_string(vs).unwrap();
    assert_eq!(
        json,
        r#"{"hosts":["mongosvr.prod.svc.cluster.local"],"gateways":["some-config-namespace/my-gateway"],"tcp":[{"match":[{"port":27017}],"route":[{"destination":{"host":"mongo.prod.svc.cluster.local","port":{"number":5555}}}]}]}"#
    );
    for vs in &set.virtual_services {
        let back: VirtualService = serde_json::from_str(&serde_json::to_string(&vs.spec).unwrap()).unwrap();
        assert_eq!(back, vs.spec);
    }
    let gw = &set.gateways[0].spec;
    assert_eq!(serde_yaml::from_value::<Gateway>(serde_yaml::to_value(gw).unwrap()).unwrap(), *gw);
}

/// Every field of every kind is accepted under its Istio name.
#[test]
fn full_field_coverage() {
    let scratch = Scratch::new("coverage", &[("full.yaml", FULL)]);
    let set = load(&[scratch.path("full.yaml")]).unwrap_or_else(|d| panic!("{d}"));
    let http = &set.virtual_services[0].spec.http[0];
    assert_eq!(http.timeout.map(Duration::get), Some(std::time::Duration::from_secs(5)));
    let cors = http.cors_policy.as_ref().unwrap();
    assert_eq!(cors.unmatched_preflights, Some(virtual_service::UnmatchedPreflights::Ignore));
    let redirect = set.virtual_services[0].spec.http[1].redirect.as_ref().unwrap();
    assert_eq!(redirect.derive_port, Some(virtual_service::RedirectPortSelection::FromRequestPort));
    let policy = set.destination_rules[0].spec.traffic_policy.as_ref().unwrap();
    let outlier = policy.outlier_detection.as_ref().unwrap();
    assert_eq!(outlier.consecutive_5xx_errors, Some(5));
    let pool = policy.connection_pool.as_ref().unwrap().http.as_ref().unwrap();
    assert_eq!(pool.h2_upgrade_policy, Some(destination_rule::H2UpgradePolicy::Upgrade));
    let tls = set.gateways[0].spec.servers[0].tls.as_ref().unwrap();
    assert_eq!(tls.min_protocol_version, Some(gateway::TlsProtocol::TlsV1_2));
    assert_eq!(set.service_entries[0].spec.endpoints[0].ports["http"], 8080);
    // Nothing is lost on the way back out.
    for vs in &set.virtual_services {
        let back = serde_yaml::to_value(&vs.spec).unwrap();
        assert_eq!(serde_yaml::from_value::<VirtualService>(back).unwrap(), vs.spec);
    }
    for dr in &set.destination_rules {
        let back = serde_yaml::to_value(&dr.spec).unwrap();
        assert_eq!(serde_yaml::from_value::<DestinationRule>(back).unwrap(), dr.spec);
    }
}

const FULL: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: full
  namespace: edge
  labels: {app: edge}
  annotations: {note: x}
  uid: 0b7f
  resourceVersion: "12"
  generation: 3
  creationTimestamp: "2024-01-01T00:00:00Z"
  managedFields: [{manager: kubectl}]
spec:
  selector: {istio: ingressgateway}
  servers:
  - name: https
    port: {number: 443, name: https, protocol: HTTPS, targetPort: 8443}
    bind: 0.0.0.0
    defaultEndpoint: 127.0.0.1:8080
    hosts: ["*"]
    tls:
      httpsRedirect: false
      mode: OPTIONAL_MUTUAL
      serverCertificate: /c.pem
      privateKey: /k.pem
      caCertificates: /ca.pem
      caCrl: /crl.pem
      credentialName: a
      credentialNames: [a, b]
      tlsCertificates: [{serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem}]
      subjectAltNames: [spiffe://x]
      verifyCertificateSpki: [abc]
      verifyCertificateHash: [def]
      minProtocolVersion: TLSV1_2
      maxProtocolVersion: TLSV1_3
      cipherSuites: [ECDHE-RSA-AES256-GCM-SHA384]
status: {}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: full, namespace: edge}
spec:
  hosts: [a.example.com]
  gateways: [full]
  exportTo: ["."]
  http:
  - name: main
    match:
    - name: m
      uri: {prefix: /api}
      scheme: {exact: https}
      method: {regex: "GET|POST"}
      authority: {exact: a.example.com}
      headers: {x-present: {}, x-v: {exact: "1"}}
      port: 443
      sourceLabels: {app: x}
      gateways: [full]
      queryParams: {q: {prefix: a}}
      ignoreUriCase: true
      withoutHeaders: {x-no: {}}
      sourceNamespace: ns
      statPrefix: api
    route:
    - destination: {host: api.internal, subset: v1, port: {number: 80}}
      weight: 100
      headers: {request: {set: {a: b}, add: {c: d}, remove: [e]}, response: {remove: [server]}}
    rewrite: {uri: /v2, authority: b.example.com, uriRegexRewrite: {match: "^/a(.*)", rewrite: "/b\\1"}}
    timeout: 5s
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: "5xx,gateway-error", retryRemoteLocalities: true, retryIgnorePreviousHosts: true, backoff: 25ms}
    fault:
      delay: {fixedDelay: 1s, percentage: {value: 0.5}, percent: 1}
      abort: {httpStatus: 503, percentage: {value: 1}}
    mirror: {host: shadow.internal}
    mirrors: [{destination: {host: shadow2.internal}, percentage: {value: 10}}]
    mirrorPercentage: {value: 50}
    mirrorPercent: 50
    corsPolicy:
      allowOrigin: [https://a.example.com]
      allowOrigins: [{exact: https://a.example.com}, {regex: "https://.*\\.example\\.com"}]
      allowMethods: [GET]
      allowHeaders: [x-a]
      exposeHeaders: [x-b]
      maxAge: 24h
      allowCredentials: true
      unmatchedPreflights: IGNORE
    headers: {request: {set: {x: y}}}
  - redirect: {uri: /new, authority: c.example.com, derivePort: FROM_REQUEST_PORT, scheme: https, redirectCode: 308}
  - redirect: {port: 8443}
  - directResponse: {status: 418, body: {string: teapot}}
  - directResponse: {status: 200, body: {bytes: aGk=}}
  - delegate: {name: child, namespace: edge}
  - fault: {abort: {grpcStatus: UNAVAILABLE}, delay: {exponentialDelay: 1ms}}
    route: [{destination: {host: x}}]
  - fault: {abort: {http2Error: REFUSED_STREAM}}
    route: [{destination: {host: x}}]
  tls:
  - match: [{sniHosts: [a.example.com], destinationSubnets: [10.0.0.0/8], port: 443, sourceLabels: {a: b}, gateways: [full], sourceNamespace: ns}]
    route: [{destination: {host: a.internal, port: {number: 443}}, weight: 100}]
  tcp:
  - match: [{destinationSubnets: [10.0.0.0/8], port: 27017, sourceLabels: {a: b}, gateways: [full], sourceNamespace: ns}]
    route: [{destination: {host: mongo.internal}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: full, namespace: edge}
spec:
  host: api.internal
  exportTo: ["*"]
  workloadSelector: {matchLabels: {app: x}}
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: sticky, path: /, ttl: 1h, attributes: [{name: SameSite, value: Strict}, {name: Secure}]}
        ringHash: {minimumRingSize: 1024}
      localityLbSetting:
        enabled: true
        distribute: [{from: us-west/zone1/*, to: {"us-west/zone1/*": 80, "us-west/zone2/*": 20}}]
        failover: [{from: us-east, to: eu-west}]
        failoverPriority: [topology.kubernetes.io/region]
      warmupDurationSecs: 60s
      warmup: {duration: 60s, minimumPercent: 10, aggression: 1.5}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {probes: 3, time: 7200s, interval: 75s}, maxConnectionDuration: 1h, idleTimeout: 1h}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 100, maxRequestsPerConnection: 10, maxRetries: 3, idleTimeout: 1h, h2UpgradePolicy: UPGRADE, useClientProtocol: true, maxConcurrentStreams: 100}
    outlierDetection: {splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 5, consecutiveGatewayErrors: 5, consecutive5xxErrors: 5, consecutiveErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 10, minHealthPercent: 50}
    tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, caCrl: /crl.pem, credentialName: c, subjectAltNames: [x], sni: a.internal, insecureSkipVerify: false}
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {simple: LEAST_REQUEST}
      connectionPool: {tcp: {maxConnections: 1}}
      outlierDetection: {consecutive5xxErrors: 1}
      tls: {mode: DISABLE}
    tunnel: {protocol: CONNECT, targetHost: proxy.internal, targetPort: 3128}
    proxyProtocol: {version: V2}
    retryBudget: {percent: 20, minRetryConcurrency: 3, budgetInterval: 10s}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {consistentHash: {maglev: {tableSize: 65537}, httpHeaderName: x-user}}}
  - name: v2
    trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 1024}}}
  - name: v3
    trafficPolicy: {loadBalancer: {consistentHash: {httpQueryParameterName: u}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: full, namespace: edge}
spec:
  hosts: [api.internal]
  addresses: [10.1.0.0/16]
  ports: [{number: 80, protocol: HTTP, name: http, targetPort: 8080}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - {address: 10.1.0.1, ports: {http: 8080}, labels: {version: v1}, network: n1, locality: us-west/zone1, weight: 1, serviceAccount: sa}
  workloadSelector: {labels: {app: x}}
  exportTo: ["*"]
  subjectAltNames: [spiffe://x]
"#;

#[test]
fn list_items_and_names_are_checked() {
    let scratch = Scratch::new(
        "items",
        &[(
            "list.yaml",
            "apiVersion: v1\nkind: List\nitems:\n\
             - apiVersion: networking.istio.io/v1\n  kind: Gateway\n  metadata: {namespace: x}\n\
             - apiVersion: networking.istio.io/v1\n  kind: Gateway\n  metadata: {name: g}\n  \
               spec:\n    servers:\n    - port: {number: 80, protocol: HTTP, nmae: http}\n\
             - apiVersion: v1\n  kind: List\n",
        )],
    );
    let path = scratch.path("list.yaml");
    let errors = load(std::slice::from_ref(&path)).unwrap_err();
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let f = path.display();
    assert_eq!(
        got,
        [
            format!("{f}:6: document 1: Gateway: metadata.name: a name is required"),
            format!(
                "{f}:12: document 1: Gateway default/g: spec.servers[0].port.nmae: unknown field \
                 `nmae`, expected one of `number`, `protocol`, `name`, `targetPort`"
            ),
            format!("{f}:14: document 1: List: a List inside a List is not supported"),
        ]
    );
}

/// An explicit `null` reads as "unset", as Kubernetes reads it.
#[test]
fn nulls_are_unset() {
    let scratch = Scratch::new(
        "nulls",
        &[("n.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: n\n  namespace:\nspec:\n  hosts: [a]\n  http:\n  tcp: ~\n")],
    );
    let set = load(&[scratch.path("n.yaml")]).unwrap();
    let vs = &set.virtual_services[0];
    assert_eq!((vs.key().as_str(), vs.spec.http.len()), ("default/n", 0));
}

/// A syntax error at the end of a file without a final newline is put on its last line, not
/// on a line after it (found by the `config_load` fuzzer).
#[test]
fn end_of_input_error_is_on_the_last_line() {
    let cut = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw";
    let scratch = Scratch::new("eof", &[("cut.yaml", cut)]);
    let errors = load(&[scratch.path("cut.yaml")]).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let file = scratch.path("cut.yaml");
    assert_eq!(text, [format!("{}:3:20: document 1: did not find expected ',' or '}}'", file.display())]);
}

#[test]
fn a_node_ending_the_input_is_on_the_last_line() {
    // Found by fuzz/config_load: libyaml marks the empty tagged scalar on line 2 of 1.
    for text in ["!!/", "!!/\n"] {
        let scratch = Scratch::new("tag", &[("tag.yaml", text)]);
        let errors = load(&[scratch.path("tag.yaml")]).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let file = scratch.path("tag.yaml");
        assert_eq!(
            text,
            [format!(
                "{}:1: document 1: expected a Kubernetes object (a mapping with apiVersion and kind)",
                file.display()
            )]
        );
    }
}
