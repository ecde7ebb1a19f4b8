//! Core `v1` `Secret`: where `tls.credentialName` finds certificates inside the config set.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The body of a `kind: Secret` document (every top-level field but `apiVersion`, `kind`,
/// `metadata`), as `kubectl create secret tls … -o yaml` writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secret {
    /// e.g. `kubernetes.io/tls`; informative only.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    /// Base64-encoded values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Plain-text values; they win over `data` for the same key, as in Kubernetes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl Secret {
    pub const TLS_CERT: &'static str = "tls.crt";
    pub const TLS_KEY: &'static str = "tls.key";
    pub const CA_CERT: &'static str = "ca.crt";
    /// Istio's key for the revocation list checked with `ca.crt` (`crl` in a generic Secret).
    pub const CA_CRL: &'static str = "ca.crl";

    /// The decoded value of `key`, or `None` when the Secret has no such key. Whitespace
    /// inside base64 is ignored because hand-written Secrets often wrap long values.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        if let Some(plain) = self.string_data.get(key) {
            return Ok(Some(plain.as_bytes().to_vec()));
        }
        let Some(encoded) = self.data.get(key) else {
            return Ok(None);
        };
        let compact: Vec<u8> = encoded.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD.decode(compact).map(Some)
    }

    /// PEM certificate chain (`tls.crt`).
    pub fn tls_cert(&self) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        self.get(Self::TLS_CERT)
    }

    /// PEM private key (`tls.key`).
    pub fn tls_key(&self) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        self.get(Self::TLS_KEY)
    }

    /// PEM CA bundle for client-certificate verification (`ca.crt`).
    pub fn ca_cert(&self) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        self.get(Self::CA_CERT)
    }
}
