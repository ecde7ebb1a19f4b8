//! TLS settings built at compile time from the material `config::credentials` reads, so the
//! data plane never touches a file: the settings as written, and the rustls configs built from
//! them (`build`), whose failures name the field like any other config error.

mod build;
pub use build::system_roots;
#[cfg(test)]
mod tests;
pub(crate) mod verify;

use std::sync::Arc;

use crate::config::credentials::{server_material, upstream_material, Secrets, TlsError};
use crate::config::destination_rule::{ClientTlsMode, ClientTlsSettings};
use crate::config::gateway::{ServerTlsMode as ConfigTlsMode, ServerTlsSettings, TlsProtocol};
use crate::snapshot::{ServerTls, ServerTlsMode, TlsConfig, TlsVersion, UpstreamTls, UpstreamTlsMode};

fn version(v: Option<TlsProtocol>, field: &str) -> Result<Option<TlsVersion>, TlsError> {
    match v {
        None | Some(TlsProtocol::TlsAuto) => Ok(None),
        Some(TlsProtocol::TlsV1_2) => Ok(Some(TlsVersion::V1_2)),
        Some(TlsProtocol::TlsV1_3) => Ok(Some(TlsVersion::V1_3)),
        Some(old @ (TlsProtocol::TlsV1_0 | TlsProtocol::TlsV1_1)) => Err((
            field.to_string(),
            format!("{old} is not supported: rustls supports only TLS 1.2 and 1.3 (TLSV1_2, TLSV1_3)"),
        )),
    }
}

fn strings(v: &[String]) -> Vec<Arc<str>> {
    v.iter().map(|s| Arc::from(s.as_str())).collect()
}

/// A Gateway server's `tls` block → [`ServerTls`], reading and checking its certificates.
/// `namespace` is the gateway's own (`--namespace`), where `credentialName` is looked up;
/// `https` offers HTTP/1.1 by ALPN, and `h2` HTTP/2 before it.
pub(super) fn server_tls(
    tls: &ServerTlsSettings,
    namespace: &str,
    secrets: &Secrets<'_>,
    https: bool,
    h2: bool,
) -> Result<ServerTls, TlsError> {
    let mode = match tls.mode {
        // The proto default.
        None | Some(ConfigTlsMode::Passthrough) => ServerTlsMode::Passthrough,
        Some(ConfigTlsMode::AutoPassthrough) => ServerTlsMode::AutoPassthrough,
        Some(ConfigTlsMode::Simple) => ServerTlsMode::Simple,
        // server_material refuses ISTIO_MUTUAL.
        Some(ConfigTlsMode::Mutual | ConfigTlsMode::IstioMutual) => ServerTlsMode::Mutual,
        Some(ConfigTlsMode::OptionalMutual) => ServerTlsMode::OptionalMutual,
    };
    let material = server_material(tls, namespace, secrets)?;
    let mut server = ServerTls {
        mode,
        cert_chain: material.cert,
        private_key: material.key,
        ca_certificates: material.ca,
        ca_crl: material.crl,
        source_files: material.files,
        subject_alt_names: strings(&tls.subject_alt_names),
        verify_certificate_spki: strings(&tls.verify_certificate_spki),
        verify_certificate_hash: strings(&tls.verify_certificate_hash),
        min_protocol_version: version(tls.min_protocol_version, "minProtocolVersion")?,
        max_protocol_version: version(tls.max_protocol_version, "maxProtocolVersion")?,
        cipher_suites: strings(&tls.cipher_suites),
        config: None,
        uri_san: None,
    };
    if !matches!(mode, ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough) {
        server.config = Some(TlsConfig(Arc::new(build::server_config(&server, https, h2)?)));
        server.uri_san = build::uri_san(server.cert_chain.as_deref());
    }
    Ok(server)
}

/// A DestinationRule `tls` block → [`UpstreamTls`]; `None` for `DISABLE`. `namespace` is the
/// gateway's own (`--namespace`), where istiod's SDS looks up a client `credentialName`; `host`
/// the service's, the SNI when the block names none.
pub(super) fn upstream_tls(
    tls: &ClientTlsSettings,
    namespace: &str,
    host: &str,
    secrets: &Secrets<'_>,
) -> Result<Option<UpstreamTls>, TlsError> {
    let mode = match tls.mode {
        None | Some(ClientTlsMode::Disable) => return Ok(None),
        Some(ClientTlsMode::Simple) => UpstreamTlsMode::Simple,
        // upstream_material refuses ISTIO_MUTUAL.
        Some(ClientTlsMode::Mutual | ClientTlsMode::IstioMutual) => UpstreamTlsMode::Mutual,
    };
    let material = upstream_material(tls, namespace, secrets)?;
    let subject_alt_names = strings(&tls.subject_alt_names);
    let insecure_skip_verify = tls.insecure_skip_verify.unwrap_or(false);
    let config = build::client_config(mode, &material, &subject_alt_names, insecure_skip_verify)?;
    let mut h2_config = config.clone();
    h2_config.alpn_protocols = vec![b"h2".to_vec()];
    let mut upstream = UpstreamTls {
        mode,
        client_certificate: material.cert,
        private_key: material.key,
        ca_certificates: material.ca,
        ca_crl: material.crl,
        subject_alt_names,
        sni: tls.sni.as_deref().map(Arc::from),
        insecure_skip_verify,
        config: TlsConfig(Arc::new(config)),
        h2_config: TlsConfig(Arc::new(h2_config)),
        pool_id: 0,
    };
    upstream.pool_id = pool_id(&upstream, host);
    Ok(Some(upstream))
}

/// A fingerprint of everything that shapes an upstream TLS connection, the name it was
/// verified for included: two services behind one address share pooled connections only when
/// each would have made the same handshake. Never 0 (plain connections' pool id).
fn pool_id(tls: &UpstreamTls, host: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (tls.mode as u8, &tls.client_certificate, &tls.private_key, &tls.ca_certificates, &tls.ca_crl).hash(&mut h);
    (&tls.subject_alt_names, tls.sni.as_deref().unwrap_or(host), tls.insecure_skip_verify).hash(&mut h);
    h.finish() | 1
}
