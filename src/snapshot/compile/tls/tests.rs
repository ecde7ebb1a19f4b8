//! TLS compile tests: certificates made on the spot with rcgen, configs built as the compiler
//! builds them, the verifiers called directly, and handshakes between built configs in memory.

use std::sync::Arc;

use base64::Engine;
use ring::digest::{digest, SHA256};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{
    CertificateError, CipherSuite, ClientConfig, ClientConnection, Error, RootCertStore, ServerConfig, ServerConnection,
};
use strait_test_support::tls::{Ca, Leaf};

use super::build::{client_config, client_verifier, server_config, uri_san};
use super::verify::{AnyOfNames, SkipVerify};
use super::version;
use crate::config::credentials::Material;
use crate::config::gateway::TlsProtocol;
use crate::snapshot::{ServerTls, ServerTlsMode, TlsVersion, UpstreamTlsMode};

fn pem(text: String) -> Option<Arc<[u8]>> {
    Some(text.into_bytes().into())
}

fn server(leaf: &Leaf) -> ServerTls {
    ServerTls {
        mode: ServerTlsMode::Simple,
        cert_chain: pem(leaf.cert_pem.clone()),
        private_key: pem(leaf.key_pem.clone()),
        ca_certificates: None,
        ca_crl: None,
        source_files: Vec::new(),
        subject_alt_names: Vec::new(),
        verify_certificate_spki: Vec::new(),
        verify_certificate_hash: Vec::new(),
        min_protocol_version: None,
        max_protocol_version: None,
        cipher_suites: Vec::new(),
        config: None,
        uri_san: None,
    }
}

fn mutual(leaf: &Leaf, ca: &Ca) -> ServerTls {
    ServerTls { mode: ServerTlsMode::Mutual, ca_certificates: pem(ca.pem()), ..server(leaf) }
}

fn strings(v: &[&str]) -> Vec<Arc<str>> {
    v.iter().map(|s| Arc::from(*s)).collect()
}

fn build_err(tls: &ServerTls) -> (String, String) {
    server_config(tls, true, true).expect_err("the config should be refused")
}

fn now() -> UnixTime {
    UnixTime::now()
}

#[test]
fn expired_or_future_certificate_names_server_certificate() {
    let ca = Ca::new("ca");
    let expired = ca.leaf(&["a.example"], &[], |p| p.not_after = rcgen::date_time_ymd(2020, 1, 2));
    let (field, message) = build_err(&server(&expired));
    assert_eq!(field, "serverCertificate");
    assert!(message.contains("expired") && message.contains("2020"), "{message}");

    let future = ca.leaf(&["a.example"], &[], |p| p.not_before = rcgen::date_time_ymd(2999, 1, 1));
    let (field, message) = build_err(&server(&future));
    assert_eq!(field, "serverCertificate");
    assert!(message.contains("not valid before") && message.contains("2999"), "{message}");
}

#[test]
fn key_of_another_certificate_names_private_key() {
    let ca = Ca::new("ca");
    let (a, b) = (ca.leaf(&["a.example"], &[], |_| {}), ca.leaf(&["b.example"], &[], |_| {}));
    let tls = ServerTls { private_key: pem(b.key_pem.clone()), ..server(&a) };
    let (field, message) = build_err(&tls);
    assert_eq!(field, "privateKey");
    assert!(message.contains("does not match the certificate in serverCertificate"), "{message}");
}

#[test]
fn garbage_pem_names_its_field() {
    let ca = Ca::new("ca");
    let a = ca.leaf(&["a.example"], &[], |_| {});
    let tls = ServerTls { cert_chain: pem("garbage".into()), ..server(&a) };
    assert_eq!(build_err(&tls).0, "serverCertificate");
    let tls = ServerTls { private_key: pem("garbage".into()), ..server(&a) };
    assert_eq!(build_err(&tls).0, "privateKey");
}

#[test]
fn versions_below_1_2_and_inverted_ranges_are_refused() {
    for old in [TlsProtocol::TlsV1_0, TlsProtocol::TlsV1_1] {
        let (field, message) = version(Some(old), "maxProtocolVersion").unwrap_err();
        assert_eq!(field, "maxProtocolVersion");
        assert!(message.contains("only TLS 1.2 and 1.3"), "{message}");
    }
    assert_eq!(version(Some(TlsProtocol::TlsAuto), "minProtocolVersion").unwrap(), None);

    let a = Ca::new("ca").leaf(&["a.example"], &[], |_| {});
    let tls = ServerTls {
        min_protocol_version: Some(TlsVersion::V1_3),
        max_protocol_version: Some(TlsVersion::V1_2),
        ..server(&a)
    };
    let (field, message) = build_err(&tls);
    assert_eq!(field, "minProtocolVersion");
    assert_eq!(message, "TLSV1_3 is above maxProtocolVersion TLSV1_2");
}

#[test]
fn unsupported_cipher_suite_names_its_index() {
    let a = Ca::new("ca").leaf(&["a.example"], &[], |_| {});
    let tls = ServerTls { cipher_suites: strings(&["ECDHE-RSA-AES128-GCM-SHA256", "AES128-SHA"]), ..server(&a) };
    let (field, message) = build_err(&tls);
    assert_eq!(field, "cipherSuites[1]");
    assert!(message.contains("AES128-SHA") && message.contains("ECDHE-ECDSA-CHACHA20-POLY1305"), "{message}");
}

#[test]
fn cipher_suites_restrict_tls12_only() {
    let a = Ca::new("ca").leaf(&["a.example"], &[], |_| {});
    let names =
        ["ecdhe-ecdsa-aes256-gcm-sha384", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"];
    let tls = ServerTls { cipher_suites: strings(&names), ..server(&a) };
    let config = server_config(&tls, true, true).unwrap();
    let suites: Vec<CipherSuite> = config.crypto_provider().cipher_suites.iter().map(|s| s.suite()).collect();
    assert_eq!(
        suites,
        [
            CipherSuite::TLS13_AES_128_GCM_SHA256,
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            CipherSuite::TLS13_AES_256_GCM_SHA384,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ]
    );

    // Only TLS 1.3 names leave TLS 1.2 nothing, unless TLS 1.2 is off.
    let tls13_only = ServerTls { cipher_suites: strings(&["TLS13_AES_128_GCM_SHA256"]), ..server(&a) };
    assert_eq!(build_err(&tls13_only).0, "cipherSuites");
    let tls13 = ServerTls { min_protocol_version: Some(TlsVersion::V1_3), ..tls13_only };
    assert!(server_config(&tls13, true, true).is_ok());
}

/// Every config issues tickets under a key of its own and keeps a session cache of its own:
/// a ticket of one server does not open another, however alike their settings.
#[test]
fn alpn_and_session_keys_of_its_own_for_every_config() {
    let a = Ca::new("ca").leaf(&["a.example"], &[], |_| {});
    let https = server_config(&server(&a), true, true).unwrap();
    let tls = server_config(&server(&a), false, true).unwrap();
    assert_eq!(https.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(tls.alpn_protocols.is_empty());
    let http1 = server_config(&server(&a), true, false).unwrap();
    assert_eq!(http1.alpn_protocols, [b"http/1.1".to_vec()], "httpsHttp2Disabled");
    assert!(https.ticketer.enabled());
    let ticket = https.ticketer.encrypt(b"a session").unwrap();
    assert_eq!(https.ticketer.decrypt(&ticket).as_deref(), Some(&b"a session"[..]));
    assert_eq!(tls.ticketer.decrypt(&ticket), None);
    assert!(https.session_storage.put(b"id".to_vec(), b"a session".to_vec()));
    assert_eq!(https.session_storage.get(b"id").as_deref(), Some(&b"a session"[..]));
    assert_eq!(tls.session_storage.get(b"id"), None);
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest(&SHA256, bytes).as_ref().to_vec()
}

/// `verify_client_cert` of the verifier built for `tls`, on `client`.
fn verify_client(tls: &ServerTls, client: &Leaf) -> Result<(), Error> {
    let verifier = client_verifier(tls, Arc::new(default_provider())).unwrap();
    verifier.verify_client_cert(&client.chain()[0], &[], now()).map(drop)
}

#[test]
fn client_verifier_checks_chain_san_hash_and_spki() {
    let ca = Ca::new("ca");
    let server_pair = ca.leaf(&["gw.example"], &[], |_| {});
    let client = ca.leaf(&["client.example"], &["spiffe://td/ns/a/sa/b"], |_| {});
    let base = mutual(&server_pair, &ca);
    assert!(verify_client(&base, &client).is_ok());

    let stranger = Ca::new("other ca").leaf(&["client.example"], &[], |_| {});
    assert!(matches!(verify_client(&base, &stranger), Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))));

    for sans in [&["client.example"][..], &["nope", "spiffe://td/ns/a/sa/b"]] {
        let tls = ServerTls { subject_alt_names: strings(sans), ..mutual(&server_pair, &ca) };
        assert!(verify_client(&tls, &client).is_ok(), "{sans:?}");
    }
    let tls = ServerTls { subject_alt_names: strings(&["client.example.org"]), ..mutual(&server_pair, &ca) };
    assert_eq!(verify_client(&tls, &client), Err(Error::InvalidCertificate(CertificateError::NotValidForName)));

    let hash: Vec<String> = sha256(&client.der).iter().map(|b| format!("{b:02X}")).collect();
    let spki = base64::engine::general_purpose::STANDARD.encode(sha256(client.spki_der()));
    let wrong_hash = "00".repeat(32);
    let wrong_spki = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
    for (hashes, spkis, ok) in [
        (vec![hash.join(":")], vec![], true),
        (vec![wrong_hash.clone(), hash.concat().to_lowercase()], vec![], true),
        (vec![], vec![spki.clone()], true),
        (vec![wrong_hash.clone()], vec![spki], true),
        (vec![wrong_hash], vec![wrong_spki], false),
    ] {
        let tls = ServerTls {
            verify_certificate_hash: hashes.iter().map(|h| Arc::from(h.as_str())).collect(),
            verify_certificate_spki: spkis.iter().map(|s| Arc::from(s.as_str())).collect(),
            ..mutual(&server_pair, &ca)
        };
        let outcome = verify_client(&tls, &client);
        match ok {
            true => assert!(outcome.is_ok(), "{hashes:?} {spkis:?}"),
            false => {
                assert_eq!(outcome, Err(Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)))
            }
        }
    }
}

/// A CRL of `ca` revoking `leaves`, current until `next_year`.
fn crl(ca: &Ca, leaves: &[&Leaf], next_year: i32) -> Option<Arc<[u8]>> {
    pem(ca.crl_until(leaves, next_year))
}

#[test]
fn ca_crl_revokes_client_certificates_and_must_be_current_and_cover_the_chain() {
    let ca = Ca::new("ca");
    let server_pair = ca.leaf(&["gw.example"], &[], |_| {});
    let (revoked, good) = (ca.leaf(&["revoked.example"], &[], |_| {}), ca.leaf(&["good.example"], &[], |_| {}));
    let with = |crl| ServerTls { ca_crl: crl, ..mutual(&server_pair, &ca) };
    let current = with(crl(&ca, &[&revoked], 2100));
    assert_eq!(verify_client(&current, &revoked), Err(Error::InvalidCertificate(CertificateError::Revoked)));
    assert!(verify_client(&current, &good).is_ok());
    // Past its nextUpdate, a list vouches for no one (OpenSSL's "CRL has expired").
    let stale = verify_client(&with(crl(&ca, &[], 2021)), &good);
    assert!(
        matches!(stale, Err(Error::InvalidCertificate(CertificateError::ExpiredRevocationListContext { .. }))),
        "{stale:?}"
    );
    // A list of another CA only: the client's issuer has none, so its status is unknown.
    let unknown = verify_client(&with(crl(&Ca::new("other"), &[], 2100)), &good);
    assert_eq!(unknown, Err(Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)));
}

#[test]
fn ca_crl_revokes_upstream_certificates_and_bad_lists_name_the_field() {
    let ca = Ca::new("ca");
    let (revoked, good) = (ca.leaf(&["revoked.example"], &[], |_| {}), ca.leaf(&["good.example"], &[], |_| {}));
    let upstream = Material { crl: crl(&ca, &[&revoked], 2100), ..material(None, None, Some(&ca)) };
    let client = client_config(UpstreamTlsMode::Simple, &upstream, &[], false).unwrap();
    let served = |leaf: &Leaf| ServerTls { mode: ServerTlsMode::Simple, ..server(leaf) };
    let refused = handshake(server_config(&served(&revoked), false, true).unwrap(), client.clone(), "revoked.example");
    assert!(refused.is_err(), "a revoked upstream was accepted");
    assert!(handshake(server_config(&served(&good), false, true).unwrap(), client, "good.example").is_ok());

    let garbage = Some(Arc::from(&b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"[..]));
    let (field, _) = client_config(UpstreamTlsMode::Simple, &Material { crl: garbage.clone(), ..upstream }, &[], false)
        .expect_err("a CRL that does not parse");
    assert_eq!(field, "caCrl");
    let server_pair = ca.leaf(&["gw.example"], &[], |_| {});
    assert_eq!(build_err(&ServerTls { ca_crl: garbage, ..mutual(&server_pair, &ca) }).0, "caCrl");
}

#[test]
fn malformed_pins_and_modes() {
    let ca = Ca::new("ca");
    let server_pair = ca.leaf(&["gw.example"], &[], |_| {});
    for hash in ["abc".to_string(), "+f".repeat(32)] {
        let tls = ServerTls { verify_certificate_hash: strings(&[&hash]), ..mutual(&server_pair, &ca) };
        assert_eq!(build_err(&tls).0, "verifyCertificateHash[0]", "{hash}");
    }
    let tls = ServerTls { verify_certificate_spki: strings(&["not base64!"]), ..mutual(&server_pair, &ca) };
    assert_eq!(build_err(&tls).0, "verifyCertificateSpki[0]");

    let provider = Arc::new(default_provider());
    let required = client_verifier(&mutual(&server_pair, &ca), provider.clone()).unwrap();
    assert!(required.client_auth_mandatory());
    let optional = ServerTls { mode: ServerTlsMode::OptionalMutual, ..mutual(&server_pair, &ca) };
    assert!(!client_verifier(&optional, provider).unwrap().client_auth_mandatory());
}

fn webpki_server(ca: &Ca) -> Arc<WebPkiServerVerifier> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(default_provider())).build().unwrap()
}

fn name(n: &str) -> ServerName<'static> {
    ServerName::try_from(n.to_string()).unwrap()
}

#[test]
fn san_list_replaces_the_sni_check() {
    let ca = Ca::new("ca");
    let upstream = ca.leaf(&["api.internal"], &[], |_| {});
    let verify = |sans: &[&str]| {
        let verifier = AnyOfNames::new(webpki_server(&ca), &strings(sans)).unwrap();
        verifier.verify_server_cert(&upstream.chain()[0], &[], &name("sni.example"), &[], now()).map(drop)
    };
    assert!(verify(&["other.example", "api.internal"]).is_ok());
    assert!(matches!(
        verify(&["other.example"]),
        Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }))
    ));

    let stranger = Ca::new("other ca").leaf(&["api.internal"], &[], |_| {});
    let verifier = AnyOfNames::new(webpki_server(&ca), &strings(&["api.internal"])).unwrap();
    assert!(verifier.verify_server_cert(&stranger.chain()[0], &[], &name("api.internal"), &[], now()).is_err());

    let (field, _) = AnyOfNames::new(webpki_server(&ca), &strings(&["a.example", "spiffe://td/x"])).unwrap_err();
    assert_eq!(field, "subjectAltNames[1]");
}

#[test]
fn skip_verify_accepts_any_certificate() {
    let stranger = Ca::new("whoever").leaf(&["x.example"], &[], |_| {});
    let verifier = SkipVerify(Arc::new(default_provider()));
    assert!(verifier.verify_server_cert(&stranger.chain()[0], &[], &name("y.example"), &[], now()).is_ok());
}

fn material(cert: Option<&Leaf>, key: Option<&Leaf>, ca: Option<&Ca>) -> Material {
    Material {
        cert: cert.and_then(|leaf| pem(leaf.cert_pem.clone())),
        key: key.and_then(|leaf| pem(leaf.key_pem.clone())),
        ca: ca.and_then(|ca| pem(ca.pem())),
        crl: None,
        files: Vec::new(),
    }
}

#[test]
fn client_config_checks_its_material() {
    let ca = Ca::new("ca");
    let (a, b) = (ca.leaf(&["a.example"], &[], |_| {}), ca.leaf(&["b.example"], &[], |_| {}));
    let mismatched = material(Some(&a), Some(&b), Some(&ca));
    let (field, message) = client_config(UpstreamTlsMode::Mutual, &mismatched, &[], false).unwrap_err();
    assert_eq!(field, "privateKey");
    assert!(message.contains("clientCertificate"), "{message}");
    let (field, _) =
        client_config(UpstreamTlsMode::Simple, &material(None, None, None), &strings(&["spiffe://x"]), false)
            .expect_err("a URI cannot be checked");
    assert_eq!(field, "subjectAltNames[0]");
    let config = client_config(UpstreamTlsMode::Simple, &material(None, None, None), &[], true).unwrap();
    assert!(config.alpn_protocols.is_empty());
}

/// Runs a handshake between the two configs in memory; the server's error if it fails there.
fn handshake(server: ServerConfig, client: ClientConfig, sni: &str) -> Result<ServerConnection, Error> {
    let mut client = ClientConnection::new(Arc::new(client), name(sni)).unwrap();
    let mut server = ServerConnection::new(Arc::new(server)).unwrap();
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(server);
        }
        let mut wire = Vec::new();
        client.write_tls(&mut wire).unwrap();
        server.read_tls(&mut wire.as_slice()).unwrap();
        server.process_new_packets()?;
        wire.clear();
        server.write_tls(&mut wire).unwrap();
        client.read_tls(&mut wire.as_slice()).unwrap();
        client.process_new_packets()?;
    }
    panic!("the handshake did not finish");
}

#[test]
fn built_configs_handshake_with_each_other() {
    let ca = Ca::new("ca");
    let gateway = ca.leaf(&["gw.example"], &[], |_| {});
    let client = ca.leaf(&["client.example"], &[], |_| {});
    let upstream = |sans: &[&str]| {
        client_config(
            UpstreamTlsMode::Mutual,
            &material(Some(&client), Some(&client), Some(&ca)),
            &strings(sans),
            false,
        )
        .unwrap()
    };
    let tls12 = ServerTls {
        max_protocol_version: Some(TlsVersion::V1_2),
        cipher_suites: strings(&["ECDHE-ECDSA-CHACHA20-POLY1305"]),
        subject_alt_names: strings(&["client.example"]),
        ..mutual(&gateway, &ca)
    };
    let server =
        handshake(server_config(&tls12, true, true).unwrap(), upstream(&["gw.example"]), "sni.example").unwrap();
    assert_eq!(server.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(
        server.negotiated_cipher_suite().map(|s| s.suite()),
        Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
    );

    let picky = ServerTls { subject_alt_names: strings(&["someone.else"]), ..mutual(&gateway, &ca) };
    let refused = handshake(server_config(&picky, true, true).unwrap(), upstream(&[]), "gw.example").unwrap_err();
    assert_eq!(refused, Error::InvalidCertificate(CertificateError::NotValidForName));
}

#[test]
fn invalid_key_is_a_compile_error_on_the_field() {
    let ca = Ca::new("ca");
    let (a, b) = (ca.leaf(&["a.example"], &[], |_| {}), ca.leaf(&["b.example"], &[], |_| {}));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), &a.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &b.key_pem).unwrap();
    let gateway = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: edge}}\nspec:\n  \
         selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 8443, name: https, protocol: HTTPS}}\n    \
         hosts: [a.example]\n    tls: {{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}\n",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display(),
    );
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, gateway).unwrap();
    let set = crate::config::load(&[file]).unwrap();
    let errors = crate::snapshot::compile(&set, &crate::snapshot::CompileOptions::default()).unwrap_err();
    let error = errors.errors().next().unwrap();
    assert_eq!(error.field.as_deref(), Some("spec.servers[0].tls.privateKey"));
    assert!(error.message.contains("does not match"), "{}", error.message);
}

/// XFCC's `By` is the gateway certificate's first URI SAN, and absent without one.
#[test]
fn the_first_uri_san_is_the_gateways_identity() {
    let ca = Ca::new("ca");
    let with = ca.leaf(&["gw.example"], &["spiffe://td/ns/gw/sa/gateway", "urn:x"], |_| {});
    assert_eq!(uri_san(Some(with.cert_pem.as_bytes())).as_deref(), Some("spiffe://td/ns/gw/sa/gateway"));
    let without = ca.leaf(&["gw.example"], &[], |_| {});
    assert_eq!(uri_san(Some(without.cert_pem.as_bytes())), None);
}
