//! rustls configs from compiled TLS settings, built once per snapshot so that every fault in
//! the material (an expired certificate, a key of another certificate, a cipher suite rustls
//! lacks) fails the config, naming its field, instead of every handshake.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::{VerifierBuilderError, WebPkiServerVerifier};
use rustls::crypto::{aws_lc_rs, ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier};
use rustls::{
    CipherSuite, ClientConfig, Error, InconsistentKeys, ProtocolVersion, RootCertStore, ServerConfig,
    SupportedCipherSuite, SupportedProtocolVersion,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{ASN1Time, FromDer, X509Certificate};

use super::verify::{self, AnyOfNames, ClientIdentity, SkipVerify};
use crate::config::credentials::{crls, Material, TlsError};
use crate::snapshot::{ServerTls, ServerTlsMode, TlsVersion, UpstreamTlsMode};

/// Istio's (OpenSSL's) names for the TLS 1.2 suites of rustls's ring provider.
const OPENSSL_NAMES: [(&str, CipherSuite); 6] = [
    ("ECDHE-ECDSA-AES128-GCM-SHA256", CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ("ECDHE-RSA-AES128-GCM-SHA256", CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ("ECDHE-RSA-AES256-GCM-SHA384", CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ("ECDHE-RSA-CHACHA20-POLY1305", CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
];

/// A Gateway server's config: its certificate, versions, suites, client certificate checks for
/// the mutual modes, and `h2,http/1.1` offered by ALPN when `https` (`http/1.1` alone without
/// `h2`: ProxyConfig's `httpsHttp2Disabled`).
pub(super) fn server_config(tls: &ServerTls, https: bool, h2: bool) -> Result<ServerConfig, TlsError> {
    let versions = versions(tls.min_protocol_version, tls.max_protocol_version)?;
    let tls12 = versions.iter().any(|v| v.version == ProtocolVersion::TLSv1_2);
    let provider = Arc::new(provider(&tls.cipher_suites, tls12)?);
    let chain = chain(tls.cert_chain.as_deref(), "serverCertificate")?;
    let key = key(tls.private_key.as_deref())?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| ("cipherSuites".to_string(), e.to_string()))?;
    let builder = match tls.mode {
        ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
            builder.with_client_cert_verifier(client_verifier(tls, provider)?)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| key_error(e, "serverCertificate"))?;
    // The server's order decides, as in Envoy.
    config.ignore_client_order = true;
    // HTTPS offers HTTP/2 first, as istiod's gateway filter chains do (`h2,http/1.1`), unless
    // ASM's `httpsHttp2Disabled` takes `h2` out.
    if https {
        config.alpn_protocols = match h2 {
            true => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            false => vec![b"http/1.1".to_vec()],
        };
    }
    // This server's own sessions: a ticket or session ID is only ever opened by the config
    // that issued it, so a session never resumes on a server with other client-certificate
    // rules or certificates (rustls checks only the suite and SNI), and a reload that changes
    // the settings ends the sessions made before (`Snapshot::inherit` keeps them otherwise).
    // Envoy's filter chains each have their own session keys and cache alike.
    config.session_storage = Arc::new(SessionCache::default());
    match ring::Ticketer::new() {
        Ok(ticketer) => {
            config.ticketer = ticketer;
            // One new ticket per handshake (rustls's default is two): a client that resumes gets
            // a fresh one each time, as OpenSSL gives after a resumption, at half the issuing cost.
            config.send_tls13_tickets = 1;
        }
        // Sessions still resume from the cache.
        Err(e) => tracing::warn!("TLS session tickets disabled: cannot make a ticket key: {e}"),
    }
    Ok(config)
}

/// Sessions a server remembers by ID (TLS 1.2 clients without tickets): a few MiB at most.
const SESSIONS: usize = 4096;

/// A server's session cache, shared by every worker so that a TLS 1.2 session ID resumes on
/// whichever worker the client's next connection lands, as it does on Envoy. Its lock is taken
/// only by handshakes that store or look up a session by ID, never per request. Made on first
/// use: a config of thousands of servers should not hold a cache for each that serves nothing.
#[derive(Debug, Default)]
struct SessionCache(OnceLock<Arc<ServerSessionMemoryCache>>);

impl StoresServerSessions for SessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.get_or_init(|| ServerSessionMemoryCache::new(SESSIONS)).put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get()?.get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get()?.take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// A DestinationRule `tls` block's config: the upstream's certificate checked against
/// `caCertificates` (the system's roots without) and `subjectAltNames`, or not at all with
/// `insecureSkipVerify`; the client certificate for `MUTUAL`.
pub(super) fn client_config(
    mode: UpstreamTlsMode,
    material: &Material,
    subject_alt_names: &[Arc<str>],
    insecure_skip_verify: bool,
) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(crypto());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ("mode".to_string(), e.to_string()))?;
    let builder = match server_verifier(material, subject_alt_names, insecure_skip_verify, provider)? {
        Some(verifier) => builder.dangerous().with_custom_certificate_verifier(verifier),
        None => builder.with_root_certificates(RootCertStore::empty()),
    };
    Ok(match mode {
        UpstreamTlsMode::Simple => builder.with_no_client_auth(),
        UpstreamTlsMode::Mutual => {
            let chain = chain(material.cert.as_deref(), "clientCertificate")?;
            builder
                .with_client_auth_cert(chain, key(material.key.as_deref())?)
                .map_err(|e| key_error(e, "clientCertificate"))?
        }
    })
}

/// `None` when nothing is trusted (no `caCertificates` and no system roots): rustls's own
/// verifier over an empty store then refuses every server, which its builder cannot express.
fn server_verifier(
    material: &Material,
    subject_alt_names: &[Arc<str>],
    insecure_skip_verify: bool,
    provider: Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ServerCertVerifier>>, TlsError> {
    if insecure_skip_verify {
        return Ok(Some(Arc::new(SkipVerify(provider))));
    }
    let roots = match material.ca.as_deref() {
        Some(ca) => Arc::new(roots(ca)?),
        None => system_roots(),
    };
    let mut builder = WebPkiServerVerifier::builder_with_provider(roots, provider);
    // `caCrl` as Envoy (OpenSSL's `CRL_CHECK_ALL`) checks it: every certificate of the chain,
    // one whose issuer has no list failing as unknown, and a list past its `nextUpdate` failing
    // every chain it covers.
    if let Some(crl) = material.crl.as_deref() {
        builder = builder.with_crls(crls(crl)?).enforce_revocation_expiration();
    }
    let webpki = match builder.build() {
        Ok(webpki) => webpki,
        Err(VerifierBuilderError::NoRootAnchors) => return Ok(None),
        Err(e) => return Err(builder_error(e)),
    };
    Ok(Some(match subject_alt_names.is_empty() {
        true => webpki,
        false => Arc::new(AnyOfNames::new(webpki, subject_alt_names)?),
    }))
}

/// The WebPKI verifier over `caCertificates` (optional for `OPTIONAL_MUTUAL`), with the
/// server's identity checks.
pub(super) fn client_verifier(
    tls: &ServerTls,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let ca = tls
        .ca_certificates
        .as_deref()
        .ok_or(("caCertificates".to_string(), "client certificate verification needs a CA bundle".to_string()))?;
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider);
    if tls.mode == ServerTlsMode::OptionalMutual {
        builder = builder.allow_unauthenticated();
    }
    // `caCrl` checked as for upstreams (`server_verifier`).
    if let Some(crl) = tls.ca_crl.as_deref() {
        builder = builder.with_crls(crls(crl)?).enforce_revocation_expiration();
    }
    let webpki = builder.build().map_err(builder_error)?;
    Ok(verify::client_verifier(webpki, ClientIdentity::new(tls)?))
}

fn builder_error(e: VerifierBuilderError) -> TlsError {
    let field = match e {
        VerifierBuilderError::InvalidCrl(_) => "caCrl",
        _ => "caCertificates",
    };
    (field.to_string(), e.to_string())
}

/// `[min, max]`, TLS 1.2 to 1.3 by default.
fn versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let (min, max) = (min.unwrap_or(TlsVersion::V1_2), max.unwrap_or(TlsVersion::V1_3));
    if min > max {
        let message = format!("{} is above maxProtocolVersion {}", version_name(min), version_name(max));
        return Err(("minProtocolVersion".to_string(), message));
    }
    let all = [(TlsVersion::V1_2, &rustls::version::TLS12), (TlsVersion::V1_3, &rustls::version::TLS13)];
    Ok(all.into_iter().filter(|(v, _)| (min..=max).contains(v)).map(|(_, version)| version).collect())
}

fn version_name(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::V1_2 => "TLSV1_2",
        TlsVersion::V1_3 => "TLSV1_3",
    }
}

/// The server's preference, Envoy's (BoringSSL's) defaults: AES-128 first, then ChaCha20, then
/// AES-256. Beside matching what clients of an Istio gateway negotiate today, AES-128 suites
/// hash with SHA-256, whose key schedule costs a resumed handshake less than SHA-384's.
const PREFERENCE: [CipherSuite; 9] = [
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
];

/// [`crypto`] with its cipher suites in [`PREFERENCE`] order, its TLS 1.2 suites cut down to
/// `names`, in their order. As in Envoy, the list does not touch TLS 1.3, whose suites all stay
/// enabled; `tls12` says whether TLS 1.2 is enabled at all, so that a list leaving it no suite
/// is refused.
fn provider(names: &[Arc<str>], tls12: bool) -> Result<CryptoProvider, TlsError> {
    let mut provider = crypto();
    let rank = |suite: &SupportedCipherSuite| PREFERENCE.iter().position(|p| *p == suite.suite());
    provider.cipher_suites.sort_by_key(|suite| rank(suite).unwrap_or(PREFERENCE.len()));
    if names.is_empty() {
        return Ok(provider);
    }
    let mut listed: Vec<SupportedCipherSuite> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let suite = provider.cipher_suites.iter().find(|suite| is_named(suite, name)).ok_or_else(|| {
            let known: Vec<&str> = OPENSSL_NAMES.iter().map(|(openssl, _)| *openssl).collect();
            (
                format!("cipherSuites[{i}]"),
                format!(
                    "rustls does not support cipher suite {name}; supported: {} (or their IANA names; TLS 1.3 \
                     suites are always enabled)",
                    known.join(", ")
                ),
            )
        })?;
        if suite.tls13().is_none() && !listed.contains(suite) {
            listed.push(*suite);
        }
    }
    if tls12 && listed.is_empty() {
        let message = "lists no TLS 1.2 cipher suite, so no TLS 1.2 client could connect: list one, or set \
                       minProtocolVersion: TLSV1_3";
        return Err(("cipherSuites".to_string(), message.to_string()));
    }
    provider.cipher_suites.retain(|suite| suite.tls13().is_some());
    provider.cipher_suites.extend(listed);
    Ok(provider)
}

/// Whether `name` is `suite`'s OpenSSL or IANA name.
fn is_named(suite: &SupportedCipherSuite, name: &str) -> bool {
    let id = suite.suite();
    let Some(iana) = id.as_str() else {
        return false;
    };
    // rustls spells TLS 1.3 suites TLS13_*, IANA TLS_*.
    let tls13_iana = iana.strip_prefix("TLS13_").map(|rest| format!("TLS_{rest}"));
    OPENSSL_NAMES.iter().any(|(openssl, named)| *named == id && openssl.eq_ignore_ascii_case(name))
        || iana.eq_ignore_ascii_case(name)
        || tls13_iana.is_some_and(|tls13| tls13.eq_ignore_ascii_case(name))
}

fn certs(pem: Option<&[u8]>, field: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut pem.unwrap_or_default())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (field.to_string(), format!("not a PEM certificate: {e}")))?;
    match certs.is_empty() {
        true => Err((field.to_string(), "no PEM certificate found".to_string())),
        false => Ok(certs),
    }
}

/// The chain in `pem`, its leaf checked to be valid now: an expired certificate would otherwise
/// load and fail every handshake.
fn chain(pem: Option<&[u8]>, field: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = certs(pem, field)?;
    let (_, leaf) = X509Certificate::from_der(&chain[0])
        .map_err(|e| (field.to_string(), format!("not a valid X.509 certificate: {e}")))?;
    let validity = leaf.validity();
    let now = ASN1Time::now();
    if now > validity.not_after {
        return Err((field.to_string(), format!("the certificate expired on {}", validity.not_after)));
    }
    if now < validity.not_before {
        return Err((field.to_string(), format!("the certificate is not valid before {}", validity.not_before)));
    }
    Ok(chain)
}

/// The first URI SAN of the chain's leaf.
pub(super) fn uri_san(pem: Option<&[u8]>) -> Option<Arc<str>> {
    let leaf = certs(pem, "").ok()?.into_iter().next()?;
    let (_, cert) = X509Certificate::from_der(&leaf).ok()?;
    let names = cert.subject_alternative_name().ok().flatten()?;
    names.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => Some(Arc::from(*uri)),
        _ => None,
    })
}

fn key(pem: Option<&[u8]>) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut pem.unwrap_or_default())
        .map_err(|e| ("privateKey".to_string(), format!("not a PEM private key: {e}")))?
        .ok_or(("privateKey".to_string(), "no PEM private key found".to_string()))
}

/// rustls refuses a key it cannot load, or one that is not the certificate's.
fn key_error(e: Error, cert_field: &str) -> TlsError {
    let message = match e {
        Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            format!("does not match the certificate in {cert_field}")
        }
        e => format!("cannot be used: {e}"),
    };
    ("privateKey".to_string(), message)
}

fn roots(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs(Some(pem), "caCertificates")?.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| ("caCertificates".to_string(), format!("certificate {} is not a usable CA: {e}", i + 1)))?;
    }
    Ok(roots)
}

/// The system's roots, read once per process: every upstream without `caCertificates` uses them
/// (and every `jwksUri` fetched over HTTPS),
/// and a reload should not re-read the whole bundle once per cluster.
pub fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            for e in &loaded.errors {
                tracing::warn!("system CA certificates: {e}");
            }
            let mut roots = RootCertStore::empty();
            let (_, ignored) = roots.add_parsable_certificates(loaded.certs);
            if ignored > 0 {
                tracing::warn!("system CA certificates: {ignored} could not be parsed and are not trusted");
            }
            if roots.is_empty() {
                tracing::warn!("no system CA certificates: upstream TLS without caCertificates will fail");
            }
            Arc::new(roots)
        })
        .clone()
}

/// The gateway's cryptography, both ways: ring's, but for key exchange and randomness, which
/// are aws-lc-rs's. A resumed handshake still runs an (EC)DHE exchange, and aws-lc's X25519
/// (s2n-bignum) takes a little over half the time of ring's; aws-lc draws random bytes from a
/// per-thread generator where ring makes a `getrandom` call each time. ring keeps the rest
/// because aws-lc-rs's HKDF extracts again for every expand, which the TLS 1.3 key schedule
/// does some twenty times a handshake.
fn crypto() -> CryptoProvider {
    use aws_lc_rs::kx_group::{SECP256R1, SECP384R1, X25519};
    CryptoProvider {
        kx_groups: vec![X25519, SECP256R1, SECP384R1],
        secure_random: aws_lc_rs::default_provider().secure_random,
        ..ring::default_provider()
    }
}
