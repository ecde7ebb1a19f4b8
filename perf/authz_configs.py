#!/usr/bin/env python3
"""Configs and a token for issue 23's bar: a route with 20 AuthorizationPolicies and a JWT
requirement against the plain route, and policies that do not apply to this gateway.

    python3 perf/authz_configs.py DIR      # writes DIR/{jwt20,jwt20-other200,plain-other200}.yaml, DIR/token

Each YAML file goes beside perf/configs/instructions (`perf/instructions.sh NAME BIN --config
DIR/x.yaml`), with the token sent as `HEADER="authorization: Bearer $(cat DIR/token)"`.
- jwt20: a RequestAuthentication (inline RS256 key set, the issuer and audience checked) and 20
  policies in the root namespace: 10 DENY on paths no request takes, then 10 ALLOW of which
  only the last (a `requestPrincipals` from the token's issuer) matches, so every request
  walks all 20, as Envoy's RBAC would with these rules.
- jwt20-other200: jwt20 plus 200 policies that never apply here (100 in another namespace,
  100 in the root namespace selecting other workloads): the cost must not grow.
- plain-other200: the plain route plus those 200: against the plain route, the same.
"""
import base64, json, os, sys, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ISSUER = "https://issuer.strait.test"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def policy(name, ns, spec):
    return f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}"


def main(out):
    os.makedirs(out, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key().public_numbers()
    n = pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")
    jwks = json.dumps({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "n": b64(n), "e": b64(pub.e.to_bytes(3, "big"))}]})
    header = b64(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"iss": ISSUER, "sub": "bench-user", "aud": "api.strait.test",
                             "iat": int(time.time()), "exp": int(time.time()) + 30 * 86400}).encode())
    signature = key.sign(f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    open(f"{out}/token", "w").write(f"{header}.{claims}.{b64(signature)}")

    authn = ("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: jwt\n"
             f"  namespace: istio-system\nspec:\n  jwtRules:\n  - issuer: {ISSUER}\n    audiences: [api.strait.test]\n"
             f"    jwks: '{jwks}'\n")
    twenty = [authn]
    for i in range(10):
        twenty.append(policy(f"deny-{i}", "istio-system",
                             f"  action: DENY\n  rules:\n  - to:\n    - operation:\n        paths: [/internal-{i}/*]\n"
                             f"        methods: [POST, PUT, DELETE]\n"))
    for i in range(9):
        twenty.append(policy(f"allow-{i}", "istio-system",
                             f"  rules:\n  - to:\n    - operation:\n        paths: [/svc-{i}/*]\n        hosts: [svc-{i}.test]\n"))
    twenty.append(policy("allow-jwt", "istio-system",
                         f"  rules:\n  - from:\n    - source:\n        requestPrincipals: [\"{ISSUER}/*\"]\n"
                         f"    to:\n    - operation:\n        methods: [GET]\n"))
    other = []
    for i in range(100):
        other.append(policy(f"elsewhere-{i}", "shop", "  action: DENY\n  rules: [{}]\n"))
        other.append(policy(f"other-workload-{i}", "istio-system",
                            f"  selector:\n    matchLabels:\n      app: other-{i}\n  action: DENY\n  rules: [{{}}]\n"))
    for name, docs in [("jwt20", twenty), ("jwt20-other200", twenty + other), ("plain-other200", other)]:
        open(f"{out}/{name}.yaml", "w").write("---\n".join(docs))


if __name__ == "__main__":
    main(sys.argv[1])
