//! Which documents are read, skipped, kept for listing or refused, and every error collected in order.

use super::*;

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
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: deny, namespace: istio-system}\n\
             spec: {mtls: {mode: STRICT}}\n---\n\
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
            ("PeerAuthentication", Some("istio-system/deny"), 1, 1),
            ("Telemetry", Some("default/mesh-default"), 2, 6),
            ("WasmPlugin", None, 4, 16),
        ]
    );
    // EnvoyFilter is read: its recognised patches act, the rest are listed by validation.
    assert_eq!(set.envoy_filters.iter().map(|f| f.key()).collect::<Vec<_>>(), ["default/f"]);
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
                 security.istio.io kind (AuthorizationPolicy, RequestAuthentication, PeerAuthentication)"
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
