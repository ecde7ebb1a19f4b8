//! Field coverage, round trips, list items and names, nulls, and where errors at the end of input point.

use super::*;

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
