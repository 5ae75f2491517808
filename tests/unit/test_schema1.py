"""Signed (libtrust prettyjws) and unsigned schema1 manifests: fastreg.registry.schema1."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from fastreg.registry import manifests as m
from fastreg.registry import mediatypes as mt
from fastreg.registry import schema1
from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.schema1 import b64url_decode, b64url_encode, key_id, sign_schema1


def dg(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def payload(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemaVersion": 1,
        "name": "library/busybox",
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": dg("top")}, {"blobSum": dg("base")}, {"blobSum": dg("top")}],
        "history": [
            {"v1Compatibility": '{"id":"3"}'},
            {"v1Compatibility": '{"id":"2"}'},
            {"v1Compatibility": '{"id":"1","a":"<&>"}'},
        ],
    }
    body.update(extra)
    return body


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def signed(ec_key: ec.EllipticCurvePrivateKey) -> bytes:
    return sign_schema1(payload(), ec_key)


def parse(raw: bytes, content_type: str | None = mt.SCHEMA1_SIGNED) -> m.Manifest:
    return m.parse_manifest(content_type, raw, schema1_enabled=True)


def fails(
    code: ErrorCode, raw: bytes, content_type: str | None = mt.SCHEMA1_SIGNED
) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        parse(raw, content_type)
    assert info.value.code is code, repr(info.value)
    return info.value


def split(raw: bytes) -> tuple[bytes, list[dict[str, Any]]]:
    """The payload prefix (up to formatLength) and the signature blocks of a signed manifest."""
    sigs = json.loads(raw)["signatures"]
    protected = json.loads(b64url_decode(sigs[0]["protected"]))
    return raw[: protected["formatLength"]], sigs


def join(prefix: bytes, sigs: list[dict[str, Any]]) -> bytes:
    marshalled = json.dumps(sigs, indent=3).replace("\n", "\n   ")
    return prefix + b',\n   "signatures": ' + marshalled.encode() + b"\n}"


# --- the libtrust format ----------------------------------------------------------------------


def test_signed_format(signed: bytes, ec_key: ec.EllipticCurvePrivateKey) -> None:
    canonical = json.dumps(payload(), indent=3).encode()
    canonical = canonical.replace(b"<", b"\\u003c").replace(b">", b"\\u003e")
    canonical = canonical.replace(b"&", b"\\u0026")  # Go's json.MarshalIndent escapes these
    assert signed.startswith(canonical[:-2] + b',\n   "signatures": [\n      {\n')
    assert signed.endswith(b"\n      }\n   ]\n}")
    sig = json.loads(signed)["signatures"][0]
    assert list(sig) == ["header", "signature", "protected"]
    assert list(sig["header"]) == ["jwk", "alg"]
    assert sig["header"]["alg"] == "ES256"
    jwk = sig["header"]["jwk"]
    assert list(jwk) == ["crv", "kid", "kty", "x", "y"]
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert jwk["kid"] == key_id(ec_key.public_key())
    assert len(b64url_decode(sig["signature"])) == 64
    protected = b64url_decode(sig["protected"])
    header = json.loads(protected)
    assert list(header) == ["formatLength", "formatTail", "time"]
    assert header["formatLength"] == len(canonical) - 2
    assert b64url_decode(header["formatTail"]) == b"\n}"
    assert protected.startswith(b'{"formatLength":')
    datetime.datetime.strptime(header["time"], "%Y-%m-%dT%H:%M:%SZ")


def test_key_id_format(ec_key: ec.EllipticCurvePrivateKey) -> None:
    kid = key_id(ec_key.public_key())
    groups = kid.split(":")
    assert len(groups) == 12 and all(len(g) == 4 for g in groups)
    der = ec_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    expected = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    assert kid.replace(":", "") == expected


def test_b64url_helpers() -> None:
    for data in (b"", b"a", b"ab", b"abc", b"\xff\xfe\xfd"):
        assert b64url_decode(b64url_encode(data)) == data
        assert "=" not in b64url_encode(data)
    with pytest.raises(ValueError):
        b64url_decode("abcde")
    with pytest.raises(ValueError):
        b64url_decode("ab+/")


# --- verification -----------------------------------------------------------------------------


def test_signed_manifest_accepted(signed: bytes, ec_key: ec.EllipticCurvePrivateKey) -> None:
    manifest = parse(signed)
    assert manifest.media_type == mt.SCHEMA1_SIGNED
    assert manifest.raw == signed  # the signed bytes are what is stored and served
    assert [str(b.digest) for b in manifest.blobs] == [dg("top"), dg("base")]  # deduped
    assert all(b.size == -1 and b.media_type == mt.SCHEMA1_LAYER for b in manifest.blobs)
    parsed = schema1.parse_schema1(signed, signed=True)
    assert parsed.signed and parsed.key_ids == (key_id(ec_key.public_key()),)
    assert (parsed.name, parsed.tag, parsed.architecture) == ("library/busybox", "latest", "amd64")


def test_digest_is_of_payload_without_signatures(signed: bytes) -> None:
    prefix, sigs = split(signed)
    tail = b64url_decode(json.loads(b64url_decode(sigs[0]["protected"]))["formatTail"])
    canonical = prefix + tail
    assert json.loads(canonical) == payload()
    manifest = parse(signed)
    assert manifest.digest == Digest.from_bytes(canonical)
    assert manifest.digest != Digest.from_bytes(signed)
    sha512 = m.parse_manifest(None, signed, schema1_enabled=True, digest_algorithm="sha512")
    assert sha512.digest == Digest.from_bytes(canonical, "sha512")


def test_detected_and_accepted_without_content_type(signed: bytes) -> None:
    for content_type in (None, "application/json", mt.SCHEMA1):
        assert parse(signed, content_type).media_type == mt.SCHEMA1_SIGNED


def test_tampered_payload_is_unverified(signed: bytes) -> None:
    tampered = signed.replace(b'"latest"', b'"latesx"', 1)
    assert tampered != signed
    assert fails(ErrorCode.MANIFEST_UNVERIFIED, tampered).detail == "invalid signature"


def test_tampered_signature_is_unverified(signed: bytes) -> None:
    prefix, sigs = split(signed)
    raw_sig = bytearray(b64url_decode(sigs[0]["signature"]))
    raw_sig[5] ^= 1
    sigs[0]["signature"] = b64url_encode(bytes(raw_sig))
    fails(ErrorCode.MANIFEST_UNVERIFIED, join(prefix, sigs))


def test_signature_by_another_key_is_unverified(signed: bytes) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    prefix, sigs = split(signed)
    other_sigs = json.loads(sign_schema1(payload(), other))["signatures"]
    sigs[0]["header"]["jwk"] = other_sigs[0]["header"]["jwk"]
    fails(ErrorCode.MANIFEST_UNVERIFIED, join(prefix, sigs))


def test_wrong_alg_is_unverified(signed: bytes) -> None:
    prefix, sigs = split(signed)
    sigs[0]["header"]["alg"] = "ES384"
    fails(ErrorCode.MANIFEST_UNVERIFIED, join(prefix, sigs))


def test_missing_key_is_unverified(signed: bytes) -> None:
    prefix, sigs = split(signed)
    del sigs[0]["header"]["jwk"]
    fails(ErrorCode.MANIFEST_UNVERIFIED, join(prefix, sigs))


def test_kid_mismatch_is_invalid(signed: bytes) -> None:
    prefix, sigs = split(signed)
    sigs[0]["header"]["jwk"]["kid"] = "AAAA:" * 11 + "AAAA"
    fails(ErrorCode.MANIFEST_INVALID, join(prefix, sigs))


@pytest.mark.parametrize(
    "curve, alg, size",
    [(ec.SECP384R1(), "ES384", 96), (ec.SECP521R1(), "ES512", 132)],
)
def test_other_curves(curve: ec.EllipticCurve, alg: str, size: int) -> None:
    raw = sign_schema1(payload(), ec.generate_private_key(curve))
    sig = json.loads(raw)["signatures"][0]
    assert sig["header"]["alg"] == alg
    assert len(b64url_decode(sig["signature"])) == size
    assert parse(raw).media_type == mt.SCHEMA1_SIGNED


def test_rsa_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raw = sign_schema1(payload(), key)
    sig = json.loads(raw)["signatures"][0]
    assert sig["header"]["alg"] == "RS256"
    assert list(sig["header"]["jwk"]) == ["e", "kid", "kty", "n"]
    assert sig["header"]["jwk"]["e"] == "AQAB"
    assert schema1.parse_schema1(raw, signed=True).key_ids == (key_id(key.public_key()),)
    fails(ErrorCode.MANIFEST_UNVERIFIED, raw.replace(b"amd64", b"arm64", 1))


def test_x5c_chain_key_is_used(ec_key: ec.EllipticCurvePrivateKey, signed: bytes) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ec_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ec_key, hashes.SHA256())
    )
    prefix, sigs = split(signed)
    sigs[0]["header"] = {
        "alg": "ES256",
        "x5c": [base64.b64encode(cert.public_bytes(Encoding.DER)).decode()],
    }
    assert parse(join(prefix, sigs)).digest == parse(signed).digest
    # the chain's key wins over a (wrong) jwk
    other = json.loads(sign_schema1(payload(), ec.generate_private_key(ec.SECP256R1())))
    sigs[0]["header"]["jwk"] = other["signatures"][0]["header"]["jwk"]
    assert parse(join(prefix, sigs)).media_type == mt.SCHEMA1_SIGNED


def test_two_signatures(signed: bytes) -> None:
    prefix, sigs = split(signed)
    other = ec.generate_private_key(ec.SECP256R1())
    # the same payload signed by another key carries the same format length and tail
    extra = json.loads(sign_schema1(payload(), other))["signatures"]
    raw = join(prefix, sigs + extra)
    assert len(schema1.parse_schema1(raw, signed=True).key_ids) == 2
    extra[0]["signature"] = sigs[0]["signature"]  # one bad signature fails the lot
    fails(ErrorCode.MANIFEST_UNVERIFIED, join(prefix, sigs + extra))


# --- structural errors ------------------------------------------------------------------------


def test_missing_or_empty_signatures_is_invalid(signed: bytes) -> None:
    prefix, _sigs = split(signed)
    fails(ErrorCode.MANIFEST_INVALID, join(prefix, []))
    no_key = json.dumps(payload(), indent=3).encode()
    fails(ErrorCode.MANIFEST_INVALID, no_key, mt.SCHEMA1_SIGNED)


@pytest.mark.parametrize(
    "protected",
    [
        "!!!",
        b64url_encode(b"not json"),
        b64url_encode(b'{"formatTail":"Cn0"}'),
        b64url_encode(b'{"formatLength":10}'),
        b64url_encode(b'{"formatLength":10,"formatTail":7}'),
        b64url_encode(b'{"formatLength":"10","formatTail":"Cn0"}'),
        b64url_encode(b"[]"),
        b64url_encode(b'{"formatLength":999999,"formatTail":"Cn0"}'),
        b64url_encode(b'{"formatLength":-3,"formatTail":"Cn0"}'),
    ],
)
def test_bad_protected_header_is_invalid(signed: bytes, protected: str) -> None:
    prefix, sigs = split(signed)
    sigs[0]["protected"] = protected
    fails(ErrorCode.MANIFEST_INVALID, join(prefix, sigs))


def test_conflicting_format_is_invalid(signed: bytes) -> None:
    prefix, sigs = split(signed)
    second = dict(sigs[0], protected=b64url_encode(b'{"formatLength":5,"formatTail":"Cn0"}'))
    fails(ErrorCode.MANIFEST_INVALID, join(prefix, sigs + [second]))


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": "AA"},
        {"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"},
        {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
        {"kty": "EC", "crv": "P-256"},
        "not an object",
    ],
)
def test_bad_jwk_is_invalid(signed: bytes, jwk: Any) -> None:
    prefix, sigs = split(signed)
    sigs[0]["header"]["jwk"] = jwk
    fails(ErrorCode.MANIFEST_INVALID, join(prefix, sigs))


def test_name_must_be_valid(ec_key: ec.EllipticCurvePrivateKey) -> None:
    for name in ("", "UPPER", "x" * 256):
        fails(ErrorCode.NAME_INVALID, sign_schema1(payload(name=name), ec_key))


def test_history_cardinality(ec_key: ec.EllipticCurvePrivateKey) -> None:
    raw = sign_schema1(payload(history=[]), ec_key)
    assert "cardinality" in fails(ErrorCode.MANIFEST_INVALID, raw).detail


def test_bad_blob_sum_is_digest_invalid(ec_key: ec.EllipticCurvePrivateKey) -> None:
    body = payload(fsLayers=[{"blobSum": "sha256:xyz"}], history=[{"v1Compatibility": ""}])
    error = fails(ErrorCode.DIGEST_INVALID, sign_schema1(body, ec_key))
    assert error.detail.startswith("fsLayers[0].blobSum")


@pytest.mark.parametrize("version", [2, "1", None, True])
def test_schema_version_must_be_1(ec_key: ec.EllipticCurvePrivateKey, version: Any) -> None:
    raw = sign_schema1(payload(schemaVersion=version), ec_key)
    fails(ErrorCode.MANIFEST_INVALID, raw)


def test_wrongly_typed_fields_are_invalid(ec_key: ec.EllipticCurvePrivateKey) -> None:
    extras: list[dict[str, Any]] = [
        {"name": 5},
        {"fsLayers": {}},
        {"fsLayers": ["x"]},
        {"history": [{"v1Compatibility": 1}]},
    ]
    for extra in extras:
        fails(ErrorCode.MANIFEST_INVALID, sign_schema1(payload(**extra), ec_key))


# --- unsigned ---------------------------------------------------------------------------------


def test_unsigned_manifest() -> None:
    raw = json.dumps(payload(), indent=3).encode()
    manifest = parse(raw, mt.SCHEMA1)
    assert manifest.media_type == mt.SCHEMA1
    assert manifest.digest == Digest.from_bytes(raw)
    assert [str(b.digest) for b in manifest.blobs] == [dg("top"), dg("base")]
    parsed = schema1.parse_schema1(raw, signed=False)
    assert not parsed.signed and parsed.key_ids == () and parsed.canonical == raw


def test_unsigned_manifest_still_checked() -> None:
    fails(ErrorCode.NAME_INVALID, json.dumps(payload(name="")).encode(), mt.SCHEMA1)
    fails(ErrorCode.MANIFEST_INVALID, json.dumps(payload(history=[])).encode(), mt.SCHEMA1)


# --- signing helper ---------------------------------------------------------------------------


def test_sign_preformatted_bytes_and_fixed_time(ec_key: ec.EllipticCurvePrivateKey) -> None:
    content = b'{\n\t"schemaVersion": 1,\n\t"name": "a/b",\n\t"fsLayers": [],\n\t"history": []\n}\n'
    when = datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    raw = sign_schema1(content, ec_key, now=when)
    assert raw.startswith(content[: content.rindex(b"\n}")] + b',\n\t"signatures": [\n\t\t{')
    assert raw.endswith(b"\n\t]\n}")
    header = json.loads(b64url_decode(json.loads(raw)["signatures"][0]["protected"]))
    assert header["time"] == "2020-01-02T03:04:05Z"
    assert b64url_decode(header["formatTail"]) == b"\n}\n"
    assert schema1.parse_schema1(raw, signed=True).canonical == content


def test_sign_compact_payload(ec_key: ec.EllipticCurvePrivateKey) -> None:
    content = b'{"schemaVersion":1,"name":"a/b","fsLayers":[],"history":[]}'
    raw = sign_schema1(content, ec_key)
    assert raw.startswith(content[:-1] + b',"signatures":[{"header":')
    assert schema1.parse_schema1(raw, signed=True).canonical == content


def test_sign_rejects_non_object(ec_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ValueError):
        sign_schema1(b"[1, 2]", ec_key)
    with pytest.raises(ValueError):
        sign_schema1(b'{"a": 1,}', ec_key)
