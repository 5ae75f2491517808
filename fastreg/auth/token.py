"""Verifying bearer tokens: JWS compact serialization, Docker token claims.

`TokenVerifier.verify` checks everything that does not depend on the clock (form, algorithm,
key, signature, `iss`, `aud`, the `access` claim) and `Claims.check_time` the rest, so the
upload grace period can accept a token that is right in every way but expired. Algorithms are
the asymmetric ones only: `none` and HS* are refused whatever the configuration says (an HMAC
"signed" with a public key is a forgery anyone can make).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import Algorithm, get_default_algorithms

from fastreg.auth.access import MAX_TOKEN, Grants, MalformedAccess
from fastreg.auth.keys import (
    PublicKey,
    TrustStore,
    UntrustedKey,
    b64url_decode,
    key_from_jwk,
    spki_der,
)

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
              "ES256", "ES384", "ES512", "EdDSA")
LEEWAY = 60.0
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


class InvalidToken(Exception):
    """Malformed, badly signed, or not meant for this registry. The message names no secret."""


class ExpiredToken(InvalidToken):
    pass


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    expires: float
    not_before: float
    grants: Grants

    def check_time(self, now: float, leeway: float = LEEWAY) -> None:
        if now > self.expires + leeway:
            raise ExpiredToken("token expired")
        if now < self.not_before - leeway:
            raise InvalidToken("token not valid yet")


def check_algorithms(names: Iterable[str]) -> tuple[str, ...]:
    """The configured `signingalgorithms`, refusing symmetric and unknown ones (ValueError)."""
    chosen = tuple(dict.fromkeys(names))
    for name in chosen:
        if name not in ASYMMETRIC:
            raise ValueError(
                f"signing algorithm {name!r} is not accepted (allowed: {', '.join(ASYMMETRIC)})"
            )
    return chosen or ASYMMETRIC


class TokenVerifier:
    def __init__(
        self,
        trust: TrustStore,
        issuer: str,
        service: str,
        algorithms: Iterable[str] = ASYMMETRIC,
        leeway: float = LEEWAY,
    ) -> None:
        self.trust = trust
        self.issuer = issuer
        self.service = service
        self.leeway = leeway
        defaults = get_default_algorithms()
        self._algorithms: dict[str, Algorithm] = {
            name: defaults[name] for name in check_algorithms(algorithms)
        }

    def verify(self, token: str) -> Claims:
        """Claims of a well-formed, correctly signed token for us; the clock is not consulted."""
        if len(token) > MAX_TOKEN:
            raise InvalidToken("token too large")
        parts = token.split(".")
        if len(parts) != 3 or not all(parts):
            raise InvalidToken("not a compact JWS")
        try:
            header = orjson.loads(b64url_decode(parts[0]))
            payload = b64url_decode(parts[1])
            signature = b64url_decode(parts[2])
        except (ValueError, orjson.JSONDecodeError):
            raise InvalidToken("undecodable token") from None
        if not isinstance(header, dict):
            raise InvalidToken("header is not an object")
        if "crit" in header:
            raise InvalidToken("critical header parameters are not supported")
        name = header.get("alg")
        algorithm = self._algorithms.get(name) if isinstance(name, str) else None
        if name is None or algorithm is None:
            raise InvalidToken("signing algorithm not accepted")
        key = self._signing_key(header)
        _check_key_fits(str(name), key)
        signed = f"{parts[0]}.{parts[1]}".encode("ascii")
        if not algorithm.verify(signed, key, signature):
            raise InvalidToken("bad signature")
        return self._claims(payload)

    def _signing_key(self, header: dict[str, Any]) -> PublicKey:
        now = datetime.datetime.now(datetime.UTC)
        try:
            if "x5c" in header:
                return self.trust.verify_chain(header["x5c"], now)
            if "jwk" in header:
                key = key_from_jwk(header["jwk"])
                chain = header["jwk"].get("x5c")
                if chain is not None:
                    if spki_der(self.trust.verify_chain(chain, now)) != spki_der(key):
                        raise UntrustedKey("jwk is not the key of its certificate")
                    return key
                if spki_der(key) not in self.trust.trusted:
                    raise UntrustedKey("jwk is not a trusted key")
                return key
            kid = header.get("kid")
            if isinstance(kid, str) and kid in self.trust.keys_by_id:
                return self.trust.keys_by_id[kid]
        except UntrustedKey as exc:
            raise InvalidToken(str(exc)) from None
        raise InvalidToken("token signed by an unknown key")

    def _claims(self, payload: bytes) -> Claims:
        try:
            claims = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise InvalidToken("claims are not JSON") from None
        if not isinstance(claims, dict):
            raise InvalidToken("claims are not an object")
        if claims.get("iss") != self.issuer:
            raise InvalidToken("untrusted issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.service not in audiences:
            raise InvalidToken("token meant for another audience")
        expires, not_before = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(expires, (int, float)) or not _is_number(expires):
            raise InvalidToken("exp missing or malformed")
        if not isinstance(not_before, (int, float)) or not _is_number(not_before):
            raise InvalidToken("nbf malformed")
        subject = claims.get("sub", "")
        try:
            grants = Grants.from_claim(claims.get("access"))
        except MalformedAccess as exc:
            raise InvalidToken(str(exc)) from None
        return Claims(subject if isinstance(subject, str) else "", float(expires),
                      float(not_before), grants)

    def verify_now(self, token: str) -> Claims:
        claims = self.verify(token)
        claims.check_time(time.time(), self.leeway)
        return claims


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_key_fits(algorithm: str, key: PublicKey) -> None:
    """The key's type must be the algorithm's: no RSA key for ES256, no P-384 key for ES256."""
    if algorithm[:2] in ("RS", "PS"):
        ok = isinstance(key, rsa.RSAPublicKey)
    elif algorithm in _EC_CURVES:
        ok = isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _EC_CURVES[algorithm]
    else:
        ok = isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey))
    if not ok:
        raise InvalidToken("key does not fit the signing algorithm")
