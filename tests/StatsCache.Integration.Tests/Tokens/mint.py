"""Mints tokens with libraries this project did not write: djangorestframework-simplejwt (the platform's
own issuer, configured as a Django deployment would configure it) and PyJWT; turns PEM public keys into
JWKs with PyJWT. Reads one JSON request on stdin, writes one JSON answer on stdout:

  {"simple_jwt": {"settings": {SIMPLE_JWT settings, plus "SECRET_KEY"},
                  "tokens": [{"type": "access" | "refresh", "claims": {...}}]},
   "pyjwt": [{"alg": "HS256" | "RS256" | "ES256" | "none", "secret": "..." | "key_path": "private.pem",
              "headers": {...}, "claims": {...}}],
   "jwks": [{"key_path": "public.pem", "kid": "k1", "alg": "RS256"}]}
  -> {"simple_jwt": ["..."], "pyjwt": ["..."], "jwks": {"keys": [...]}}

Claims given as {"$now": seconds} become the current Unix time plus seconds.
"""
import json
import sys
import time


def resolve(claims):
    return {k: (int(time.time()) + v["$now"] if isinstance(v, dict) and "$now" in v else v) for k, v in claims.items()}


def simple_jwt(request):
    import django
    from django.conf import settings

    options = dict(request["settings"])
    settings.configure(
        SECRET_KEY=options.pop("SECRET_KEY"),
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework_simplejwt"],
        SIMPLE_JWT=options,
    )
    django.setup()
    from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

    minted = []
    for spec in request["tokens"]:
        token = AccessToken() if spec["type"] == "access" else RefreshToken()
        for name, value in resolve(spec.get("claims", {})).items():
            token[name] = value
        minted.append(str(token))
    return minted


def read(path):
    with open(path, "rb") as f:
        return f.read()


def pyjwt(specs):
    import jwt

    minted = []
    for spec in specs:
        key = spec.get("secret") if "secret" in spec else (read(spec["key_path"]) if "key_path" in spec else None)
        minted.append(jwt.encode(resolve(spec["claims"]), key, algorithm=spec["alg"], headers=spec.get("headers")))
    return minted


def jwks(specs):
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    keys = []
    for spec in specs:
        public = load_pem_public_key(read(spec["key_path"]))
        jwk = json.loads((ECAlgorithm if isinstance(public, ec.EllipticCurvePublicKey) else RSAAlgorithm).to_jwk(public))
        jwk.update({"kid": spec["kid"], "use": "sig", "alg": spec["alg"]})
        keys.append(jwk)
    return {"keys": keys}


request = json.load(sys.stdin)
answer = {}
if "simple_jwt" in request:
    answer["simple_jwt"] = simple_jwt(request["simple_jwt"])
if "pyjwt" in request:
    answer["pyjwt"] = pyjwt(request["pyjwt"])
if "jwks" in request:
    answer["jwks"] = jwks(request["jwks"])
json.dump(answer, sys.stdout)
