"""Test keys, certificates and tokens, built with cryptography and pyjwt the way issuers do.

`gitlab_token` is shaped like GitLab's `/jwt/auth` answer (RS256, `kid` = libtrust fingerprint,
`aud` a string, `access[].meta`); `distribution3_token` like what Distribution 3 expects from a
JWKS issuer (`kid` = RFC 7638 thumbprint, `aud` a list).
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from cryptography.x509.oid import NameOID

from fastreg.auth.keys import jwk_thumbprint, libtrust_key_id, public_jwk

ISSUER = "test-issuer"
SERVICE = "test-registry"
REALM = "http://127.0.0.1/token"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class KeyPair:
    private: PrivateKey
    cert: x509.Certificate
    alg: str

    @property
    def public(self) -> Any:
        return self.private.public_key()

    @property
    def libtrust(self) -> str:
        return libtrust_key_id(self.public)

    @property
    def thumbprint(self) -> str:
        return jwk_thumbprint(self.public)

    def pem(self) -> bytes:
        return self.private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(Encoding.PEM)

    def x5c(self) -> str:
        return base64.b64encode(self.cert.public_bytes(Encoding.DER)).decode()


@functools.cache
def shared_key(kind: str) -> KeyPair:
    """One key per kind for the whole session ("stranger": an RSA key nobody trusts)."""
    return make_key("rsa" if kind == "stranger" else kind, cn=f"shared-{kind}")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_key(kind: str = "rsa", cn: str = "token-signer", issuer: KeyPair | None = None,
             ca: bool = False, days: int = 30) -> KeyPair:
    """A key and its certificate: self-signed, or signed by ``issuer``."""
    private: PrivateKey
    if kind == "rsa":
        private, alg = rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"
    elif kind == "ec":
        private, alg = ec.generate_private_key(ec.SECP256R1()), "ES256"
    elif kind == "ec384":
        private, alg = ec.generate_private_key(ec.SECP384R1()), "ES384"
    else:
        private, alg = ed25519.Ed25519PrivateKey.generate(), "EdDSA"
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    signer = issuer.private if issuer else private
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return KeyPair(private, builder.sign(signer, algorithm), alg)


def write_bundle(path: Path, *keys: KeyPair) -> str:
    path.write_bytes(b"".join(k.cert_pem() for k in keys))
    return str(path)


def write_jwks(path: Path, *keys: KeyPair) -> str:
    entries = [{**public_jwk(k.public), "kid": k.thumbprint, "use": "sig"} for k in keys]
    path.write_text(json.dumps({"keys": entries}))
    return str(path)


def write_htpasswd(path: Path, users: dict[str, str], cost: int = 4) -> str:
    lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(cost)).decode()}"
             for u, p in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def access(name: str, *actions: str, rtype: str = "repository") -> dict[str, Any]:
    return {"type": rtype, "name": name, "actions": list(actions)}


def make_token(
    key: KeyPair,
    entries: list[dict[str, Any]],
    *,
    iss: str = ISSUER,
    aud: Any = SERVICE,
    sub: str = "alice",
    lifetime: float = 300,
    exp: float | None = None,
    nbf: float | None = None,
    kid: str | None = "libtrust",
    alg: str | None = None,
    headers: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    now = time.time()
    claims: dict[str, Any] = {
        "iss": iss, "sub": sub, "aud": aud, "iat": int(now),
        "nbf": int(now - 5) if nbf is None else nbf,
        "exp": int(now + lifetime) if exp is None else exp,
        "jti": uuid.uuid4().hex, "access": entries, **(extra or {}),
    }
    header: dict[str, Any] = {"typ": "JWT"}
    if kid == "libtrust":
        header["kid"] = key.libtrust
    elif kid == "thumbprint":
        header["kid"] = key.thumbprint
    elif kid is not None:
        header["kid"] = kid
    header.update(headers or {})
    return jwt.encode(claims, key.private, algorithm=alg or key.alg, headers=header)


def gitlab_token(key: KeyPair, name: str, *actions: str, **kw: Any) -> str:
    """As GitLab 16/17 sends: RS256, libtrust kid, string aud, access[].meta, user info."""
    entry = {**access(name, *actions),
             "meta": {"project_path": name, "project_id": 42, "root_namespace_id": 7}}
    extra = {"auth_type": "gitlab_or_ldap", "user": {"username": "alice", "user_id": 3}}
    return make_token(key, [entry], kid="libtrust", extra=extra, **kw)


def distribution3_token(key: KeyPair, name: str, *actions: str, **kw: Any) -> str:
    """As a JWKS issuer for Distribution 3 sends: thumbprint kid, list aud."""
    return make_token(key, [access(name, *actions)], kid="thumbprint",
                      aud=[SERVICE, "other"], **kw)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(key: KeyPair, entries: list[dict[str, Any]]) -> str:
    """The classic confusion attack: HMAC keyed with the public key PEM (pyjwt refuses it)."""
    import hashlib
    import hmac

    header = b64url(json.dumps({"typ": "JWT", "alg": "HS256", "kid": key.libtrust}).encode())
    now = int(time.time())
    payload = b64url(json.dumps({"iss": ISSUER, "aud": SERVICE, "sub": "mallory",
                                 "exp": now + 300, "access": entries}).encode())
    secret = key.public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    sig = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(sig)}"


def unsigned(entries: list[dict[str, Any]], alg: str = "none") -> str:
    header = b64url(json.dumps({"typ": "JWT", "alg": alg}).encode())
    payload = b64url(json.dumps({"iss": ISSUER, "aud": SERVICE, "sub": "mallory",
                                 "exp": int(time.time()) + 300, "access": entries}).encode())
    return f"{header}.{payload}."


def tamper_payload(token: str, entries: list[dict[str, Any]]) -> str:
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["access"] = entries
    return f"{header}.{b64url(json.dumps(claims).encode())}.{sig}"


def tamper_signature(token: str) -> str:
    header, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{header}.{payload}.{b64url(bytes(raw))}"
