use super::*;

/// The compressors an instance labelled `labels` in namespace `namespace` gets on `port` from
/// `yaml` (EnvoyFilter documents), as (encoding, min_content_length).
fn chain(yaml: &str, labels: &[(&str, &str)], namespace: &str, port: u16) -> Vec<(&'static str, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ef.yaml");
    std::fs::write(&path, yaml).unwrap();
    let set = crate::config::load(&[path]).unwrap_or_else(|e| panic!("{e}"));
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let c = Compressors::new(&set, &labels, namespace).for_port(port);
    c.map(|c| c.compressors.iter().map(|c| (c.library.encoding(), c.min_content_length)).collect()).unwrap_or_default()
}

fn filter(
    name: &str,
    namespace: &str,
    extra_spec: &str,
    patch_match: &str,
    op: &str,
    library: &str,
    min: u32,
) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{extra_spec}  configPatches:
  - applyTo: HTTP_FILTER
    match: {patch_match}
    patch:
      operation: {op}
      value:
        name: envoy.filters.http.compressor
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
          content_length: {min}
          compressor_library:
            name: lib
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.compression.{library}
"#
    )
}

const GZIP: &str = "gzip.compressor.v3.Gzip";
const BR: &str = "brotli.compressor.v3.Brotli";
const GATEWAY: &str = "{context: GATEWAY}";

#[test]
fn root_and_own_namespace_filters_apply_when_they_select_the_gateway() {
    let ingress = [("istio", "ingressgateway")];
    let selected = "  workloadSelector: {labels: {istio: ingressgateway}}\n";
    let other = "  workloadSelector: {labels: {app: reviews}}\n";
    let yaml = |ns: &str, spec: &str| filter("f", ns, spec, GATEWAY, "INSERT_BEFORE", GZIP, 40);
    assert_eq!(chain(&yaml("istio-system", ""), &ingress, "default", 80), [("gzip", 40)]);
    assert_eq!(chain(&yaml("istio-system", selected), &ingress, "default", 80), [("gzip", 40)]);
    assert_eq!(chain(&yaml("istio-system", other), &ingress, "default", 80), []);
    assert_eq!(chain(&yaml("gw-ns", ""), &ingress, "gw-ns", 80), [("gzip", 40)]);
    assert_eq!(chain(&yaml("apps", ""), &ingress, "gw-ns", 80), []);
    let refs = "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]\n";
    let named = [("istio", "ingressgateway"), ("gateway.networking.k8s.io/gateway-name", "edge")];
    assert_eq!(chain(&yaml("gw-ns", refs), &named, "gw-ns", 80), [("gzip", 40)]);
    assert_eq!(chain(&yaml("gw-ns", refs), &ingress, "gw-ns", 80), []);
    // istiod attaches by targetRefs only within the gateway's namespace, the root's included.
    assert_eq!(chain(&yaml("istio-system", refs), &named, "default", 80), []);
}

#[test]
fn only_gateway_contexts_and_the_matched_port() {
    let ingress = [("istio", "ingressgateway")];
    let yaml = |m: &str| filter("f", "istio-system", "", m, "INSERT_BEFORE", GZIP, 0);
    assert_eq!(chain(&yaml("{context: SIDECAR_INBOUND}"), &ingress, "default", 80), []);
    assert_eq!(chain(&yaml("{context: ANY}"), &ingress, "default", 80), [("gzip", 30)]);
    let port = "{context: GATEWAY, listener: {portNumber: 8080}}";
    assert_eq!(chain(&yaml(port), &ingress, "default", 80), []);
    assert_eq!(chain(&yaml(port), &ingress, "default", 8080), [("gzip", 30)]);
    let tcp = "{listener: {filterChain: {filter: {name: envoy.filters.network.tcp_proxy}}}}";
    assert_eq!(chain(&yaml(tcp), &ingress, "default", 80), []);
}

#[test]
fn chain_order_follows_namespace_priority_and_insert_first() {
    let ingress = [("istio", "ingressgateway")];
    let own = filter("a", "default", "  priority: -5\n", GATEWAY, "INSERT_BEFORE", BR, 50);
    let root = filter("b", "istio-system", "  priority: 3\n", GATEWAY, "INSERT_BEFORE", GZIP, 60);
    let first = filter("c", "istio-system", "  priority: 4\n", GATEWAY, "INSERT_FIRST", BR, 70);
    let yaml = [own, root, first].join("---\n");
    // The root namespace's first (INSERT_FIRST at the head), then the gateway namespace's.
    assert_eq!(chain(&yaml, &ingress, "default", 80), [("br", 70), ("gzip", 60), ("br", 50)]);
}
