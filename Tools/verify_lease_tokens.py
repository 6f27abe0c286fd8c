#!/usr/bin/env python3
"""Verifies lease tokens with an independent JOSE library (joserfc), as a client written in
another language would. Reads JSON from stdin:
  {"jwks": {...}, "issuer": "...", "now": <unix seconds>, "valid": ["tok", ...], "invalid": ["tok", ...]}
Every "valid" token must verify (signature, typ, iss, exp/nbf at "now"); every "invalid" one must not.
Prints one line per token and exits 1 on any disagreement."""
import json
import sys
import warnings

from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

warnings.simplefilter("ignore")  # joserfc warns that "EdDSA" is superseded by "Ed25519" (RFC 9864)

ALGORITHMS = ["EdDSA", "RS256", "PS256"]


def verify(token, keys, issuer, now):
    decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
    if decoded.header.get("typ") != "coditect-lease+jwt":
        raise ValueError("wrong typ")
    registry = JWTClaimsRegistry(now=now, leeway=60, iss={"essential": True, "value": issuer})
    registry.validate(decoded.claims)
    for claim in ("sub", "tid", "lic", "sid", "hwh", "iat", "nbf", "exp", "jti"):
        if claim not in decoded.claims:
            raise ValueError("missing claim " + claim)
    return decoded


def main():
    request = json.load(sys.stdin)
    keys = KeySet.import_key_set(request["jwks"])
    failures = 0
    for token in request.get("valid", []):
        try:
            decoded = verify(token, keys, request["issuer"], request["now"])
            print("ok   %s %s" % (decoded.header["alg"], decoded.claims["sid"]))
        except Exception as error:  # noqa: BLE001 - report every kind of rejection
            failures += 1
            print("FAIL valid token rejected: %s" % error)
    for token in request.get("invalid", []):
        try:
            verify(token, keys, request["issuer"], request["now"])
            failures += 1
            print("FAIL invalid token accepted")
        except Exception as error:  # noqa: BLE001
            print("ok   rejected (%s)" % type(error).__name__)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
