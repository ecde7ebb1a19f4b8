//! Certificate verifiers for the checks Istio makes beyond rustls's own: a Gateway's
//! `subjectAltNames`/`verifyCertificateSpki`/`verifyCertificateHash` on client certificates, a
//! DestinationRule's `subjectAltNames` and `insecureSkipVerify` on upstream certificates.

use std::sync::Arc;

use base64::Engine;
use ring::digest::{digest, SHA256};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::config::credentials::TlsError;
use crate::snapshot::ServerTls;

type Digest = [u8; 32];

/// What a Gateway server asks of a client certificate on top of a trusted chain: Envoy's
/// `match_subject_alt_names` (exact), then `verify_certificate_hash`/`verify_certificate_spki`,
/// where a match in either list is enough.
#[derive(Debug)]
pub(super) struct ClientIdentity {
    subject_alt_names: Vec<Arc<str>>,
    cert_hashes: Vec<Digest>,
    spki_hashes: Vec<Digest>,
}

impl ClientIdentity {
    /// The checks `tls` asks for, each pin decoded so that a malformed one fails the config,
    /// not every handshake.
    pub(super) fn new(tls: &ServerTls) -> Result<Self, TlsError> {
        let cert_hashes = tls
            .verify_certificate_hash
            .iter()
            .enumerate()
            .map(|(i, h)| {
                hex_digest(h).ok_or_else(|| {
                    (
                        format!("verifyCertificateHash[{i}]"),
                        format!("{h} is not a hex-encoded SHA-256 digest (64 hex digits, colons allowed)"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let spki_hashes = tls
            .verify_certificate_spki
            .iter()
            .enumerate()
            .map(|(i, s)| {
                base64_digest(s).ok_or_else(|| {
                    (format!("verifyCertificateSpki[{i}]"), format!("{s} is not a base64-encoded SHA-256 digest"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { subject_alt_names: tls.subject_alt_names.clone(), cert_hashes, spki_hashes })
    }

    fn is_empty(&self) -> bool {
        self.subject_alt_names.is_empty() && self.cert_hashes.is_empty() && self.spki_hashes.is_empty()
    }

    fn check(&self, leaf: &CertificateDer<'_>) -> Result<(), CertificateError> {
        let (_, cert) = X509Certificate::from_der(leaf).map_err(|_| CertificateError::BadEncoding)?;
        let named = || dns_and_uri_names(&cert).any(|name| self.subject_alt_names.iter().any(|want| **want == *name));
        if !self.subject_alt_names.is_empty() && !named() {
            return Err(CertificateError::NotValidForName);
        }
        let unpinned = self.cert_hashes.is_empty() && self.spki_hashes.is_empty();
        if unpinned
            || self.cert_hashes.contains(&sha256(leaf))
            || self.spki_hashes.contains(&sha256(cert.public_key().raw))
        {
            Ok(())
        } else {
            Err(CertificateError::ApplicationVerificationFailure)
        }
    }
}

fn sha256(bytes: &[u8]) -> Digest {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// `AB:cd:…` or `abcd…`, as Envoy accepts `verify_certificate_hash`.
fn hex_digest(text: &str) -> Option<Digest> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b':').collect();
    if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn base64_digest(text: &str) -> Option<Digest> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()?.try_into().ok()
}

fn dns_and_uri_names<'c>(cert: &'c X509Certificate<'_>) -> impl Iterator<Item = &'c str> {
    let names = cert.subject_alternative_name().ok().flatten().map(|ext| ext.value.general_names.as_slice());
    names.unwrap_or_default().iter().filter_map(|name| match name {
        GeneralName::DNSName(n) | GeneralName::URI(n) => Some(*n),
        _ => None,
    })
}

/// The WebPKI client verifier plus [`ClientIdentity`], inside the handshake so that a failed
/// check ends it with an alert, as Envoy's validator does.
#[derive(Debug)]
struct IdentityVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    identity: ClientIdentity,
}

/// `webpki` with `identity`'s checks added when there are any.
pub(super) fn client_verifier(
    webpki: Arc<dyn ClientCertVerifier>,
    identity: ClientIdentity,
) -> Arc<dyn ClientCertVerifier> {
    match identity.is_empty() {
        true => webpki,
        false => Arc::new(IdentityVerifier { inner: webpki, identity }),
    }
}

impl ClientCertVerifier for IdentityVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        self.identity.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A DestinationRule's `subjectAltNames`: the upstream certificate must chain to the roots and
/// name one of them, whatever SNI was sent (Envoy matches the SAN list instead of the SNI).
#[derive(Debug)]
pub struct AnyOfNames {
    inner: Arc<WebPkiServerVerifier>,
    names: Vec<ServerName<'static>>,
}

impl AnyOfNames {
    /// Fails on a name rustls cannot check a certificate against (a URI, say): only DNS names and
    /// IP addresses are.
    pub fn new(inner: Arc<WebPkiServerVerifier>, names: &[Arc<str>]) -> Result<Self, TlsError> {
        let names = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                ServerName::try_from(name.to_string()).map_err(|_| {
                    (
                        format!("subjectAltNames[{i}]"),
                        format!("{name} is not a DNS name or IP address, the only names upstream certificates are checked against"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { inner, names })
    }
}

impl ServerCertVerifier for AnyOfNames {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _sni: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let mut outcome = Err(CertificateError::NotValidForName.into());
        for name in &self.names {
            outcome = self.inner.verify_server_cert(end_entity, intermediates, name, ocsp_response, now);
            if outcome.is_ok() {
                break;
            }
        }
        outcome
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecureSkipVerify`: any certificate is accepted, but the handshake signatures are still
/// checked, so the peer must at least hold the key of the certificate it sent.
#[derive(Debug)]
pub struct SkipVerify(pub Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _sni: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
