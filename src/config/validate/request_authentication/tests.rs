//! RequestAuthentication as Istio's webhook judges it, and the warning for a policy that can
//! never apply to this gateway.

use std::collections::BTreeMap;

use crate::config::validate::{validate, ValidateOptions};
use crate::config::{load, Severity};

/// `(severity, "field: message")` of each diagnostic of `docs` validated for a gateway in
/// `namespace` with the default labels.
fn check(docs: &str, namespace: &str) -> Vec<(Severity, String)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ra.yaml");
    std::fs::write(&file, docs).unwrap();
    let set = load(&[file]).unwrap_or_else(|e| panic!("{e}"));
    let opts = ValidateOptions { namespace: namespace.to_owned(), labels: BTreeMap::new(), ..Default::default() };
    validate(&set, &opts)
        .into_iter()
        .map(|d| (d.severity, format!("{}: {}", d.field.unwrap_or_default(), d.message)))
        .collect()
}

fn ra(namespace: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1beta1\nkind: RequestAuthentication\n\
         metadata: {{name: jwt, namespace: {namespace}}}\nspec:\n{spec}"
    )
}

#[test]
fn a_well_formed_policy_validates_clean() {
    let spec = r#"  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules:
  - issuer: https://issuer.test
    jwksUri: https://issuer.test/keys
    audiences: [api]
    fromHeaders: [{name: x-jwt, prefix: 'Bearer '}]
    fromParams: [token]
    fromCookies: [session]
    outputPayloadToHeader: x-payload
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
    forwardOriginalToken: true
    timeout: 3s
"#;
    assert_eq!(check(&ra("istio-system", spec), "default"), []);
}

#[test]
fn each_webhook_rule_names_its_field() {
    let spec = "  selector: {matchLabels: {app: '*'}}\n  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: g}\n\
                \x20 jwtRules:\n  - audiences: ['']\n    jwksUri: ftp://keys.test/jwks\n    jwks: '{\"keys\": 1}'\n\
                \x20   fromHeaders: [{name: ''}]\n    fromParams: ['']\n    fromCookies: ['']\n\
                \x20   outputClaimToHeaders: [{header: 'bad header', claim: sub}, {header: x-a, claim: ''}]\n";
    let got: Vec<String> = check(&ra("default", spec), "default")
        .into_iter()
        .filter(|(s, _)| *s == Severity::Error)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        got,
        [
            "spec: only one of targetRefs, workloadSelector or targetRef can be set",
            "spec.selector.matchLabels.app: wildcard is not supported in selector",
            "spec.jwtRules[0].audiences[0]: audience must be non-empty string",
            "spec.jwtRules[0].jwksUri: URI scheme \"ftp\" is not supported",
            "spec.jwtRules[0].jwks: jwks parse error: [keys] is not an array",
            "spec.jwtRules[0].fromHeaders[0].name: location header name must be non-empty string",
            "spec.jwtRules[0].fromParams[0]: location query must be non-empty string",
            "spec.jwtRules[0].fromCookies[0]: cookie name must be non-empty string",
            "spec.jwtRules[0].outputClaimToHeaders[0].header: invalid header name: \"bad header\"",
            "spec.jwtRules[0].outputClaimToHeaders[1]: outputClaimToHeaders header and claim value must be non-empty string",
        ]
    );
}

#[test]
fn a_rule_needs_an_issuer_or_a_jwks_uri() {
    let got = check(&ra("default", "  jwtRules: [{audiences: [a]}]\n"), "default");
    assert_eq!(got, [(Severity::Error, "spec.jwtRules[0].issuer: issuer or jwksUri must be non-empty string".into())]);
}

#[test]
fn a_policy_that_can_never_apply_is_a_warning_naming_why() {
    let rule = "  jwtRules: [{issuer: https://issuer.test, jwks: '{\"keys\": []}'}]\n";
    let other_selector = format!("  selector: {{matchLabels: {{app: other}}}}\n{rule}");
    for (namespace, spec, gateway_ns, want) in [
        ("istio-system", rule.to_owned(), "default", None),
        ("apps", rule.to_owned(), "apps", None),
        ("apps", rule.to_owned(), "default", Some("metadata.namespace: never applies to this gateway: namespace apps")),
        ("istio-system", other_selector, "default", Some("spec.selector: never applies to this gateway")),
    ] {
        let got = check(&ra(namespace, &spec), gateway_ns);
        match want {
            None => assert_eq!(got, [], "{namespace} {gateway_ns}"),
            Some(want) => {
                assert_eq!(got.len(), 1, "{got:?}");
                assert_eq!(got[0].0, Severity::Warning);
                assert!(got[0].1.starts_with(want), "{}", got[0].1);
            }
        }
    }
}
