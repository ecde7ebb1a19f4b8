//! MeshConfig parsing: the fields acted on, the ProxyConfig override, what is listed, what is refused.

use super::*;

fn parsed(text: &str) -> Result<(MeshConfig, Diagnostics), Diagnostics> {
    let labels = BTreeMap::from([("istio".to_owned(), "ingressgateway".to_owned())]);
    parse(text, &Arc::from(Path::new("mesh.yaml")), &labels)
}

#[test]
fn the_fields_strait_acts_on() {
    let (mesh, warnings) = parsed(
        "rootNamespace: mesh-root\ndnsRefreshRate: 30s\nh2UpgradePolicy: UPGRADE\ndefaultConfig:\n  \
         httpsHttp2Disabled: true\n",
    )
    .unwrap();
    assert_eq!(mesh.root_namespace, "mesh-root");
    assert_eq!(mesh.dns_refresh_rate, Some(Duration::from_secs(30)));
    assert_eq!(mesh.h2_upgrade, Some(true));
    assert_eq!(mesh.default_config.https_http2_disabled, Some(true));
    assert!(warnings.is_empty(), "{warnings}");
    let (mesh, _) = parsed("{}\n").unwrap();
    assert_eq!(mesh, MeshConfig::default());
    assert_eq!(mesh.root_namespace, "istio-system");
    assert_eq!(parsed("h2UpgradePolicy: DO_NOT_UPGRADE\n").unwrap().0.h2_upgrade, Some(false));
    assert_eq!(parsed("h2UpgradePolicy: DEFAULT\n").unwrap().0.h2_upgrade, None);
}

#[test]
fn the_proxy_config_overrides_default_config_field_by_field() {
    let (mesh, _) = parsed("defaultConfig:\n  httpsHttp2Disabled: true\n  concurrency: 2\n").unwrap();
    let unset = Settings::default();
    assert!(unset.over(mesh.default_config).resolve().https_http2_disabled);
    let off = Settings { https_http2_disabled: Some(false), ..Settings::default() };
    assert!(!off.over(mesh.default_config).resolve().https_http2_disabled);
}

#[test]
fn fields_for_the_next_wave_are_typed_checked_and_listed_as_not_enforced() {
    let text = "pathNormalization:\n  normalization: MERGE_SLASHES\nextensionProviders:\n- name: opa\n  \
                envoyExtAuthzGrpc:\n    service: opa.opa.svc.cluster.local\n    port: 9191\n- name: oauth2\n  \
                envoyExtAuthzHttp:\n    service: oauth2-proxy.svc\n    port: 4180\n    pathPrefix: /check\n    \
                includeRequestHeadersInCheck: [cookie]\n    headersToUpstreamOnAllow: [authorization]\n\
                enableTracing: true\naccessLogFile: /dev/stdout\n";
    let (mesh, warnings) = parsed(text).unwrap();
    assert_eq!(mesh.path_normalization.unwrap().normalization, Some(NormalizationType::MergeSlashes));
    assert_eq!(mesh.extension_providers.len(), 2);
    assert_eq!(mesh.extension_providers[1].envoy_ext_authz_http.as_ref().unwrap().port, 4180);
    // Both external authorization providers are enforced (CUSTOM policies).
    let listed: Vec<_> = warnings.iter().map(|d| (d.severity, d.field.clone().unwrap(), d.line)).collect();
    assert_eq!(
        listed,
        [
            (Severity::NotEnforced, "enableTracing".to_owned(), Some(15)),
            (Severity::NotEnforced, "accessLogFile".to_owned(), Some(16)),
        ]
    );
}

#[test]
fn bad_values_are_refused_naming_file_and_field() {
    let error = |text: &str| {
        let errors = parsed(text).unwrap_err();
        let d = errors.iter().next().unwrap().clone();
        (d.field.unwrap_or_default(), d.line, d.message)
    };
    let (field, line, _) = error("rootNamespace: a\ndnsRefreshRate: soon\n");
    assert_eq!((field.as_str(), line), ("dnsRefreshRate", Some(2)));
    let (field, _, message) = error("pathNormalization:\n  normalization: SOMETIMES\n");
    assert_eq!(field, "pathNormalization.normalization");
    assert!(message.contains("SOMETIMES"), "{message}");
    let (field, line, _) = error("extensionProviders:\n- name: a\n  envoyExtAuthzHttp:\n    service: s\n    port: 0\n");
    assert_eq!((field.as_str(), line), ("extensionProviders[0].envoyExtAuthzHttp.port", Some(5)));
    let (field, _, message) =
        error("extensionProviders:\n- name: a\n  envoyExtAuthzGrpc: {service: s, port: 1, bogus: 2}\n");
    assert_eq!(field, "extensionProviders[0].envoyExtAuthzGrpc.bogus");
    assert!(message.contains("bogus"), "{message}");
    let (_, _, message) = error(
        "extensionProviders:\n- name: a\n  envoyExtAuthzGrpc: {service: s, port: 1}\n- name: a\n  \
         envoyExtAuthzGrpc: {service: s, port: 1}\n",
    );
    assert_eq!(message, "duplicate extension provider name a");
    let (field, _, _) = error("defaultConfig:\n  httpsHttp2Disabled: sure\n");
    assert_eq!(field, "defaultConfig.httpsHttp2Disabled");
    assert!(parsed("- a\n").is_err());
    let shown = parsed("dnsRefreshRate: 0s\n").unwrap_err().iter().next().unwrap().to_string();
    assert!(shown.starts_with("mesh.yaml:1"), "{shown}");
}
