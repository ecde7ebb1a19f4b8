//! The seed configs from Istio's and ASM's docs load as the docs mean them, alone and as a directory.

use super::*;

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
