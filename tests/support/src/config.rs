//! Istio YAML snippets the tests assemble into gateway configs.

/// A resource's first lines, up to `spec:`.
pub fn head(kind: &str, name: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n"
    )
}

/// A Gateway `name` in `default` with one HTTP server on `port` for `hosts`.
pub fn http_gateway(name: &str, port: u16, hosts: &[&str]) -> String {
    gateway(name, port, "HTTP", hosts)
}

/// A Gateway `name` in `default` with one server of `protocol` on `port` for `hosts`; the port
/// is named `protocol-port` in lower case.
pub fn gateway(name: &str, port: u16, protocol: &str, hosts: &[&str]) -> String {
    let hosts: String = hosts.iter().map(|h| format!("    - \"{h}\"\n")).collect();
    let port_name = protocol.to_ascii_lowercase();
    format!(
        "{}  selector:
    istio: ingressgateway
  servers:
  - port:
      number: {port}
      name: {port_name}-{port}
      protocol: {protocol}
    hosts:
{hosts}",
        head("Gateway", name)
    )
}

/// A STATIC ServiceEntry `host` on service port `port` with endpoints at 127.0.0.1:`ports`
/// (each endpoint labelled `version: vN` by its index).
pub fn service_entry(name: &str, host: &str, port: u16, endpoint_ports: &[u16]) -> String {
    let endpoints: String = endpoint_ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!("  - address: 127.0.0.1\n    ports:\n      http: {p}\n    labels:\n      version: v{i}\n")
        })
        .collect();
    let endpoints =
        if endpoints.is_empty() { "  endpoints: []\n".to_string() } else { format!("  endpoints:\n{endpoints}") };
    format!(
        "{}  hosts:
  - {host}
  ports:
  - number: {port}
    name: http
    protocol: HTTP
  resolution: STATIC
{endpoints}",
        head("ServiceEntry", name)
    )
}

/// A VirtualService on gateway `gateway` for `hosts` with the given `http:` list (YAML, each
/// line indented for the `http:` key).
pub fn virtual_service(name: &str, gateway: &str, hosts: &[&str], http: &str) -> String {
    let hosts: String = hosts.iter().map(|h| format!("  - \"{h}\"\n")).collect();
    format!(
        "{}  hosts:
{hosts}  gateways:
  - {gateway}
  http:
{http}",
        head("VirtualService", name)
    )
}

/// Joins documents into one multi-document file.
pub fn docs(parts: &[String]) -> String {
    parts.join("---\n")
}

/// The usual one-service config: gateway `gw` on `port` for `app.test`, routed by `http` (the
/// VirtualService's `http:` list) to `app.local`, whose endpoints listen on `endpoint_ports`
/// under a DestinationRule with `policy` (YAML under `trafficPolicy:`, indented 4).
pub fn app_behind_rule(port: u16, endpoint_ports: &[u16], http: &str, policy: &str) -> String {
    let rule = format!("{}  host: app.local\n  trafficPolicy:\n{policy}", head("DestinationRule", "app"));
    docs(&[
        http_gateway("gw", port, &["app.test"]),
        virtual_service("app", "gw", &["app.test"], http),
        service_entry("app", "app.local", 80, endpoint_ports),
        rule,
    ])
}
