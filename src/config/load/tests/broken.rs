//! Every broken-config fixture is refused with its one expected message.

use super::*;

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

/// A duplicate empty key at the very end of a file (found by the config_load fuzzer): the walk
/// marks an empty key where the next token starts, past the last line for the second: the
/// diagnostic points at the last line instead.
#[test]
fn a_duplicate_key_at_the_end_points_at_a_line_the_file_has() {
    let scratch = Scratch::new("dup-at-end", &[("d.yaml", "\n?\n?  ")]);
    let file = scratch.path("d.yaml");
    let got: Vec<String> = load(std::slice::from_ref(&file)).unwrap_err().iter().map(ToString::to_string).collect();
    assert_eq!(got, [format!("{}:3: document 1: [\"\"]: duplicate key \"\" (first at line 3)", file.display())]);
}
