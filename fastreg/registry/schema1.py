"""Docker image manifest v2, schema 1: the libtrust "prettyjws" envelope and the payload rules.

This module owns what is particular to schema1: splitting a signed manifest into its canonical
payload and its ``signatures`` block (libtrust ``ParsePrettySignature``), verifying each JWS
signature (ES256/ES384/ES512 with EC keys, RS256/RS384/RS512 with RSA keys, key taken from the
``x5c`` chain's first certificate or else the ``jwk``), checking the payload the way
Distribution's signed-manifest handler does, and producing signed manifests (:func:`sign_schema1`,
used by tests). It does no I/O.

Errors: structural problems (bad JSON, missing ``signatures``, malformed protected header or JWK,
mismatched history/fsLayers) are MANIFEST_INVALID; a signature that does not verify is
MANIFEST_UNVERIFIED; a malformed ``name`` is NAME_INVALID; a malformed ``blobSum`` is DIGEST_INVALID.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.mediatypes import SCHEMA1_LAYER as LAYER_MEDIA_TYPE
from fastreg.registry.mediatypes import SCHEMA1_SIGNATURES as SIGNATURE_KEY

__all__ = [
    "LAYER_MEDIA_TYPE",
    "PublicKey",
    "Schema1Manifest",
    "key_id",
    "parse_schema1",
    "sign_schema1",
]

NAME_TOTAL_LENGTH_MAX = 255

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# curve name (JWK "crv") -> (cryptography curve, JWS alg, hash)
_CURVES: Mapping[str, tuple[ec.EllipticCurve, str, hashes.HashAlgorithm]] = MappingProxyType(
    {
        "P-256": (ec.SECP256R1(), "ES256", hashes.SHA256()),
        "P-384": (ec.SECP384R1(), "ES384", hashes.SHA384()),
        "P-521": (ec.SECP521R1(), "ES512", hashes.SHA512()),
    }
)
_RSA_ALGS: Mapping[str, hashes.HashAlgorithm] = MappingProxyType(
    {"RS256": hashes.SHA256(), "RS384": hashes.SHA384(), "RS512": hashes.SHA512()}
)
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# Distribution uses reference.NameRegexp unanchored: any lowercase alphanumeric matches.
_NAME_SEARCH = re.compile(r"[a-z0-9]")


@dataclass(frozen=True, slots=True)
class Schema1Manifest:
    """A checked schema1 manifest. ``canonical`` is the payload without signatures."""

    canonical: bytes
    name: str
    tag: str
    architecture: str
    blob_sums: tuple[Digest, ...]  # fsLayers order, duplicates removed
    signed: bool
    key_ids: tuple[str, ...]  # libtrust key IDs of the verified signers


@dataclass(frozen=True, slots=True)
class _Signature:
    protected: str
    signature: str
    alg: str
    jwk: PublicKey | None
    x5c: tuple[str, ...]


def _invalid(detail: str) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_INVALID, detail=detail)


def _unverified(detail: str) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_UNVERIFIED, detail=detail)


def b64url_encode(data: bytes) -> str:
    """JOSE base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """JOSE base64url (padding optional, newlines and spaces ignored); ValueError if malformed."""
    text = text.replace("\n", "").replace(" ", "")
    if _B64URL.fullmatch(text) is None or len(text) % 4 == 1:
        raise ValueError("illegal base64url string")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(value: int) -> bytes:
    """Minimal big-endian bytes, like Go's big.Int.Bytes()."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _go_json(obj: Any, indent: str | None = None, prefix: str = "") -> bytes:
    """Encode like Go's json.Marshal / json.MarshalIndent(obj, prefix, indent)."""
    if indent is None:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(obj, ensure_ascii=False, indent=indent, separators=(",", ": "))
        text = text.replace("\n", "\n" + prefix)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")


def _load_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"{what}: invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _invalid(f"{what}: expected a JSON object")
    return obj


def key_id(key: PublicKey) -> str:
    """libtrust key ID: sha256 of the DER SubjectPublicKeyInfo, 240 bits, base32 in 12 groups."""
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _curve_name(curve: ec.EllipticCurve) -> str:
    for name, (known, _alg, _hash) in _CURVES.items():
        if known.name == curve.name:
            return name
    raise _unverified(f"unsupported elliptic curve {curve.name}")


def _jwk_string(jwk: Mapping[str, Any], key: str) -> str:
    value = jwk.get(key)
    if not isinstance(value, str):
        raise _invalid(f"JWK {key!r} must be a string")
    return value


def _jwk_uint(jwk: Mapping[str, Any], key: str, length: int | None = None) -> int:
    try:
        data = b64url_decode(_jwk_string(jwk, key))
    except ValueError:
        raise _invalid(f"JWK {key!r}: invalid base64url") from None
    if length is not None and len(data) != length:
        raise _invalid(f"JWK {key!r}: expected {length} octets, got {len(data)}")
    return int.from_bytes(data, "big")


def _jwk_public_key(jwk: Any) -> PublicKey:
    """libtrust UnmarshalPublicKeyJWK: EC (P-256/384/521) or RSA, ``kid`` must match if set."""
    if not isinstance(jwk, dict):
        raise _invalid("JWK must be a JSON object")
    kty = _jwk_string(jwk, "kty")
    try:
        if kty == "EC":
            crv = _jwk_string(jwk, "crv")
            if crv not in _CURVES:
                raise _invalid(f"JWK curve not supported: {crv!r}")
            curve = _CURVES[crv][0]
            size = (curve.key_size + 7) // 8
            x, y = _jwk_uint(jwk, "x", size), _jwk_uint(jwk, "y", size)
            key: PublicKey = ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
        elif kty == "RSA":
            n, e = _jwk_uint(jwk, "n"), _jwk_uint(jwk, "e")
            if e.bit_length() > 32:
                raise _invalid("JWK RSA exponent too large")
            key = rsa.RSAPublicNumbers(e, n).public_key()
        else:
            raise _invalid(f"JWK key type not supported: {kty!r}")
    except ValueError as exc:
        raise _invalid(f"JWK: {exc}") from None
    if "kid" in jwk and _jwk_string(jwk, "kid") != key_id(key):
        raise _invalid("JWK key ID does not match the key")
    return key


def _public_jwk(key: PublicKey) -> dict[str, str]:
    """The JWK libtrust writes for a public key (keys in Go's sorted map order)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        numbers = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        return {
            "crv": _curve_name(key.curve),
            "kid": key_id(key),
            "kty": "EC",
            "x": b64url_encode(numbers.x.to_bytes(size, "big")),
            "y": b64url_encode(numbers.y.to_bytes(size, "big")),
        }
    rsa_numbers = key.public_numbers()
    return {
        "e": b64url_encode(_int_bytes(rsa_numbers.e)),
        "kid": key_id(key),
        "kty": "RSA",
        "n": b64url_encode(_int_bytes(rsa_numbers.n)),
    }


def _format_of(protected: str) -> tuple[int, bytes]:
    try:
        header = _load_object(b64url_decode(protected), "protected header")
        encoded_tail = header.get("formatTail")
        tail = b64url_decode(encoded_tail) if isinstance(encoded_tail, str) else None
    except ValueError:
        raise _invalid("protected header: invalid base64url") from None
    length = header.get("formatLength")
    if isinstance(length, bool) or not isinstance(length, int | float):
        raise _invalid("protected header: missing formatted length")
    if tail is None:
        raise _invalid("protected header: missing formatted tail")
    return int(length), tail


def _parse_signature(block: Any) -> _Signature:
    if not isinstance(block, dict):
        raise _invalid("signature block must be a JSON object")
    header = block.get("header")
    if not isinstance(header, dict):
        raise _invalid("signature block: missing header")
    protected, signature = block.get("protected", ""), block.get("signature", "")
    alg, chain = header.get("alg", ""), header.get("x5c") or []
    if not all(isinstance(v, str) for v in (protected, signature, alg)):
        raise _invalid("signature block: protected, signature and alg must be strings")
    if not isinstance(chain, list) or not all(isinstance(c, str) for c in chain):
        raise _invalid("signature block: x5c must be a list of strings")
    jwk = _jwk_public_key(header["jwk"]) if header.get("jwk") is not None else None
    return _Signature(protected, signature, alg, jwk, tuple(chain))


def _split_pretty(raw: bytes) -> tuple[bytes, tuple[_Signature, ...]]:
    """libtrust ParsePrettySignature: the canonical payload and the signature blocks."""
    content = _load_object(raw, "signed manifest")
    blocks = content.get(SIGNATURE_KEY)
    if SIGNATURE_KEY not in content:
        raise _invalid("missing signature key")
    if not isinstance(blocks, list) or not blocks:
        raise _invalid("signatures must be a non-empty list")
    signatures = tuple(_parse_signature(block) for block in blocks)
    formats = {_format_of(sig.protected) for sig in signatures}
    if len(formats) != 1:
        raise _invalid("conflicting format length or tail")
    ((length, tail),) = formats
    if not 0 <= length <= len(raw):
        raise _invalid("invalid format length")
    return raw[:length] + tail, signatures


def _signer_key(sig: _Signature) -> PublicKey:
    if sig.x5c:
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(sig.x5c[0], validate=True))
            key = cert.public_key()
        except ValueError:
            raise _unverified("invalid x5c certificate") from None
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise _unverified("unsupported x5c public key type")
        return key
    if sig.jwk is None:
        raise _unverified("missing public key")
    return sig.jwk


def _verify_signature(sig: _Signature, payload_b64: str) -> str:
    key = _signer_key(sig)
    data = f"{sig.protected}.{payload_b64}".encode("ascii")
    try:
        signature = b64url_decode(sig.signature)
        if isinstance(key, ec.EllipticCurvePublicKey):
            _curve, alg, hash_alg = _CURVES[_curve_name(key.curve)]
            size = (key.curve.key_size + 7) // 8
            if sig.alg != alg or len(signature) != 2 * size:
                raise _unverified(f"EC key cannot verify a {sig.alg!r} signature of this size")
            r, s = signature[:size], signature[size:]
            der = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
            key.verify(der, data, ec.ECDSA(hash_alg))
        else:
            if sig.alg not in _RSA_ALGS:
                raise _unverified(f"RSA key cannot verify a {sig.alg!r} signature")
            key.verify(signature, data, padding.PKCS1v15(), _RSA_ALGS[sig.alg])
    except (InvalidSignature, ValueError):
        raise _unverified("invalid signature") from None
    return key_id(key)


def _string_field(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _invalid(f"{key} must be a string")
    return value


def _object_list(body: Mapping[str, Any], key: str, member: str) -> list[str]:
    items = body.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise _invalid(f"{key} must be a list")
    values: list[str] = []
    for index, item in enumerate(items):
        value = item.get(member, "") if isinstance(item, dict) else None
        if not isinstance(value, str):
            raise _invalid(f"{key}[{index}].{member} must be a string")
        values.append(value)
    return values


def _blob_sums(sums: list[str]) -> tuple[Digest, ...]:
    seen: dict[Digest, None] = {}
    for index, text in enumerate(sums):
        try:
            seen.setdefault(Digest.parse(text), None)
        except RegistryError as exc:
            raise RegistryError(
                exc.code, detail=f"fsLayers[{index}].blobSum: {exc.detail}"
            ) from None
    return tuple(seen)


def parse_schema1(raw: bytes, *, signed: bool) -> Schema1Manifest:
    """Check a schema1 manifest; for ``signed`` ones split off and verify the signatures."""
    canonical, signatures = _split_pretty(raw) if signed else (raw, ())
    body = _load_object(canonical, "schema1 manifest")
    version = body.get("schemaVersion")
    if isinstance(version, bool) or version != 1 or not isinstance(version, int):
        raise _invalid(f"unrecognized manifest schema version {version!r}")
    name, tag = _string_field(body, "name"), _string_field(body, "tag")
    architecture = _string_field(body, "architecture")
    sums = _object_list(body, "fsLayers", "blobSum")
    history = _object_list(body, "history", "v1Compatibility")
    if len(name) > NAME_TOTAL_LENGTH_MAX or _NAME_SEARCH.search(name) is None:
        raise RegistryError(ErrorCode.NAME_INVALID, detail=f"invalid manifest name {name!r}")
    if len(history) != len(sums):
        raise _invalid(f"mismatched history and fslayer cardinality {len(history)} != {len(sums)}")
    payload_b64 = b64url_encode(canonical)
    key_ids = tuple(_verify_signature(sig, payload_b64) for sig in signatures)
    return Schema1Manifest(canonical, name, tag, architecture, _blob_sums(sums), signed, key_ids)


def _detect_indent(content: bytes) -> str:
    """libtrust detectJSONIndent: the whitespace between ``{\\n`` and the first quote."""
    if len(content) > 2 and content[:2] == b"{\n":
        quote = content.find(b'"', 1)
        if quote > 1:
            return content[2:quote].decode("utf-8")
    return ""


def _format_split(content: bytes) -> int:
    """libtrust NewJSONSignature: length of the content before the closing brace's whitespace."""
    stripped = content.rstrip()
    if not stripped.endswith(b"}"):
        raise ValueError("payload must be a JSON object")
    before = stripped[:-1].rstrip()
    if not before or before.endswith(b","):
        raise ValueError("invalid JSON content")
    return len(before)


def _sign_bytes(key: PrivateKey, data: bytes) -> tuple[bytes, str]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _curve, alg, hash_alg = _CURVES[_curve_name(key.curve)]
        size = (key.curve.key_size + 7) // 8
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hash_alg)))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big"), alg
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256()), "RS256"


def sign_schema1(
    payload: Mapping[str, Any] | bytes, private_key: PrivateKey, *, now: datetime | None = None
) -> bytes:
    """Sign a schema1 manifest the way libtrust does and return the pretty JWS bytes.

    ``payload`` is either the manifest object (encoded like Go's ``json.MarshalIndent`` with a
    three-space indent, as Distribution's ``schema1.Sign`` does) or already-formatted JSON bytes.
    The ``signatures`` member is inserted before the final ``}``.
    """
    content = payload if isinstance(payload, bytes) else _go_json(dict(payload), indent="   ")
    length = _format_split(content)
    when = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    protected_obj = {
        "formatLength": length,
        "formatTail": b64url_encode(content[length:]),
        "time": when,
    }
    protected = b64url_encode(_go_json(protected_obj))
    signature, alg = _sign_bytes(private_key, f"{protected}.{b64url_encode(content)}".encode())
    block = {
        "header": {"jwk": _public_jwk(private_key.public_key()), "alg": alg},
        "signature": b64url_encode(signature),
        "protected": protected,
    }
    indent = _detect_indent(content)
    if not indent:
        return content[:length] + b',"signatures":' + _go_json([block]) + b"}"
    marshalled = _go_json([block], indent=indent, prefix=indent)
    head = b",\n" + indent.encode() + b'"signatures": '
    return content[:length] + head + marshalled + b"\n}"
