"""Token signing keys: key ids, the trusted set (`rootcertbundle`, `jwks`), x5c chains.

A token names its key in one of three ways (tried in this order, as Distribution does): an `x5c`
certificate chain that must lead to a certificate of the bundle; a `jwk` that must be a trusted
key itself (or carry an `x5c` chain whose leaf is that key); or a `kid` that is the libtrust
fingerprint of a trusted key (what GitLab and Distribution 2.x send), its RFC 7638 thumbprint
(what Distribution 3 expects), or the `kid` of a JWKS entry.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
MAX_CHAIN = 8


class UntrustedKey(Exception):
    """The token's key cannot be found or does not lead to the trusted set."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding: anything outside the alphabet is an error."""
    if len(text) % 4 == 1:
        raise ValueError("bad base64url length")
    data = text.translate(_URL_TO_STD) + "=" * (-len(text) % 4)
    try:
        return binascii.a2b_base64(data.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"bad base64url: {exc}") from None


_URL_TO_STD = str.maketrans("-_", "+/")


def spki_der(key: PublicKey) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def libtrust_key_id(key: PublicKey) -> str:
    """base32 of the first 240 bits of sha256(DER public key), 12 groups of 4 joined by ':'."""
    text = base64.b32encode(hashlib.sha256(spki_der(key)).digest()[:30]).decode("ascii")
    return ":".join(text[i : i + 4] for i in range(0, 48, 4))


def _int_b64(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(size, "big"))


_CURVES: Mapping[str, tuple[str, int]] = {
    "secp256r1": ("P-256", 32),
    "secp384r1": ("P-384", 48),
    "secp521r1": ("P-521", 66),
}


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The required members of the key's JWK (RFC 7638 section 3.2), nothing else."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"e": _int_b64(numbers.e), "kty": "RSA", "n": _int_b64(numbers.n)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv, size = _CURVES[key.curve.name]
        point = key.public_numbers()
        return {"crv": crv, "kty": "EC", "x": _int_b64(point.x, size), "y": _int_b64(point.y, size)}
    crv = "Ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "Ed448"
    return {"crv": crv, "kty": "OKP", "x": b64url(key.public_bytes(Encoding.Raw, PublicFormat.Raw))}


def jwk_thumbprint(key: PublicKey) -> str:
    """RFC 7638: sha256 of the required members, sorted, no whitespace; base64url."""
    canonical = orjson.dumps(public_jwk(key), option=orjson.OPT_SORT_KEYS)
    return b64url(hashlib.sha256(canonical).digest())


def as_public_key(key: Any) -> PublicKey:
    """The public half of a cryptography key; TypeError for symmetric or unknown keys."""
    if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
                        ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        key = key.public_key()
    if isinstance(key, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        return key
    raise TypeError(f"unsupported token key type {type(key).__name__}")


def key_from_jwk(data: Any) -> PublicKey:
    if not isinstance(data, dict):
        raise UntrustedKey("jwk is not an object")
    try:
        return as_public_key(jwt.PyJWK(data).key)
    except (jwt.PyJWTError, TypeError, ValueError, KeyError) as exc:
        raise UntrustedKey(f"unusable jwk: {exc}") from None


@dataclass(frozen=True, slots=True)
class TrustStore:
    """The keys and roots tokens may be signed with."""

    roots: tuple[x509.Certificate, ...] = ()
    keys_by_id: Mapping[str, PublicKey] = field(default_factory=dict)
    trusted: frozenset[bytes] = frozenset()  # DER SubjectPublicKeyInfo of every trusted key

    @classmethod
    def build(
        cls,
        roots: Iterable[x509.Certificate] = (),
        jwks: Iterable[tuple[str | None, PublicKey]] = (),
        keys: Iterable[PublicKey] = (),
    ) -> TrustStore:
        roots = tuple(roots)
        by_id: dict[str, PublicKey] = {}
        plain = [as_public_key(c.public_key()) for c in roots] + list(keys)
        for kid, key in jwks:
            plain.append(key)
            if kid:
                by_id[kid] = key
        for key in plain:
            by_id.setdefault(libtrust_key_id(key), key)
            by_id.setdefault(jwk_thumbprint(key), key)
        return cls(roots, by_id, frozenset(spki_der(k) for k in plain))

    def is_empty(self) -> bool:
        return not self.trusted

    def verify_chain(self, x5c: Any, now: datetime.datetime) -> PublicKey:
        """The leaf key of an ``x5c`` chain that leads to a root of the bundle."""
        if not isinstance(x5c, list) or not x5c or len(x5c) > MAX_CHAIN:
            raise UntrustedKey("x5c is not a short non-empty list")
        try:
            certs = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True))
                     for c in x5c]
        except (ValueError, TypeError, binascii.Error) as exc:
            raise UntrustedKey(f"x5c: unreadable certificate: {exc}") from None
        leaf, pool = certs[0], certs[1:]
        current = leaf
        for _ in range(MAX_CHAIN + 1):
            _check_validity(current, now)
            if any(current == root for root in self.roots):
                return _leaf_key(leaf)
            issuer = _issuer_of(current, self.roots)
            if issuer is not None:
                _check_validity(issuer, now)
                return _leaf_key(leaf)
            issuer = _issuer_of(current, pool)
            if issuer is None:
                break
            current = issuer
        raise UntrustedKey("x5c chain does not lead to a trusted root")


def _leaf_key(cert: x509.Certificate) -> PublicKey:
    try:
        return as_public_key(cert.public_key())
    except TypeError as exc:
        raise UntrustedKey(str(exc)) from None


def _check_validity(cert: x509.Certificate, now: datetime.datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise UntrustedKey("certificate outside its validity period")


def _issuer_of(cert: x509.Certificate, candidates: Iterable[x509.Certificate]) -> (
    x509.Certificate | None
):
    """A candidate that signed ``cert`` and may sign (no CA=false basic constraint, as in Go)."""
    for candidate in candidates:
        if candidate.subject != cert.issuer or candidate == cert:
            continue
        try:
            constraints = candidate.extensions.get_extension_for_class(x509.BasicConstraints)
            if not constraints.value.ca:
                continue
        except x509.ExtensionNotFound:
            pass
        try:
            cert.verify_directly_issued_by(candidate)
        except (InvalidSignature, ValueError, TypeError):
            continue
        return candidate
    return None


def load_bundle(path: str) -> list[x509.Certificate]:
    with open(path, "rb") as f:
        data = f.read()
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ValueError(f"{path}: no readable PEM certificate ({exc})") from None
    return certs


def load_jwks(path: str) -> list[tuple[str | None, PublicKey]]:
    """Asymmetric keys of a JWKS file; symmetric (`oct`) keys are refused, not skipped."""
    with open(path, "rb") as f:
        doc = orjson.loads(f.read())
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a JWKS document with a non-empty 'keys' list")
    keys: list[tuple[str | None, PublicKey]] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("kty") == "oct":
            raise ValueError(f"{path}: keys[{i}] is not an asymmetric JWK")
        try:
            key = key_from_jwk(entry)
        except UntrustedKey as exc:
            raise ValueError(f"{path}: keys[{i}]: {exc}") from None
        kid = entry.get("kid")
        keys.append((kid if isinstance(kid, str) else None, key))
    return keys
