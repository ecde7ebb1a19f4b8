//! RequestAuthentication end to end on both drivers: tokens minted here with real keys (RSA,
//! EC P-256, Ed25519), key sets served by a JWKS server the test runs (rotated, then down),
//! and the attacks a gateway must refuse, through the real binary to a real backend.

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};
use strait_test_support::{self as support, both_drivers, gateway};

use support::backend::Backend;
use support::client::{self, Response};
use support::config::{docs, http_gateway, service_entry, virtual_service};
use support::tcp::TcpBackend;
use support::tls::{Ca, TlsBackend};
use support::{free_port, wait_until, Driver, Gateway, GatewayBuilder};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// One signing key and its public JWK.
enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

struct Key {
    kid: &'static str,
    signer: Signer,
}

impl Key {
    fn rsa(kid: &'static str) -> Key {
        let generated = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&generated).unwrap();
        Key { kid, signer: Signer::Rsa(RsaKeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()) }
    }

    fn ec(kid: &'static str) -> Key {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Key { kid, signer: Signer::Ec(EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap()) }
    }

    fn ed(kid: &'static str) -> Key {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Key { kid, signer: Signer::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()) }
    }

    fn jwk(&self) -> Value {
        match &self.signer {
            Signer::Rsa(k) => {
                let c: signature::RsaPublicKeyComponents<Vec<u8>> = k.public().into();
                json!({"kty": "RSA", "kid": self.kid, "n": b64(&c.n), "e": b64(&c.e)})
            }
            Signer::Ec(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "x": b64(&p[1..33]), "y": b64(&p[33..])})
            }
            Signer::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": b64(k.public_key().as_ref())})
            }
        }
    }

    /// A token with `claims`, signed with `alg` (RS256/PS256 for RSA, ES256, EdDSA).
    fn mint(&self, alg: &str, claims: &Value) -> String {
        let header = json!({"alg": alg, "typ": "JWT", "kid": self.kid});
        let signing = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let rng = SystemRandom::new();
        let sig = match &self.signer {
            Signer::Rsa(k) => {
                let padding: &'static dyn signature::RsaEncoding =
                    if alg == "PS256" { &signature::RSA_PSS_SHA256 } else { &signature::RSA_PKCS1_SHA256 };
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(padding, &rng, signing.as_bytes(), &mut sig).unwrap();
                sig
            }
            Signer::Ec(k) => k.sign(&rng, signing.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Ed(k) => k.sign(signing.as_bytes()).as_ref().to_vec(),
        };
        format!("{signing}.{}", b64(&sig))
    }
}

fn jwks(keys: &[&Key]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

const ISSUER: &str = "https://issuer.strait.test";

fn claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "aud": "api.strait.test", "exp": now() + 600, "iat": now(),
           "groups": ["admins", "ops"]})
}

/// A JWKS server: `GET` anything answers the current body, or 503 while it is `None`.
struct JwksServer {
    server: TcpBackend,
    body: Arc<Mutex<Option<String>>>,
}

impl JwksServer {
    fn start(body: String) -> JwksServer {
        let body = Arc::new(Mutex::new(Some(body)));
        let shared = body.clone();
        let server = TcpBackend::start(move |mut s, _| {
            if support::read_raw_head(&mut s).is_none() {
                return;
            }
            let answer = match shared.lock().unwrap().clone() {
                Some(b) => format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}",
                    b.len()
                ),
                None => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_owned(),
            };
            let _ = s.write_all(answer.as_bytes());
        });
        JwksServer { server, body }
    }

    fn uri(&self) -> String {
        format!("http://{}/keys", self.server.addr)
    }

    fn set(&self, body: Option<String>) {
        *self.body.lock().unwrap() = body;
    }

    fn fetches(&self) -> usize {
        self.server.stats.accepted.load(Ordering::Relaxed)
    }
}

/// A gateway routing everything of `app.test` to `backend`, with `policy` (documents).
fn start(driver: Driver, backend: &Backend, policy: &str) -> (Gateway, SocketAddr) {
    start_env(driver, backend, policy, &[])
}

/// [`start`], with environment variables for the gateway.
fn start_env(driver: Driver, backend: &Backend, policy: &str, env: &[(&str, &str)]) -> (Gateway, SocketAddr) {
    start_with(driver, backend, policy, |g| env.iter().fold(g, |g, (k, v)| g.env(k, v)))
}

/// [`start`], the gateway's builder set up by `setup` (arguments, environment).
fn start_with(
    driver: Driver,
    backend: &Backend,
    policy: &str,
    setup: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
) -> (Gateway, SocketAddr) {
    let port = free_port();
    let route = "  - route:\n    - destination:\n        host: app.local\n";
    let yaml = docs(&[
        http_gateway("gw", port, &["app.test"]),
        virtual_service("app", "gw", &["app.test"], route),
        service_entry("app", "app.local", 80, &[backend.port()]),
        policy.to_owned(),
    ]);
    let gw = setup(gateway!(driver).file("gw.yaml", &yaml)).start();
    (gw, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn request_authentication(namespace: &str, rules: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: jwt\n  namespace: {namespace}\n\
         spec:\n  jwtRules:\n{rules}"
    )
}

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let lines: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    client::request(addr, &format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n{lines}Connection: close\r\n\r\n"))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// jwt_authn's refusal: `status`, its reason as the body, the realm naming the request.
fn assert_refused(r: &Response, status: u16, reason: &str, path: &str, addr: SocketAddr) {
    assert_eq!((r.status, r.body_text().as_str()), (status, reason));
    let realm = format!("Bearer realm=\"http://app.test{path}\", error=\"invalid_token\"");
    assert_eq!(r.header("www-authenticate"), Some(realm.as_str()), "{addr}");
}

both_drivers! {
    fn rsa_ec_and_ed25519_tokens_reach_the_backend_as_their_claims(driver) {
        let (rsa, ec, ed) = (Key::rsa("rsa"), Key::ec("ec"), Key::ed("ed"));
        let server = JwksServer::start(jwks(&[&rsa, &ec, &ed]));
        let backend = Backend::start("app");
        let rules = format!(
            "  - issuer: {ISSUER}\n    jwksUri: {}\n    audiences: [api.strait.test]\n    outputPayloadToHeader: x-jwt-payload\n\
             \x20   outputClaimToHeaders: [{{header: x-sub, claim: sub}}, {{header: x-groups, claim: groups}}]\n",
            server.uri()
        );
        let (_gw, addr) = start(driver, &backend, &request_authentication("istio-system", &rules));
        for (key, alg) in [(&rsa, "RS256"), (&rsa, "PS256"), (&ec, "ES256"), (&ed, "EdDSA")] {
            let token = key.mint(alg, &claims());
            let r = get(addr, "/hello", &[("authorization", &bearer(&token)), ("x-sub", "spoofed")]);
            assert_eq!(r.status, 200, "{alg}: {}", r.body_text());
            let got = backend.last();
            assert_eq!(got.header("x-sub"), Some("alice"), "{alg}");
            assert_eq!(got.header_all("x-sub").len(), 1, "the client's x-sub is gone");
            assert_eq!(got.header("x-groups"), Some("admins,ops"));
            assert_eq!(got.header("x-jwt-payload"), token.split('.').nth(1));
            assert_eq!(got.header("authorization"), None, "the token is not forwarded");
        }
        // A token in the default query parameter is taken out of the forwarded path.
        let token = ed.mint("EdDSA", &claims());
        let r = get(addr, &format!("/q?a=1&access_token={token}&b=2"), &[]);
        assert_eq!(r.status, 200);
        assert_eq!(backend.last().target, "/q?a=1&b=2");
        // No token: no identity, and no identity a client wrote itself.
        let r = get(addr, "/anon", &[("x-sub", "spoofed"), ("x-jwt-payload", "e30")]);
        assert_eq!(r.status, 200);
        let got = backend.last();
        assert_eq!((got.header("x-sub"), got.header("x-jwt-payload")), (None, None));
        assert_eq!(server.fetches(), 1, "one fetch at start, none per request");
    }

    fn attacks_and_bad_tokens_get_envoys_refusal_and_never_reach_the_backend(driver) {
        let rsa = Key::rsa("rsa");
        let server = JwksServer::start(jwks(&[&rsa]));
        let backend = Backend::start("app");
        let rules = format!("  - issuer: {ISSUER}\n    jwksUri: {}\n    audiences: [api.strait.test]\n", server.uri());
        let (_gw, addr) = start(driver, &backend, &request_authentication("istio-system", &rules));
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = claims();
            f(&mut c);
            rsa.mint("RS256", &c)
        };
        let good = rsa.mint("RS256", &claims());
        let payload = good.split('.').nth(1).unwrap();
        // `alg: none`, unsigned.
        let none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
        // HS256 keyed with the published RSA key (its JWK as the HMAC secret).
        let hs_header = b64(json!({"alg": "HS256", "kid": "rsa"}).to_string().as_bytes());
        let hs_signing = format!("{hs_header}.{payload}");
        let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, rsa.jwk().to_string().as_bytes());
        let hs256 = format!("{hs_signing}.{}", b64(ring::hmac::sign(&secret, hs_signing.as_bytes()).as_ref()));
        // Oversized: 32 KiB of claims under a signature made for another payload.
        let big = with(&|c| c["pad"] = json!("x".repeat(32 * 1024)));
        let (bh, _, _) = {
            let mut p = big.split('.');
            (p.next().unwrap(), p.next(), p.next())
        };
        let oversized = format!("{bh}.{}.{}", big.split('.').nth(1).unwrap(), good.split('.').nth(2).unwrap());
        let cases: Vec<(String, u16, &str)> = vec![
            (none, 401, "Jwt header [alg] is not supported"),
            (hs256, 401, "Jwks doesn't have key to match kid or alg from Jwt"),
            (with(&|c| c["exp"] = json!(now() - 120)), 401, "Jwt is expired"),
            (with(&|c| c["nbf"] = json!(now() + 600)), 401, "Jwt not yet valid"),
            (with(&|c| c["iss"] = json!("https://evil.test")), 401, "Jwt issuer is not configured"),
            (with(&|c| c["aud"] = json!("other.test")), 403, "Audiences in Jwt are not allowed"),
            (Key::rsa("rogue").mint("RS256", &claims()), 401, "Jwks doesn't have key to match kid or alg from Jwt"),
            (oversized, 401, "Jwt verification fails"),
            ("not-a-jwt".to_owned(), 401, "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"),
            (format!("{}.{payload}.sig", b64(b"{oops")), 401, "Jwt header is an invalid JSON"),
        ];
        for (token, status, reason) in &cases {
            let r = get(addr, "/secret?x=1", &[("authorization", &bearer(token))]);
            assert_refused(&r, *status, reason, "/secret", addr);
        }
        // A host with no route still meets the filter first, as Envoy's chain runs it.
        let r = client::request(addr, &format!("GET /p HTTP/1.1\r\nHost: nowhere.test\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n", cases[2].0));
        assert_eq!((r.status, r.body_text().as_str()), (401, "Jwt is expired"));
        assert_eq!(backend.count(), 0, "no refused request reached the backend");
        // HTTP/2 meets the same filter: the refusal is the same answer.
        let out = Command::new("curl")
            .args(["-sS", "-m", "20", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null", "-H", "host: app.test"])
            .args(["-H", &format!("authorization: Bearer {}", cases[2].0), &format!("http://{addr}/h2")])
            .output()
            .expect("curl runs");
        let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(head.starts_with("http/2 401"), "{head}");
        assert!(head.contains("www-authenticate: bearer realm=\"http://app.test/h2\", error=\"invalid_token\""), "{head}");
        let r = get(addr, "/ok", &[("authorization", &bearer(&good))]);
        assert_eq!(r.status, 200);
    }

    fn a_new_kid_fetches_the_keys_again_and_a_dead_jwks_server_keeps_the_last_ones(driver) {
        let (old, new, unknown) = (Key::ed("old"), Key::ed("new"), Key::ed("unknown"));
        let server = JwksServer::start(jwks(&[&old]));
        let backend = Backend::start("app");
        let rules = format!("  - issuer: {ISSUER}\n    jwksUri: {}\n", server.uri());
        let (gw, addr) = start(driver, &backend, &request_authentication("istio-system", &rules));
        let ok = |key: &Key| get(addr, "/", &[("authorization", &bearer(&key.mint("EdDSA", &claims())))]).status == 200;
        assert!(ok(&old));
        server.set(Some(jwks(&[&new])));
        let r = get(addr, "/", &[("authorization", &bearer(&new.mint("EdDSA", &claims())))]);
        assert_refused(&r, 401, "Jwks doesn't have key to match kid or alg from Jwt", "/", addr);
        assert!(wait_until(Duration::from_secs(15), || ok(&new)).is_some(), "the new key never came:\n{}", gw.logs());
        // Every worker follows the new keys (one may still serve the last snapshot a moment).
        let gone = wait_until(Duration::from_secs(5), || !ok(&old) && !ok(&old) && !ok(&old));
        assert!(gone.is_some(), "the rotated-out key still verifies");
        // The server goes down; a token naming a kid nobody has makes the gateway ask again.
        server.set(None);
        let before = server.fetches();
        assert!(!ok(&unknown));
        let asked = wait_until(Duration::from_secs(15), || {
            let _ = ok(&unknown);
            server.fetches() > before
        });
        assert!(asked.is_some(), "an unknown kid never fetched the keys again:\n{}", gw.logs());
        assert!(wait_until(Duration::from_secs(5), || gw.logs().contains("JWKS fetch failed")).is_some());
        assert!(ok(&new), "the last good keys are kept while the server is down");
    }

    fn a_jwks_uri_over_https_is_checked_against_the_system_roots(driver) {
        let ed = Key::ed("ed");
        let ca = Ca::new("jwks test ca");
        // The TLS backend answers every request with its name: here, the key set.
        let server = TlsBackend::start(&jwks(&[&ed]), &ca.server(&["127.0.0.1"]), None);
        let roots = tempfile::tempdir().unwrap();
        let roots_file = ca.write(roots.path(), "roots.pem");
        let backend = Backend::start("app");
        let rules = format!("  - issuer: {ISSUER}\n    jwksUri: https://127.0.0.1:{}/keys\n", server.port());
        let policy = request_authentication("istio-system", &rules);
        let roots = [("SSL_CERT_FILE", roots_file.to_str().unwrap())];
        let (gw, addr) = start_env(driver, &backend, &policy, &roots);
        let r = get(addr, "/", &[("authorization", &bearer(&ed.mint("EdDSA", &claims())))]);
        assert_eq!(r.status, 200, "{}\n{}", r.body_text(), gw.logs());
        assert_eq!(server.requests()[0].target, "/keys");
        assert_eq!(server.handshakes(), 1);
    }

    fn tokens_fail_while_no_keys_were_ever_fetched_and_requests_without_pass(driver) {
        let backend = Backend::start("app");
        let dead = support::closed_port();
        let rules = format!("  - issuer: {ISSUER}\n    jwksUri: http://127.0.0.1:{dead}/keys\n    timeout: 1s\n");
        let (_gw, addr) = start(driver, &backend, &request_authentication("istio-system", &rules));
        let token = Key::ed("k").mint("EdDSA", &claims());
        let r = get(addr, "/x", &[("authorization", &bearer(&token))]);
        assert_refused(&r, 401, "Jwks remote fetch is failed", "/x", addr);
        assert_eq!(get(addr, "/x", &[]).status, 200);
        assert_eq!(backend.count(), 1);
    }

    fn inline_keys_custom_locations_and_a_forwarded_token(driver) {
        let ec = Key::ec("ec");
        let backend = Backend::start("app");
        let keys = jwks(&[&ec]).replace('\'', "''");
        let rules = format!(
            "  - issuer: {ISSUER}\n    jwks: '{keys}'\n    fromHeaders: [{{name: x-token, prefix: 'Token '}}]\n\
             \x20   fromCookies: [session]\n    forwardOriginalToken: true\n    outputClaimToHeaders: [{{header: x-sub, claim: sub}}]\n"
        );
        let policy = format!(
            "{}  selector:\n    matchLabels: {{istio: ingressgateway}}\n",
            request_authentication("default", &rules)
        );
        let (_gw, addr) = start(driver, &backend, &policy);
        let token = ec.mint("ES256", &claims());
        let value = format!("Token {token}");
        assert_eq!(get(addr, "/h", &[("x-token", &value)]).status, 200);
        let got = backend.last();
        assert_eq!((got.header("x-sub"), got.header("x-token")), (Some("alice"), Some(value.as_str())), "forwarded");
        // Without the prefix the header holds no token; the default locations are not looked at.
        assert_eq!(get(addr, "/h", &[("x-token", &token), ("authorization", "Bearer junk")]).status, 200);
        assert_eq!(backend.last().header("x-sub"), None);
        let cookie = format!("a=1; session={token}");
        assert_eq!(get(addr, "/c", &[("cookie", &cookie)]).status, 200);
        assert_eq!(backend.last().header("x-sub"), Some("alice"));
        let r = get(addr, "/c", &[("cookie", "session=a.b.c")]);
        assert_eq!(r.status, 401);
    }

    fn target_refs_attach_a_policy_to_the_gateway_api_gateway_this_one_is(driver) {
        let rsa = Key::rsa("rsa");
        let backend = Backend::start("app");
        let keys = jwks(&[&rsa]).replace('\'', "''");
        // In the gateway's namespace (`default`), as a targetRefs policy must be.
        let policy = request_authentication("default", &format!("  - issuer: {ISSUER}\n    jwks: '{keys}'\n")).replace(
            "spec:\n",
            "spec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]\n",
        );
        let forged = [("authorization", "Bearer not.a.token")];
        let named = |name: &str| {
            let label = format!("gateway.networking.k8s.io/gateway-name={name}");
            let args = ["--label", "istio=ingressgateway", "--label", &label];
            let (gw, addr) = start_with(driver, &backend, &policy, |g| args.iter().fold(g, |g, a| g.arg(a)));
            (get(addr, "/", &forged).status, gw)
        };
        let (status, gw) = named("edge");
        assert_eq!(status, 401, "the policy targets this gateway: {}", gw.logs());
        assert_eq!(named("other").0, 200, "another Gateway's policy does not apply here");
    }

    fn a_verified_token_is_what_authorization_policy_reads(driver) {
        let ec = Key::ec("ec");
        let backend = Backend::start("app");
        let keys = jwks(&[&ec]).replace('\'', "''");
        let rules = format!("  - issuer: {ISSUER}\n    jwks: '{keys}'\n");
        // Istio's "require a JWT" pattern: a verified principal with a claim, else 403.
        let policy = format!(
            "{}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {{name: require-jwt, namespace: istio-system}}\nspec:\n  rules:\n\
             \x20 - from:\n    - source:\n        requestPrincipals: [\"{ISSUER}/alice\"]\n\
             \x20   when:\n    - key: request.auth.claims[groups]\n      values: [admins]\n",
            request_authentication("istio-system", &rules)
        );
        let (_gw, addr) = start(driver, &backend, &policy);
        let alice = ec.mint("ES256", &claims());
        assert_eq!(get(addr, "/", &[("authorization", &bearer(&alice))]).status, 200);
        let r = get(addr, "/", &[]);
        assert_eq!((r.status, r.body_text().as_str()), (403, "RBAC: access denied"), "no token, no principal");
        let mut bob = claims();
        bob["sub"] = json!("bob");
        assert_eq!(get(addr, "/", &[("authorization", &bearer(&ec.mint("ES256", &bob)))]).status, 403);
        let mut guest = claims();
        guest["groups"] = json!(["guests"]);
        assert_eq!(get(addr, "/", &[("authorization", &bearer(&ec.mint("ES256", &guest)))]).status, 403);
        assert_eq!(backend.count(), 1);
    }
}
