//! Kubernetes Services as Istio's service registry sees them: each Service, with the ready
//! endpoints of its EndpointSlices and the labels of the pods behind them, becomes the
//! ServiceEntry istiod's Kubernetes controller would build in memory (`kube.ConvertService` and
//! the EndpointSlice controller in `pilot/pkg/serviceregistry/kube/controller/`): host
//! `NAME.NAMESPACE.svc.cluster.local`, the Service's ports by name and protocol, and one endpoint
//! per ready address with the slice's port (the targetPort the Service maps to) under the
//! Service port's name. Pure: the watches feed it, unit tests too.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use crate::config::ApiObject;

/// istiod's default `domainSuffix`.
const DOMAIN_SUFFIX: &str = "svc.cluster.local";
/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The annotation istiod reads a Service's `exportTo` from.
const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";

/// Pod labels by (namespace, name), for the endpoints whose `targetRef` names a pod.
pub type PodLabels = HashMap<(String, String), BTreeMap<String, String>>;

/// Every Service as a ServiceEntry object named `k8s:Service/NAMESPACE/NAME`.
pub fn service_entries(services: &[&Service], slices: &[&EndpointSlice], pods: &PodLabels) -> Vec<ApiObject> {
    let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        let ns = slice.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(name) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) {
            by_service.entry((ns, name.as_str())).or_default().push(slice);
        }
    }
    services
        .iter()
        .filter_map(|svc| {
            let ns = svc.metadata.namespace.as_deref()?;
            let name = svc.metadata.name.as_deref()?;
            let slices = by_service.get(&(ns, name)).map(Vec::as_slice).unwrap_or_default();
            Some(ApiObject {
                name: format!("k8s:Service/{ns}/{name}"),
                object: service_entry(svc, ns, name, slices, pods),
            })
        })
        .collect()
}

/// The ServiceEntry port name for a Service port: its own, or `port-N` for the one unnamed port
/// a Service may have (a ServiceEntry port needs a name; endpoints map ports by it).
fn port_name(port: &ServicePort) -> String {
    match port.name.as_deref() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => format!("port-{}", port.port),
    }
}

fn service_entry(svc: &Service, ns: &str, name: &str, slices: &[&EndpointSlice], pods: &PodLabels) -> Value {
    let spec = svc.spec.clone().unwrap_or_default();
    // UDP and SCTP ports carry nothing a gateway routes, as istiod drops them.
    let ports: Vec<&ServicePort> =
        spec.ports.iter().flatten().filter(|p| p.protocol.as_deref().is_none_or(|p| p == "TCP")).collect();
    let se_ports: Vec<Value> = ports
        .iter()
        .map(|p| {
            let mut port = json!({ "number": p.port, "name": port_name(p) });
            if let Some(protocol) = protocol(p.name.as_deref().unwrap_or_default(), p.app_protocol.as_deref()) {
                port["protocol"] = json!(protocol);
            }
            port
        })
        .collect();
    let (resolution, endpoints) = match (spec.type_.as_deref(), spec.external_name.as_deref()) {
        // istiod resolves an ExternalName Service's name by DNS, at the Service's ports.
        (Some("ExternalName"), Some(external)) => {
            let ports: BTreeMap<String, i32> = ports.iter().map(|p| (port_name(p), p.port)).collect();
            ("DNS", vec![json!({ "address": external, "ports": ports })])
        }
        _ => ("STATIC", endpoints(&ports, slices, pods)),
    };
    let mut spec = json!({
        "hosts": [format!("{name}.{ns}.{DOMAIN_SUFFIX}")],
        "location": "MESH_INTERNAL",
        "resolution": resolution,
        "ports": se_ports,
        "endpoints": endpoints,
    });
    let export_to = svc.metadata.annotations.as_ref().and_then(|a| a.get(EXPORT_TO_ANNOTATION));
    if let Some(export_to) = export_to {
        let list: Vec<&str> = export_to.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        spec["exportTo"] = json!(list);
    }
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        // Named apart from the user's ServiceEntries, which may share the Service's name.
        "metadata": { "name": format!("svc.{name}"), "namespace": ns },
        "spec": spec,
    })
}

/// The ready addresses of `slices`, each with the slice's port for every Service port the slice
/// serves (matched by name, as the endpoints controller names slice ports after Service ports)
/// and, when its `targetRef` is a pod, the pod's labels (which subsets select on).
fn endpoints(ports: &[&ServicePort], slices: &[&EndpointSlice], pods: &PodLabels) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for slice in slices {
        // FQDN slices name hosts, not addresses; istiod skips them too.
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let mut mapped: BTreeMap<String, i32> = BTreeMap::new();
        for sp in slice.ports.iter().flatten() {
            let slice_name = sp.name.as_deref().unwrap_or_default();
            let service_port = ports.iter().find(|p| p.name.as_deref().unwrap_or_default() == slice_name);
            if let (Some(service_port), Some(number)) = (service_port, sp.port) {
                mapped.insert(port_name(service_port), number);
            }
        }
        if mapped.is_empty() {
            continue;
        }
        let ns = slice.metadata.namespace.as_deref().unwrap_or_default();
        for endpoint in slice.endpoints.iter().flatten() {
            // A missing `ready` means ready (the API's documented default).
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            let labels = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| {
                    let pod_ns = r.namespace.as_deref().unwrap_or(ns);
                    pods.get(&(pod_ns.to_owned(), r.name.clone().unwrap_or_default()))
                })
                .cloned()
                .unwrap_or_default();
            for address in &endpoint.addresses {
                let entry = json!({ "address": address, "ports": mapped, "labels": labels });
                // One address may sit in two slices while the controller moves it.
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
    }
    out
}

/// istiod's `kube.ConvertProtocol`: `appProtocol` first, else the port name's prefix before
/// `-`; `None` where istiod finds no protocol (it then sniffs, and an upstream gets HTTP/1.1).
fn protocol(name: &str, app_protocol: Option<&str>) -> Option<&'static str> {
    let from = match app_protocol {
        Some("kubernetes.io/h2c") => return Some("HTTP2"),
        Some("kubernetes.io/ws" | "kubernetes.io/wss") => return Some("HTTP"),
        Some(app) => app,
        None => name.split('-').next().unwrap_or_default(),
    };
    Some(match from.to_ascii_lowercase().as_str() {
        "http" => "HTTP",
        "https" => "HTTPS",
        "http2" => "HTTP2",
        "grpc" => "GRPC",
        "grpc-web" => "GRPC-WEB",
        "tcp" => "TCP",
        "tls" => "TLS",
        "mongo" => "MONGO",
        "mysql" => "MYSQL",
        "redis" => "REDIS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn slice(yaml: &str) -> EndpointSlice {
        serde_yaml::from_str(yaml).unwrap()
    }

    const REVIEWS: &str = "metadata: {name: reviews, namespace: default}\nspec:\n  ports:\n  \
                           - {name: http-web, port: 80, targetPort: 9080}\n  - {name: dns, port: 53, protocol: UDP}\n  \
                           - {port: 81, appProtocol: kubernetes.io/h2c}\n";

    #[test]
    fn ready_endpoints_with_target_ports_and_pod_labels() {
        let svc = service(REVIEWS);
        let s1 = slice(
            "metadata: {name: reviews-a, namespace: default, labels: {kubernetes.io/service-name: reviews}}\n\
             addressType: IPv4\nports: [{name: http-web, port: 9080}, {name: dns, port: 5353}]\n\
             endpoints:\n- addresses: [10.0.0.1]\n  targetRef: {kind: Pod, name: reviews-v1}\n\
             - addresses: [10.0.0.2]\n  conditions: {ready: false}\n- addresses: [10.0.0.3]\n  conditions: {ready: true}\n",
        );
        let other = slice(
            "metadata: {name: ratings-a, namespace: default, labels: {kubernetes.io/service-name: ratings}}\n\
             addressType: IPv4\nports: [{name: http-web, port: 1}]\nendpoints: [{addresses: [10.9.9.9]}]\n",
        );
        let mut pods = PodLabels::new();
        pods.insert(("default".into(), "reviews-v1".into()), BTreeMap::from([("version".into(), "v1".into())]));
        let out = service_entries(&[&svc], &[&s1, &other], &pods);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "k8s:Service/default/reviews");
        assert_eq!(out[0].object["metadata"], json!({"name": "svc.reviews", "namespace": "default"}));
        let spec = &out[0].object["spec"];
        assert_eq!(spec["hosts"], json!(["reviews.default.svc.cluster.local"]));
        assert_eq!(spec["resolution"], "STATIC");
        assert_eq!(
            spec["ports"],
            json!([{"number": 80, "name": "http-web", "protocol": "HTTP"}, {"number": 81, "name": "port-81", "protocol": "HTTP2"}])
        );
        assert_eq!(
            spec["endpoints"],
            json!([
                {"address": "10.0.0.1", "ports": {"http-web": 9080}, "labels": {"version": "v1"}},
                {"address": "10.0.0.3", "ports": {"http-web": 9080}, "labels": {}},
            ])
        );
    }

    #[test]
    fn external_name_resolves_by_dns_and_export_to_is_read() {
        let svc = service(
            "metadata: {name: ext, namespace: shop, annotations: {networking.istio.io/exportTo: '., istio-system'}}\n\
             spec: {type: ExternalName, externalName: api.example.com, ports: [{name: tcp, port: 443}]}\n",
        );
        let out = service_entries(&[&svc], &[], &PodLabels::new());
        let spec = &out[0].object["spec"];
        assert_eq!(spec["resolution"], "DNS");
        assert_eq!(spec["endpoints"], json!([{"address": "api.example.com", "ports": {"tcp": 443}}]));
        assert_eq!(spec["exportTo"], json!([".", "istio-system"]));
    }

    #[test]
    fn protocols_as_istiod_converts_them() {
        assert_eq!(protocol("grpc-api", None), Some("GRPC"));
        assert_eq!(protocol("web", Some("https")), Some("HTTPS"));
        assert_eq!(protocol("web", None), None);
        assert_eq!(protocol("", Some("kubernetes.io/h2c")), Some("HTTP2"));
    }
}
