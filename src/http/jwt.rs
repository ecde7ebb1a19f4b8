//! RequestAuthentication on the request path, as Envoy's jwt_authn filter runs istiod's
//! providers (`requires_any` of every provider, or `allow_missing`): each provider looks for a
//! token in its locations; a request with none goes on with no identity, a verified token
//! becomes the request's identity, any other answers 401 with jwt_authn's reason (403 for an
//! audience not allowed). A token verified on this core before costs a lookup and a clock
//! read ([`JwtCore`]); a new one, one signature check with `ring`.

use std::borrow::Cow;
use std::rc::Rc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::{Map, Value};

use super::local::Answer;
use crate::config::jwks::{Curve, Jwk, PublicKey};
use crate::percore::jwt::{JwtCore, Verified};
use crate::snapshot::jwt::{JwtAuthn, Location, Provider, CLOCK_SKEW_SECS};
use crate::snapshot::RequestInfo;

#[cfg(test)]
mod tests;

/// What the filter made of a request.
pub(super) enum Authn<'s> {
    /// No provider found a token: no identity (AuthorizationPolicy decides).
    Anonymous,
    /// A token verified: its payload (`verified.claims`) is the request's identity, what
    /// AuthorizationPolicy's `request.auth.*` read.
    Verified {
        verified: Rc<Verified>,
        provider: &'s Provider,
        location: &'s Location,
    },
    Denied(Failure),
}

/// Why a token was refused: jwt_verify_lib's statuses that a gateway can meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    BadFormat,
    HeaderBadBase64,
    HeaderBadJson,
    HeaderBadAlg,
    AlgNotImplemented,
    HeaderBadKid,
    PayloadBadBase64,
    PayloadBadJson,
    IssNotString,
    SubNotString,
    AudNotString,
    IatNotInteger,
    NbfNotInteger,
    ExpNotInteger,
    SignatureBadBase64,
    UnknownIssuer,
    NotYetValid,
    Expired,
    AudienceNotAllowed,
    /// No key of the set fits the token's `kid` and `alg`.
    KidAlgMismatch,
    /// Likewise, and the token names a `kid` the set does not have: the set may have rotated.
    UnknownKid,
    /// The `jwksUri` was never fetched.
    FetchFail,
    VerificationFails,
}

impl Failure {
    /// Envoy's body (jwt_verify_lib's status text) and response code details.
    pub(super) fn text(self) -> (&'static str, &'static str) {
        use Failure::*;
        match self {
            BadFormat => (
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
                "jwt_authn_access_denied{Jwt_is_not_in_the_form_of_Header.Payload.Signature_with_two_dots_and_3_sections}",
            ),
            HeaderBadBase64 => (
                "Jwt header is an invalid Base64url encoded",
                "jwt_authn_access_denied{Jwt_header_is_an_invalid_Base64url_encoded}",
            ),
            HeaderBadJson => ("Jwt header is an invalid JSON", "jwt_authn_access_denied{Jwt_header_is_an_invalid_JSON}"),
            HeaderBadAlg => (
                "Jwt header [alg] field is required and must be a string",
                "jwt_authn_access_denied{Jwt_header_[alg]_field_is_required_and_must_be_a_string}",
            ),
            AlgNotImplemented => {
                ("Jwt header [alg] is not supported", "jwt_authn_access_denied{Jwt_header_[alg]_is_not_supported}")
            }
            HeaderBadKid => (
                "Jwt header [kid] field is not a string",
                "jwt_authn_access_denied{Jwt_header_[kid]_field_is_not_a_string}",
            ),
            PayloadBadBase64 => (
                "Jwt payload is an invalid Base64url encoded",
                "jwt_authn_access_denied{Jwt_payload_is_an_invalid_Base64url_encoded}",
            ),
            PayloadBadJson => {
                ("Jwt payload is an invalid JSON", "jwt_authn_access_denied{Jwt_payload_is_an_invalid_JSON}")
            }
            IssNotString => (
                "Jwt payload [iss] field is not a string",
                "jwt_authn_access_denied{Jwt_payload_[iss]_field_is_not_a_string}",
            ),
            SubNotString => (
                "Jwt payload [sub] field is not a string",
                "jwt_authn_access_denied{Jwt_payload_[sub]_field_is_not_a_string}",
            ),
            AudNotString => (
                "Jwt payload [aud] field is not a string or string list",
                "jwt_authn_access_denied{Jwt_payload_[aud]_field_is_not_a_string_or_string_list}",
            ),
            IatNotInteger => (
                "Jwt payload [iat] field is not an integer",
                "jwt_authn_access_denied{Jwt_payload_[iat]_field_is_not_an_integer}",
            ),
            NbfNotInteger => (
                "Jwt payload [nbf] field is not an integer",
                "jwt_authn_access_denied{Jwt_payload_[nbf]_field_is_not_an_integer}",
            ),
            ExpNotInteger => (
                "Jwt payload [exp] field is not an integer",
                "jwt_authn_access_denied{Jwt_payload_[exp]_field_is_not_an_integer}",
            ),
            SignatureBadBase64 => (
                "Jwt signature is an invalid Base64url encoded",
                "jwt_authn_access_denied{Jwt_signature_is_an_invalid_Base64url_encoded}",
            ),
            UnknownIssuer => {
                ("Jwt issuer is not configured", "jwt_authn_access_denied{Jwt_issuer_is_not_configured}")
            }
            NotYetValid => ("Jwt not yet valid", "jwt_authn_access_denied{Jwt_not_yet_valid}"),
            Expired => ("Jwt is expired", "jwt_authn_access_denied{Jwt_is_expired}"),
            AudienceNotAllowed => {
                ("Audiences in Jwt are not allowed", "jwt_authn_access_denied{Audiences_in_Jwt_are_not_allowed}")
            }
            KidAlgMismatch | UnknownKid => (
                "Jwks doesn't have key to match kid or alg from Jwt",
                "jwt_authn_access_denied{Jwks_doesn't_have_key_to_match_kid_or_alg_from_Jwt}",
            ),
            FetchFail => ("Jwks remote fetch is failed", "jwt_authn_access_denied{Jwks_remote_fetch_is_failed}"),
            VerificationFails => ("Jwt verification fails", "jwt_authn_access_denied{Jwt_verification_fails}"),
        }
    }

    /// jwt_authn answers 403 for an audience not allowed, 401 for the rest.
    fn status(self) -> u16 {
        if self == Failure::AudienceNotAllowed {
            403
        } else {
            401
        }
    }
}

/// The filter's verdict on a request under `generation`'s providers.
pub(super) fn authenticate<'s>(
    authn: &'s JwtAuthn,
    info: &RequestInfo<'_>,
    core: &JwtCore,
    generation: u64,
) -> Authn<'s> {
    // istiod sets `bypass_cors_preflight`: a preflight carries no credentials.
    if is_cors_preflight(info) {
        return Authn::Anonymous;
    }
    let (mut found, mut failure, mut now) = (false, None, None);
    for (i, provider) in authn.providers.iter().enumerate() {
        let Some((token, location)) = find(provider, info) else { continue };
        found = true;
        let now = *now.get_or_insert_with(|| core.now());
        let result = match core.lookup(generation, i, token) {
            Some(verified) => in_time(verified.nbf, verified.exp, now).map(|()| verified),
            None => verify(provider, token, now).map(|verified| {
                let verified = Rc::new(verified);
                core.insert(generation, i, token, verified.clone());
                verified
            }),
        };
        match result {
            Ok(verified) => return Authn::Verified { verified, provider, location },
            // Another provider may know the issuer; if none does, the request is refused so.
            Err(Failure::UnknownIssuer) => {}
            Err(f) => {
                if matches!(f, Failure::UnknownKid | Failure::FetchFail) {
                    if let Some(source) = &provider.source {
                        core.ask_keys(&source.uri);
                    }
                }
                failure.get_or_insert(f);
            }
        }
    }
    match (found, failure) {
        (false, _) => Authn::Anonymous,
        (true, Some(f)) => Authn::Denied(f),
        (true, None) => Authn::Denied(Failure::UnknownIssuer),
    }
}

/// Envoy's `isCorsPreflightRequest`: OPTIONS with an `origin` and an
/// `access-control-request-method`, neither empty.
fn is_cors_preflight(info: &RequestInfo<'_>) -> bool {
    let present = |name| info.header(name).is_some_and(|v| !v.is_empty());
    info.method == "OPTIONS" && present("origin") && present("access-control-request-method")
}

/// jwt_authn's refusal: its reason as the body and `www-authenticate` naming the request's
/// URI (query left out) as the realm.
pub(super) fn denied<'a>(failure: Failure, info: &RequestInfo<'_>) -> Answer<'a> {
    let realm = format!("Bearer realm=\"{}://{}{}\", error=\"invalid_token\"", info.scheme, info.host, info.path);
    let answer = Answer::simple(failure.status(), failure.text().0.as_bytes());
    Answer { headers: vec![("www-authenticate", Cow::Owned(realm))], ..answer }
}

/// The first token of `provider`'s locations, and where it was.
fn find<'h, 's>(provider: &'s Provider, info: &RequestInfo<'h>) -> Option<(&'h str, &'s Location)> {
    provider.locations.iter().find_map(|location| {
        let token = match location {
            Location::Header { name, prefix } => info.headers.iter().find_map(|h| {
                if !h.name.eq_ignore_ascii_case(name) {
                    return None;
                }
                let value = std::str::from_utf8(h.value).ok()?.trim();
                value.strip_prefix(&**prefix).map(str::trim)
            }),
            Location::Param(name) => info.query_param(name),
            Location::Cookie(name) => info
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
                .filter_map(|h| std::str::from_utf8(h.value).ok())
                .flat_map(|v| v.split(';'))
                .find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    (k == &**name).then(|| v.trim_matches('"'))
                }),
        };
        token.filter(|t| !t.is_empty()).map(|t| (t, location))
    })
}

fn in_time(nbf: Option<u64>, exp: Option<u64>, now: u64) -> Result<(), Failure> {
    if nbf.is_some_and(|nbf| now + CLOCK_SKEW_SECS < nbf) {
        return Err(Failure::NotYetValid);
    }
    if exp.is_some_and(|exp| exp != 0 && now > exp.saturating_add(CLOCK_SKEW_SECS)) {
        return Err(Failure::Expired);
    }
    Ok(())
}

fn decode(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).ok()
}

/// The algorithms jwt_verify_lib knows; HMAC ones parse but no key ever fits them.
const KNOWN_ALGS: [&str; 13] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "EdDSA",
];

/// Checks `token` as jwt_authn does, in its order: form, issuer, time, audience, key,
/// signature.
fn verify(provider: &Provider, token: &str, now: u64) -> Result<Verified, Failure> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::BadFormat);
    };
    let header = decode(header_b64).ok_or(Failure::HeaderBadBase64)?;
    let Ok(Value::Object(header)) = serde_json::from_slice::<Value>(&header) else {
        return Err(Failure::HeaderBadJson);
    };
    let Some(Value::String(alg)) = header.get("alg") else { return Err(Failure::HeaderBadAlg) };
    if !KNOWN_ALGS.contains(&alg.as_str()) {
        return Err(Failure::AlgNotImplemented);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(Failure::HeaderBadKid),
    };
    let payload = decode(payload_b64).ok_or(Failure::PayloadBadBase64)?;
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&payload) else {
        return Err(Failure::PayloadBadJson);
    };
    let iss = match claims.get("iss") {
        None => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Failure::IssNotString),
    };
    if claims.get("sub").is_some_and(|s| !s.is_string()) {
        return Err(Failure::SubNotString);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => {
            list.iter().map(|a| a.as_str().ok_or(Failure::AudNotString)).collect::<Result<_, _>>()?
        }
        Some(_) => return Err(Failure::AudNotString),
    };
    let time = |field: &str, err: Failure| match claims.get(field) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(err),
    };
    time("iat", Failure::IatNotInteger)?;
    let nbf = time("nbf", Failure::NbfNotInteger)?;
    let exp = time("exp", Failure::ExpNotInteger)?;
    let signature = decode(signature_b64).ok_or(Failure::SignatureBadBase64)?;
    if !provider.issuer.is_empty() && iss != &*provider.issuer {
        return Err(Failure::UnknownIssuer);
    }
    in_time(nbf, exp, now)?;
    if !provider.audiences.is_empty()
        && !audiences.iter().any(|a| provider.audiences.iter().any(|allowed| same_audience(a, allowed)))
    {
        return Err(Failure::AudienceNotAllowed);
    }
    let keys = provider.keys.as_ref().ok_or(Failure::FetchFail)?;
    let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    let mut fitting = keys.keys.iter().filter(|k| fits(k, kid, alg)).peekable();
    if fitting.peek().is_none() {
        let unknown = kid.is_some_and(|kid| !keys.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
        return Err(if unknown { Failure::UnknownKid } else { Failure::KidAlgMismatch });
    }
    if !fitting.any(|k| signature_ok(&k.key, alg, signed, &signature)) {
        return Err(Failure::VerificationFails);
    }
    let lines = output_lines(provider, payload_b64, &claims);
    Ok(Verified { claims, exp, nbf, lines })
}

/// jwt_verify_lib compares audiences without their `http://`/`https://` and a trailing `/`.
fn same_audience(a: &str, b: &str) -> bool {
    let bare = |s: &str| {
        let s = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://")).unwrap_or(s);
        s.strip_suffix('/').unwrap_or(s).to_owned()
    };
    bare(a) == bare(b)
}

/// A key may verify a token when the `kid`s agree (either may be absent), the key's own
/// `alg` (if any) is the token's, and its type is the one the token's algorithm needs: the
/// key decides the family, so an RSA key never checks an HMAC or an EC signature.
fn fits(key: &Jwk, kid: Option<&str>, alg: &str) -> bool {
    if let (Some(want), Some(have)) = (kid, key.kid.as_deref()) {
        if want != have {
            return false;
        }
    }
    if key.alg.as_deref().is_some_and(|a| a != alg) {
        return false;
    }
    match &key.key {
        PublicKey::Rsa { .. } => alg.starts_with("RS") || alg.starts_with("PS"),
        PublicKey::Ec { curve: Curve::P256, .. } => alg == "ES256",
        PublicKey::Ec { curve: Curve::P384, .. } => alg == "ES384",
        PublicKey::Ed25519(_) => alg == "EdDSA",
    }
}

fn signature_ok(key: &PublicKey, alg: &str, signed: &[u8], signature: &[u8]) -> bool {
    let rsa: Option<&'static signature::RsaParameters> = match alg {
        "RS256" => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
        "PS256" => Some(&signature::RSA_PSS_2048_8192_SHA256),
        "PS384" => Some(&signature::RSA_PSS_2048_8192_SHA384),
        "PS512" => Some(&signature::RSA_PSS_2048_8192_SHA512),
        _ => None,
    };
    let other = |algorithm: &'static dyn VerificationAlgorithm, public: &[u8]| {
        UnparsedPublicKey::new(algorithm, public).verify(signed, signature).is_ok()
    };
    match (key, rsa) {
        (PublicKey::Rsa { n, e }, Some(params)) => {
            RsaPublicKeyComponents { n, e }.verify(params, signed, signature).is_ok()
        }
        (PublicKey::Ec { curve: Curve::P256, point }, None) if alg == "ES256" => {
            other(&signature::ECDSA_P256_SHA256_FIXED, point)
        }
        (PublicKey::Ec { curve: Curve::P384, point }, None) if alg == "ES384" => {
            other(&signature::ECDSA_P384_SHA384_FIXED, point)
        }
        (PublicKey::Ed25519(x), None) if alg == "EdDSA" => other(&signature::ED25519, x),
        _ => false,
    }
}

/// `outputPayloadToHeader` (the payload as the token carries it, base64url) and
/// `outputClaimToHeaders` (strings as they are, numbers and booleans written out, lists joined
/// with `,`; a claim absent, of another type, or holding a line break writes nothing).
fn output_lines(provider: &Provider, payload_b64: &str, claims: &Map<String, Value>) -> Box<[(Box<str>, Box<str>)]> {
    let mut lines: Vec<(Box<str>, Box<str>)> = Vec::new();
    if let Some(name) = &provider.payload_header {
        lines.push((name.clone(), payload_b64.into()));
    }
    for (header, path) in provider.claim_headers.iter() {
        let mut value = path.first().and_then(|first| claims.get(&**first));
        for segment in path.iter().skip(1) {
            value = value.and_then(|v| v.get(&**segment));
        }
        let text = match value {
            Some(Value::String(s)) => Some(s.clone()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(_) | Value::Bool(_) => Some(i.to_string()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
            _ => None,
        };
        if let Some(text) = text.filter(|t| !t.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)) {
            lines.push((header.clone(), text.into()));
        }
    }
    lines.into()
}

/// What a request forwarded upstream loses and gains from the filter.
pub(super) struct Upstream<'a> {
    /// Every provider's output header names, and the token's header unless forwarded.
    pub(super) remove: Vec<&'a str>,
    pub(super) add: Vec<(&'a str, &'a str)>,
    /// The query parameter that held a token not forwarded.
    pub(super) strip_param: Option<&'a str>,
}

impl<'a> Upstream<'a> {
    /// `None` when the request is left as it came (no output header configured, no token
    /// verified): nothing is allocated for it then.
    pub(super) fn new(authn: &'a JwtAuthn, outcome: &'a Authn<'_>) -> Option<Self> {
        if authn.sanitize.is_empty() && !matches!(outcome, Authn::Verified { .. }) {
            return None;
        }
        let mut out =
            Upstream { remove: authn.sanitize.iter().map(|n| &**n).collect(), add: Vec::new(), strip_param: None };
        if let Authn::Verified { verified, provider, location } = outcome {
            out.add.extend(verified.lines.iter().map(|(n, v)| (&**n, &**v)));
            if !provider.forward {
                match location {
                    Location::Header { name, .. } => out.remove.push(name),
                    Location::Param(name) => out.strip_param = Some(name),
                    // Envoy leaves cookies as they are.
                    Location::Cookie(_) => {}
                }
            }
        }
        Some(out)
    }
}

/// `path` (the rewritten path and query, else the request's) without parameter `name`.
pub(super) fn strip_param(path: Option<&str>, info: &RequestInfo<'_>, name: &str) -> Option<String> {
    let original;
    let full = match path {
        Some(p) => p,
        None => {
            original = match info.query {
                Some(q) => format!("{}?{q}", info.path),
                None => return None,
            };
            &original
        }
    };
    let Some((path, query)) = full.split_once('?') else { return Some(full.to_owned()) };
    let kept: Vec<&str> =
        query.split('&').filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name).collect();
    Some(if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) })
}
