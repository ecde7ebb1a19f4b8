//! TLS settings built at compile time from the material `config::credentials` reads, so the
//! data plane never touches a file.

use std::sync::Arc;

use crate::config::credentials::{server_material, upstream_material, Secrets, TlsError};
use crate::config::destination_rule::{ClientTlsMode, ClientTlsSettings};
use crate::config::gateway::{ServerTlsMode as ConfigTlsMode, ServerTlsSettings, TlsProtocol};
use crate::snapshot::{ServerTls, ServerTlsMode, TlsVersion, UpstreamTls, UpstreamTlsMode};

fn version(v: Option<TlsProtocol>, field: &str, is_max: bool) -> Result<Option<TlsVersion>, TlsError> {
    match v {
        None | Some(TlsProtocol::TlsAuto) => Ok(None),
        Some(TlsProtocol::TlsV1_2) => Ok(Some(TlsVersion::V1_2)),
        Some(TlsProtocol::TlsV1_3) => Ok(Some(TlsVersion::V1_3)),
        // rustls speaks 1.2 and 1.3 only: a floor below 1.2 is no floor, a ceiling is unmeetable.
        Some(TlsProtocol::TlsV1_0 | TlsProtocol::TlsV1_1) if !is_max => Ok(None),
        Some(_) => Err((field.to_string(), "TLS versions below 1.2 are not supported".to_string())),
    }
}

fn strings(v: &[String]) -> Vec<Arc<str>> {
    v.iter().map(|s| Arc::from(s.as_str())).collect()
}

/// A Gateway server's `tls` block → [`ServerTls`], reading and checking its certificates.
/// `namespace` is the Gateway's, where `credentialName` is looked up.
pub(super) fn server_tls(
    tls: &ServerTlsSettings,
    namespace: &str,
    secrets: &Secrets<'_>,
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
    Ok(ServerTls {
        mode,
        cert_chain: material.cert,
        private_key: material.key,
        ca_certificates: material.ca,
        source_files: material.files,
        subject_alt_names: strings(&tls.subject_alt_names),
        verify_certificate_spki: strings(&tls.verify_certificate_spki),
        verify_certificate_hash: strings(&tls.verify_certificate_hash),
        min_protocol_version: version(tls.min_protocol_version, "minProtocolVersion", false)?,
        max_protocol_version: version(tls.max_protocol_version, "maxProtocolVersion", true)?,
        cipher_suites: strings(&tls.cipher_suites),
    })
}

/// A DestinationRule `tls` block → [`UpstreamTls`]; `None` for `DISABLE`. `namespace` is the
/// consuming Gateway's, where istiod's SDS looks up a client `credentialName`.
pub(super) fn upstream_tls(
    tls: &ClientTlsSettings,
    namespace: &str,
    secrets: &Secrets<'_>,
) -> Result<Option<UpstreamTls>, TlsError> {
    let mode = match tls.mode {
        None | Some(ClientTlsMode::Disable) => return Ok(None),
        Some(ClientTlsMode::Simple) => UpstreamTlsMode::Simple,
        // upstream_material refuses ISTIO_MUTUAL.
        Some(ClientTlsMode::Mutual | ClientTlsMode::IstioMutual) => UpstreamTlsMode::Mutual,
    };
    let material = upstream_material(tls, namespace, secrets)?;
    Ok(Some(UpstreamTls {
        mode,
        client_certificate: material.cert,
        private_key: material.key,
        ca_certificates: material.ca,
        subject_alt_names: strings(&tls.subject_alt_names),
        sni: tls.sni.as_deref().map(Arc::from),
        insecure_skip_verify: tls.insecure_skip_verify.unwrap_or(false),
    }))
}
