//! The verifier on its own: tokens minted here with real keys (Ed25519 and EC P-256, which
//! `ring` signs with; RSA end to end in `tests/jwt.rs`), and every way one is refused.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

use super::*;
use crate::config::jwks::Jwks;

const NOW: u64 = 1_700_000_000;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

struct Keys {
    ed: Ed25519KeyPair,
    ec: EcdsaKeyPair,
}

impl Keys {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let ed = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        Keys { ed, ec }
    }

    fn jwks(&self) -> Jwks {
        let point = self.ec.public_key().as_ref();
        let text = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(self.ed.public_key().as_ref())},
            {"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&point[1..33]), "y": b64(&point[33..])},
        ]});
        Jwks::parse(&text.to_string()).unwrap()
    }

    /// A token with `header` and `claims`, signed as its `alg` says (EdDSA or ES256; any
    /// other gets a signature of zeros).
    fn mint(&self, header: Value, claims: Value) -> String {
        let signing = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let signature = match header["alg"].as_str() {
            Some("EdDSA") => self.ed.sign(signing.as_bytes()).as_ref().to_vec(),
            Some("ES256") => self.ec.sign(&SystemRandom::new(), signing.as_bytes()).unwrap().as_ref().to_vec(),
            _ => vec![0; 32],
        };
        format!("{signing}.{}", b64(&signature))
    }
}

fn provider(keys: Option<Jwks>) -> Provider {
    Provider {
        issuer: "https://issuer.test".into(),
        audiences: Box::new(["api.test".into()]),
        locations: Location::defaults(),
        keys: keys.map(Arc::new),
        source: None,
        forward: false,
        payload_header: Some("x-payload".into()),
        claim_headers: Box::new([
            ("x-sub".into(), Box::new(["sub".into()])),
            ("x-team".into(), Box::new(["org".into(), "team".into()])),
            ("x-groups".into(), Box::new(["groups".into()])),
            ("x-evil".into(), Box::new(["evil".into()])),
        ]),
    }
}

fn good_claims() -> Value {
    json!({"iss": "https://issuer.test", "sub": "alice", "aud": ["other", "https://api.test/"],
           "exp": NOW + 600, "nbf": NOW - 10, "iat": NOW - 10,
           "org": {"team": "edge"}, "groups": ["a", "b"], "evil": "x\r\ninjected: 1"})
}

#[test]
fn tokens_signed_with_each_key_verify_and_give_their_claims_and_lines() {
    let keys = Keys::new();
    let p = provider(Some(keys.jwks()));
    for (alg, kid) in [("EdDSA", "ed"), ("ES256", "ec")] {
        let token = keys.mint(json!({"alg": alg, "kid": kid, "typ": "JWT"}), good_claims());
        let verified = verify(&p, &token, NOW).unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(verified.claims["sub"], "alice");
        assert_eq!((verified.exp, verified.nbf), (Some(NOW + 600), Some(NOW - 10)));
        let lines: Vec<(&str, &str)> = verified.lines.iter().map(|(n, v)| (&**n, &**v)).collect();
        let payload = token.split('.').nth(1).unwrap();
        assert_eq!(lines, [("x-payload", payload), ("x-sub", "alice"), ("x-team", "edge"), ("x-groups", "a,b")]);
    }
    // No kid: every key of the right type is tried.
    let token = keys.mint(json!({"alg": "EdDSA"}), good_claims());
    assert!(verify(&p, &token, NOW).is_ok());
}

#[test]
fn every_attack_and_fault_is_refused_with_jwt_authn_reason() {
    let keys = Keys::new();
    let p = provider(Some(keys.jwks()));
    let ed = json!({"alg": "EdDSA", "kid": "ed"});
    let with = |f: &dyn Fn(&mut Value)| {
        let mut claims = good_claims();
        f(&mut claims);
        keys.mint(ed.clone(), claims)
    };
    let good = keys.mint(ed.clone(), good_claims());
    let (h, pl, sig) = {
        let mut it = good.split('.');
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };
    let unsigned_none = format!("{}.{pl}.", b64(br#"{"alg":"none"}"#));
    let cases: Vec<(String, Failure)> = vec![
        ("a.b".into(), Failure::BadFormat),
        (format!("{good}.x"), Failure::BadFormat),
        (format!("***.{pl}.{sig}"), Failure::HeaderBadBase64),
        (format!("{}.{pl}.{sig}", b64(b"[1]")), Failure::HeaderBadJson),
        (format!("{}.{pl}.{sig}", b64(br#"{"alg":1}"#)), Failure::HeaderBadAlg),
        (unsigned_none, Failure::AlgNotImplemented),
        (format!("{}.{pl}.{sig}", b64(br#"{"alg":"EdDSA","kid":7}"#)), Failure::HeaderBadKid),
        (format!("{h}.***.{sig}"), Failure::PayloadBadBase64),
        (format!("{h}.{}.{sig}", b64(b"not json")), Failure::PayloadBadJson),
        (format!("{h}.{pl}.***"), Failure::SignatureBadBase64),
        (with(&|c| c["iss"] = json!(5)), Failure::IssNotString),
        (with(&|c| c["aud"] = json!([1])), Failure::AudNotString),
        (with(&|c| c["exp"] = json!("soon")), Failure::ExpNotInteger),
        (with(&|c| c["iss"] = json!("https://evil.test")), Failure::UnknownIssuer),
        (with(&|c| c["exp"] = json!(NOW - 61)), Failure::Expired),
        (with(&|c| c["nbf"] = json!(NOW + 61)), Failure::NotYetValid),
        (with(&|c| c["aud"] = json!("elsewhere.test")), Failure::AudienceNotAllowed),
        (with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))), Failure::AudienceNotAllowed),
        // HS256 "signed" with a published key: no key is an HMAC key.
        (keys.mint(json!({"alg": "HS256", "kid": "ed"}), good_claims()), Failure::KidAlgMismatch),
        // The header's alg must be the key's kind: an EC key never checks EdDSA.
        (keys.mint(json!({"alg": "EdDSA", "kid": "ec"}), good_claims()), Failure::KidAlgMismatch),
        (keys.mint(json!({"alg": "EdDSA", "kid": "rotated"}), good_claims()), Failure::UnknownKid),
        // Signed, then the payload changed.
        (
            format!("{h}.{}.{sig}", b64(with(&|c| c["sub"] = json!("mallory")).split('.').nth(1).unwrap().as_bytes())),
            Failure::PayloadBadJson,
        ),
        (
            format!("{h}.{}.{sig}", with(&|c| c["sub"] = json!("mallory")).split('.').nth(1).unwrap()),
            Failure::VerificationFails,
        ),
    ];
    for (token, want) in cases {
        assert_eq!(verify(&p, &token, NOW).err(), Some(want), "{token}");
    }
    // Within the 60 s skew, a token is still (or already) good.
    assert!(verify(&p, &with(&|c| c["exp"] = json!(NOW - 59)), NOW).is_ok());
    assert!(verify(&p, &with(&|c| c["nbf"] = json!(NOW + 59)), NOW).is_ok());
    // A key set never fetched fails every token.
    assert_eq!(verify(&provider(None), &good, NOW).err(), Some(Failure::FetchFail));
}

fn info<'a>(headers: &'a [httparse::Header<'a>], query: Option<&'a str>) -> RequestInfo<'a> {
    RequestInfo { host: "gw.test:8080", method: "GET", path: "/p", query, scheme: "http", headers }
}

#[test]
fn tokens_are_found_where_the_rule_says_and_a_value_without_the_prefix_is_none() {
    let mut p = provider(None);
    let h = |name: &'static str, value: &'static str| httparse::Header { name, value: value.as_bytes() };
    let headers = [h("Authorization", "Bearer abc"), h("x-token", "tok1"), h("cookie", "a=1; session=c00kie")];
    let at = |p: &Provider, headers: &[httparse::Header<'_>], q: Option<&str>| {
        find(p, &info(headers, q)).map(|(t, _)| t.to_owned())
    };
    assert_eq!(at(&p, &headers, None).as_deref(), Some("abc"));
    assert_eq!(at(&p, &[], Some("x=1&access_token=qtok")).as_deref(), Some("qtok"));
    assert_eq!(at(&p, &[h("authorization", "Basic abc")], None), None);
    p.locations =
        Box::new([Location::Header { name: "x-token".into(), prefix: "".into() }, Location::Cookie("session".into())]);
    assert_eq!(at(&p, &headers, None).as_deref(), Some("tok1"));
    assert_eq!(at(&p, &headers[2..], None).as_deref(), Some("c00kie"));
    assert_eq!(at(&p, &headers[..1], Some("access_token=q")), None, "the defaults no longer apply");
}

#[test]
fn a_repeated_token_is_verified_once_per_core_and_its_times_checked_every_time() {
    let keys = Keys::new();
    let authn = JwtAuthn { providers: Box::new([provider(Some(keys.jwks()))]), sanitize: Box::default() };
    let token = keys.mint(json!({"alg": "EdDSA", "kid": "ed"}), good_claims());
    let value = format!("Bearer {token}");
    let headers = [httparse::Header { name: "authorization", value: value.as_bytes() }];
    static CLOCK: AtomicU64 = AtomicU64::new(NOW);
    let core = JwtCore::with_clock(None, || CLOCK.load(Relaxed));
    let Authn::Verified { verified, .. } = authenticate(&authn, &info(&headers, None), &core, 1) else {
        panic!("not verified")
    };
    let cached = core.lookup(1, 0, &token).expect("kept");
    assert!(Rc::ptr_eq(&verified, &cached));
    let Authn::Verified { verified: again, .. } = authenticate(&authn, &info(&headers, None), &core, 1) else {
        panic!("not verified again")
    };
    assert!(Rc::ptr_eq(&verified, &again), "the second use is the cached verification");
    CLOCK.store(NOW + 661, Relaxed);
    assert!(matches!(authenticate(&authn, &info(&headers, None), &core, 1), Authn::Denied(Failure::Expired)));
    CLOCK.store(NOW, Relaxed);
    assert!(matches!(authenticate(&authn, &info(&[], None), &core, 1), Authn::Anonymous));
    let other = JwtAuthn {
        providers: Box::new([Provider { issuer: "https://other.test".into(), ..provider(Some(keys.jwks())) }]),
        sanitize: Box::default(),
    };
    assert!(matches!(authenticate(&other, &info(&headers, None), &core, 2), Authn::Denied(Failure::UnknownIssuer)));
}

#[test]
fn a_cors_preflight_is_not_checked_as_istiod_configures_jwt_authn() {
    let authn = JwtAuthn { providers: Box::new([provider(None)]), sanitize: Box::default() };
    let h = |name: &'static str, value: &'static str| httparse::Header { name, value: value.as_bytes() };
    let headers =
        [h("authorization", "Bearer a.b.c"), h("origin", "https://a.test"), h("access-control-request-method", "GET")];
    let core = JwtCore::new(None);
    let preflight = RequestInfo { method: "OPTIONS", ..info(&headers, None) };
    assert!(matches!(authenticate(&authn, &preflight, &core, 1), Authn::Anonymous));
    let plain_options = RequestInfo { method: "OPTIONS", ..info(&headers[..2], None) };
    assert!(matches!(authenticate(&authn, &plain_options, &core, 1), Authn::Denied(_)));
}

#[test]
fn a_token_not_forwarded_leaves_its_query_parameter_behind() {
    let i = info(&[], Some("a=1&access_token=t&b=2"));
    assert_eq!(strip_param(None, &i, "access_token").as_deref(), Some("/p?a=1&b=2"));
    assert_eq!(strip_param(Some("/v2?access_token=t"), &i, "access_token").as_deref(), Some("/v2"));
    assert_eq!(strip_param(None, &info(&[], None), "access_token"), None);
}

#[test]
fn a_refusal_names_the_request_as_its_realm() {
    let answer = denied(Failure::Expired, &info(&[], Some("secret=1")));
    assert_eq!((answer.status, answer.body), (401, &b"Jwt is expired"[..]));
    assert_eq!(answer.headers[0].1, "Bearer realm=\"http://gw.test:8080/p\", error=\"invalid_token\"");
    assert_eq!(denied(Failure::AudienceNotAllowed, &info(&[], None)).status, 403);
}
