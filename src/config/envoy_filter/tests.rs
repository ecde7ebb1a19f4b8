use super::*;

fn patch(yaml: &str) -> ConfigPatch {
    serde_yaml::from_str(yaml).unwrap()
}

const COMPRESSOR_PATCH: &str = r#"
applyTo: HTTP_FILTER
match:
  context: GATEWAY
  listener:
    portNumber: 8080
    filterChain:
      filter:
        name: envoy.filters.network.http_connection_manager
patch:
  operation: INSERT_FIRST
  value:
    name: envoy.filters.http.compressor
    typedConfig:
      '@type': type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
      responseDirectionConfig:
        commonConfig:
          minContentLength: 256
          contentType: [application/json]
        disableOnEtagHeader: true
      compressorLibrary:
        name: br
        typedConfig:
          '@type': type.googleapis.com/envoy.extensions.compression.brotli.compressor.v3.Brotli
          quality: 5
"#;

#[test]
fn a_compressor_patch_is_typed_with_envoys_names_in_either_spelling() {
    let Recognised::Compressor { config, first } = patch(COMPRESSOR_PATCH).recognise().unwrap() else {
        panic!("not recognised");
    };
    assert!(first);
    let response = config.response_direction_config.as_ref().unwrap();
    assert!(response.disable_on_etag_header);
    assert_eq!(response.common_config.as_ref().unwrap().min_content_length, Some(256));
    assert_eq!(config.library().unwrap(), LibraryConfig::Brotli(Brotli { quality: Some(5), ..Brotli::default() }));
}

#[test]
fn a_malformed_compressor_names_its_field() {
    let bad = COMPRESSOR_PATCH.replace("quality: 5", "quality: 12");
    let (field, message) = patch(&bad).recognise().unwrap_err();
    assert_eq!(field, "patch.value.typed_config.compressor_library.typed_config.quality");
    assert!(message.contains("out of range"), "{message}");
    let unknown = COMPRESSOR_PATCH.replace("quality: 5", "qualty: 5");
    let (field, message) = patch(&unknown).recognise().unwrap_err();
    assert!(field.starts_with("patch.value.typed_config.compressor_library.typed_config"), "{field}");
    assert!(message.contains("qualty"), "{message}");
    let other = COMPRESSOR_PATCH.replace("compression.brotli.compressor.v3.Brotli", "compression.lz4.v3.Lz4");
    let (field, _) = patch(&other).recognise().unwrap_err();
    assert_eq!(field, "patch.value.typed_config.compressor_library.typed_config.@type");
}

/// Istio's "Enabling Rate Limits using Envoy" task: the filter, then the per-route bucket.
#[test]
fn istios_local_rate_limit_patches_are_typed() {
    let filter = r#"
applyTo: HTTP_FILTER
match:
  context: GATEWAY
  listener:
    filterChain:
      filter:
        name: "envoy.filters.network.http_connection_manager"
patch:
  operation: INSERT_BEFORE
  value:
    name: envoy.filters.http.local_ratelimit
    typed_config:
      "@type": type.googleapis.com/udpa.type.v1.TypedStruct
      type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
      value:
        stat_prefix: http_local_rate_limiter
"#;
    let Recognised::LocalRateLimitFilter(f) = patch(filter).recognise().unwrap() else { panic!("not recognised") };
    assert_eq!(f.stat_prefix, "http_local_rate_limiter");
    let route = r#"
applyTo: HTTP_ROUTE
match:
  context: GATEWAY
  routeConfiguration:
    vhost:
      name: "inbound|http|9080"
      route:
        action: ANY
patch:
  operation: MERGE
  value:
    rate_limits:
      - actions:
        - request_headers:
            header_name: ":path"
            descriptor_key: path
    typed_per_filter_config:
      envoy.filters.http.local_ratelimit:
        "@type": type.googleapis.com/udpa.type.v1.TypedStruct
        type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
        value:
          stat_prefix: http_local_rate_limiter
          descriptors:
            - entries:
              - key: path
                value: /productpage
              token_bucket:
                max_tokens: 2
                tokens_per_fill: 2
                fill_interval: 60s
          token_bucket:
            max_tokens: 4
            tokens_per_fill: 4
            fill_interval: 60s
          filter_enabled:
            runtime_key: local_rate_limit_enabled
            default_value:
              numerator: 100
              denominator: HUNDRED
          filter_enforced:
            runtime_key: local_rate_limit_enforced
            default_value:
              numerator: 100
              denominator: HUNDRED
          response_headers_to_add:
            - append: false
              header:
                key: x-local-rate-limit
                value: 'true'
"#;
    let Recognised::RoutePatch { virtual_host, config: Some(config), rate_limits } = patch(route).recognise().unwrap()
    else {
        panic!("not recognised")
    };
    assert!(!virtual_host);
    let action = rate_limits[0].actions[0].request_headers.as_ref().unwrap();
    assert_eq!((action.header_name.as_str(), action.descriptor_key.as_str()), (":path", "path"));
    assert_eq!(config.descriptors[0].entries[0].value, "/productpage");
    assert!(config.unread().is_empty(), "descriptors are read");
    let bucket = config.token_bucket.as_ref().unwrap();
    assert_eq!((bucket.max_tokens, bucket.tokens_per_fill), (4, Some(4)));
    assert_eq!(bucket.fill_interval.get(), std::time::Duration::from_secs(60));
    assert_eq!(config.filter_enforced.as_ref().unwrap().default_value.fraction(), 1.0);
    assert_eq!(config.response_headers_to_add[0].header.key, "x-local-rate-limit");
    let vhost = route.replace("applyTo: HTTP_ROUTE", "applyTo: VIRTUAL_HOST");
    assert!(matches!(patch(&vhost).recognise(), Ok(Recognised::RoutePatch { virtual_host: true, .. })));
    let zero = route.replace("max_tokens: 4", "max_tokens: 0");
    let (field, _) = patch(&zero).recognise().unwrap_err();
    assert_eq!(
        field,
        "patch.value.typed_per_filter_config.envoy.filters.http.local_ratelimit.value.token_bucket.max_tokens"
    );
}

#[test]
fn other_patches_are_kept_unread() {
    let lua = r#"
applyTo: HTTP_FILTER
patch:
  operation: INSERT_BEFORE
  value:
    name: envoy.filters.http.lua
    typed_config: {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua", inlineCode: "x"}
"#;
    assert_eq!(patch(lua).recognise(), Ok(Recognised::Other));
    let cluster = "applyTo: CLUSTER\npatch:\n  operation: MERGE\n  value: {connect_timeout: 1s}\n";
    assert_eq!(patch(cluster).recognise(), Ok(Recognised::Other));
    // A compressor removed is not one inserted.
    let removed = COMPRESSOR_PATCH.replace("INSERT_FIRST", "REMOVE");
    assert_eq!(patch(&removed).recognise(), Ok(Recognised::Other));
}

/// Istio's task, global part: the `ratelimit` filter and the virtual host's `rate_limits`.
#[test]
fn istios_global_rate_limit_patches_are_typed() {
    let filter = r#"
applyTo: HTTP_FILTER
match:
  context: GATEWAY
  listener:
    filterChain:
      filter:
        name: "envoy.filters.network.http_connection_manager"
        subFilter:
          name: "envoy.filters.http.router"
patch:
  operation: INSERT_BEFORE
  value:
    name: envoy.filters.http.ratelimit
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
      domain: ratelimit
      failure_mode_deny: true
      timeout: 10s
      rate_limit_service:
        grpc_service:
          envoy_grpc:
            cluster_name: outbound|8081||ratelimit.default.svc.cluster.local
            authority: ratelimit.default.svc.cluster.local
        transport_api_version: V3
"#;
    let Recognised::RateLimitFilter(f) = patch(filter).recognise().unwrap() else { panic!("not recognised") };
    assert_eq!((f.domain.as_str(), f.failure_mode_deny), ("ratelimit", true));
    assert_eq!(f.timeout.unwrap().get(), std::time::Duration::from_secs(10));
    let grpc = f.rate_limit_service.as_ref().unwrap().grpc_service.envoy_grpc.as_ref().unwrap();
    assert_eq!(grpc.cluster_name, "outbound|8081||ratelimit.default.svc.cluster.local");
    assert!(f.unread().is_empty());
    let no_domain = filter.replace("domain: ratelimit", "domain: \"\"");
    assert_eq!(patch(&no_domain).recognise().unwrap_err().0, "patch.value.typed_config.domain");

    let vhost = r#"
applyTo: VIRTUAL_HOST
match:
  context: GATEWAY
  routeConfiguration:
    vhost:
      name: ""
      route:
        action: ANY
patch:
  operation: MERGE
  value:
    rate_limits:
      - actions:
        - request_headers:
            header_name: ":path"
            descriptor_key: "PATH"
"#;
    let Recognised::RoutePatch { virtual_host: true, config: None, rate_limits } = patch(vhost).recognise().unwrap()
    else {
        panic!("not recognised")
    };
    assert_eq!(rate_limits[0].actions[0].request_headers.as_ref().unwrap().descriptor_key, "PATH");
    let empty = vhost.replace(
        "- request_headers:\n            header_name: \":path\"\n            descriptor_key: \"PATH\"",
        "- {}",
    );
    assert_eq!(patch(&empty).recognise().unwrap_err().0, "patch.value.rate_limits[0].actions[0]");
}
