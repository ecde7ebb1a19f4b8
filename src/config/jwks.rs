//! JSON Web Key Sets (RFC 7517): the keys a RequestAuthentication verifies tokens with, from
//! its inline `jwks` or fetched from its `jwksUri`. Parsed once, off the request path, into
//! the raw public key material the verifier hands to `ring`.
//!
//! Only public keys of the asymmetric families Envoy's jwt_authn verifies are kept: RSA
//! (RS256/384/512, PS256/384/512), EC P-256 and P-384 (ES256, ES384) and OKP Ed25519 (EdDSA).
//! Symmetric (`oct`) keys parse, as Istio's webhook accepts them, but are dropped: a gateway
//! never verifies an HMAC, so a token signed with a published public key as an HMAC secret
//! finds no key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// One public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The key's own `alg`, when it names one: a token's `alg` must then be the same.
    pub alg: Option<String>,
    pub key: PublicKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Big-endian modulus and exponent.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (`04 || x || y`).
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

/// A parsed key set: the keys a token may be verified with, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`), or a single JWK as jwt_authn also accepts.
    /// Every key must be well formed; keys Strait never verifies with (`oct`, P-521, X25519)
    /// are left out.
    pub fn parse(text: &str) -> Result<Jwks, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let list = match value.get("keys") {
            Some(Value::Array(keys)) => keys.clone(),
            Some(_) => return Err("[keys] is not an array".to_owned()),
            None if value.get("kty").is_some() => vec![value],
            None => return Err("no [keys] field".to_owned()),
        };
        let mut keys = Vec::new();
        for (i, key) in list.iter().enumerate() {
            if let Some(k) = parse_key(key).map_err(|e| format!("key {i}: {e}"))? {
                keys.push(k);
            }
        }
        Ok(Jwks { keys })
    }
}

fn string<'a>(key: &'a Value, field: &str) -> Result<Option<&'a str>, String> {
    match key.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("[{field}] is not a string")),
    }
}

fn bytes(key: &Value, field: &str) -> Result<Vec<u8>, String> {
    let s = string(key, field)?.ok_or_else(|| format!("[{field}] is missing"))?;
    // Some issuers pad their base64url; RFC 7515 says not to, and either decodes the same.
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|_| format!("[{field}] is not base64url"))
}

/// One key, or `None` for a well-formed key Strait never verifies with.
fn parse_key(key: &Value) -> Result<Option<Jwk>, String> {
    let kty = string(key, "kty")?.ok_or("[kty] is missing")?;
    let kid = string(key, "kid")?.map(str::to_owned);
    let alg = string(key, "alg")?.map(str::to_owned);
    let public = match kty {
        "RSA" => {
            if alg.as_deref().is_some_and(|a| !a.starts_with("RS") && !a.starts_with("PS")) {
                return Err("[alg] is not started with [RS] or [PS] for an RSA key".to_owned());
            }
            let (n, e) = (bytes(key, "n")?, bytes(key, "e")?);
            PublicKey::Rsa { n: strip_zeros(n), e: strip_zeros(e) }
        }
        "EC" => {
            let crv = string(key, "crv")?.ok_or("[crv] is missing for an EC key")?;
            let (x, y) = (bytes(key, "x")?, bytes(key, "y")?);
            let (curve, len) = match crv {
                "P-256" => (Curve::P256, 32),
                "P-384" => (Curve::P384, 48),
                "P-521" => return Ok(None),
                other => return Err(format!("[crv] {other} is not supported for an EC key")),
            };
            if x.len() != len || y.len() != len {
                return Err(format!("[x] and [y] must be {len} bytes for {crv}"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            PublicKey::Ec { curve, point }
        }
        "OKP" => {
            let crv = string(key, "crv")?.ok_or("[crv] is missing for an OKP key")?;
            let x = bytes(key, "x")?;
            match crv {
                "Ed25519" if x.len() == 32 => PublicKey::Ed25519(x),
                "Ed25519" => return Err("[x] must be 32 bytes for Ed25519".to_owned()),
                "X25519" | "Ed448" | "X448" => return Ok(None),
                other => return Err(format!("[crv] {other} is not supported for an OKP key")),
            }
        }
        "oct" => {
            bytes(key, "k")?;
            return Ok(None);
        }
        other => return Err(format!("[kty] {other} is not supported")),
    };
    Ok(Some(Jwk { kid, alg, key: public }))
}

/// RSA integers as `ring` takes them: big-endian without leading zero bytes.
fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_each_family_parse_and_symmetric_ones_are_dropped() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let text = format!(
            r#"{{"keys":[
                {{"kty":"RSA","kid":"r","alg":"RS256","n":"AQAB","e":"AAEAAQ"}},
                {{"kty":"EC","kid":"e","crv":"P-256","x":"{x}","y":"{x}"}},
                {{"kty":"OKP","crv":"Ed25519","x":"{x}"}},
                {{"kty":"oct","k":"c2VjcmV0"}}
            ]}}"#
        );
        let jwks = Jwks::parse(&text).unwrap();
        assert_eq!(jwks.keys.len(), 3);
        assert_eq!(jwks.keys[0].key, PublicKey::Rsa { n: vec![1, 0, 1], e: vec![1, 0, 1] });
        assert_eq!(jwks.keys[0].kid.as_deref(), Some("r"));
        let PublicKey::Ec { curve: Curve::P256, point } = &jwks.keys[1].key else { panic!("{:?}", jwks.keys[1]) };
        assert_eq!((point.len(), point[0]), (65, 4));
        assert_eq!(jwks.keys[2].key, PublicKey::Ed25519(vec![7; 32]));
    }

    #[test]
    fn malformed_sets_and_keys_are_refused_with_the_reason() {
        for (text, want) in [
            ("not json", "invalid JSON"),
            (r#"{"keys": {}}"#, "[keys] is not an array"),
            (r#"{"other": 1}"#, "no [keys] field"),
            (r#"{"keys":[{"n":"AQAB"}]}"#, "key 0: [kty] is missing"),
            (r#"{"keys":[{"kty":"RSA","e":"AQAB"}]}"#, "key 0: [n] is missing"),
            (r#"{"keys":[{"kty":"RSA","n":"***","e":"AQAB"}]}"#, "key 0: [n] is not base64url"),
            (r#"{"keys":[{"kty":"RSA","alg":"ES256","n":"AQAB","e":"AQAB"}]}"#, "key 0: [alg] is not started"),
            (r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB"}]}"#, "key 0: [x] and [y] must be 32"),
            (r#"{"keys":[{"kty":"XYZ"}]}"#, "key 0: [kty] XYZ is not supported"),
        ] {
            let err = Jwks::parse(text).unwrap_err();
            assert!(err.starts_with(want), "{text}: {err}");
        }
    }
}
