"""Digest grammar, hashing and the DIGEST_INVALID errors of fastreg.registry.digests."""

from __future__ import annotations

import hashlib

import pytest

from fastreg.registry.digests import SUPPORTED_ALGORITHMS, Digest, new_hasher
from fastreg.registry.errors import ErrorCode, RegistryError

SHA256_HEX = hashlib.sha256(b"hello").hexdigest()
SHA512_HEX = hashlib.sha512(b"hello").hexdigest()


def test_parse_sha256() -> None:
    digest = Digest.parse(f"sha256:{SHA256_HEX}")
    assert digest.algorithm == "sha256"
    assert digest.hex == SHA256_HEX
    assert str(digest) == f"sha256:{SHA256_HEX}"


def test_parse_sha512() -> None:
    digest = Digest.parse(f"sha512:{SHA512_HEX}")
    assert digest.algorithm == "sha512"
    assert digest.hex == SHA512_HEX
    assert str(digest) == f"sha512:{SHA512_HEX}"


def test_supported_algorithms() -> None:
    assert SUPPORTED_ALGORITHMS == ("sha256", "sha512")


def test_digests_are_values() -> None:
    a = Digest.parse(f"sha256:{SHA256_HEX}")
    b = Digest("sha256", SHA256_HEX)
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != Digest.parse(f"sha512:{SHA512_HEX}")


@pytest.mark.parametrize(
    "text",
    [
        f"sha256:{SHA256_HEX.upper()}",  # uppercase hex
        f"sha256:{SHA256_HEX[:-1]}A",  # one uppercase char
        f"sha256:{SHA256_HEX[:-1]}",  # 63 chars
        f"sha256:{SHA256_HEX}0",  # 65 chars
        f"sha512:{SHA256_HEX}",  # sha512 with 64 chars
        f"sha256:{SHA512_HEX}",  # sha256 with 128 chars
        f"sha256:{SHA256_HEX[:-1]}g",  # not hex
        f"SHA256:{SHA256_HEX}",  # uppercase algorithm
        "",
        "sha256:",
        ":" + SHA256_HEX,
        "sha256",
        SHA256_HEX,
        "garbage",
        "sha256::" + SHA256_HEX,
        f" sha256:{SHA256_HEX}",
        f"sha256:{SHA256_HEX}\n",
        f"sha256:{SHA256_HEX} ",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(RegistryError) as info:
        Digest.parse(text)
    assert info.value.code is ErrorCode.DIGEST_INVALID
    assert info.value.detail


@pytest.mark.parametrize(
    "text",
    [
        "md5:" + hashlib.md5(b"x").hexdigest(),
        "sha384:" + hashlib.sha384(b"x").hexdigest(),
        "blake3:" + "a" * 64,
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
    ],
)
def test_well_formed_but_unsupported_algorithm_is_digest_invalid(text: str) -> None:
    with pytest.raises(RegistryError) as info:
        Digest.parse(text)
    assert info.value.code is ErrorCode.DIGEST_INVALID
    assert "unsupported" in info.value.detail


def test_parse_rejects_non_string() -> None:
    with pytest.raises(RegistryError) as info:
        Digest.parse(123)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.DIGEST_INVALID


def test_constructor_validates() -> None:
    with pytest.raises(RegistryError) as info:
        Digest("sha256", "abc")
    assert info.value.code is ErrorCode.DIGEST_INVALID
    with pytest.raises(RegistryError):
        Digest("md5", "a" * 32)


@pytest.mark.parametrize("data", [b"", b"hello", bytes(range(256)) * 10])
def test_from_bytes_matches_hashlib(data: bytes) -> None:
    assert Digest.from_bytes(data) == Digest("sha256", hashlib.sha256(data).hexdigest())
    assert str(Digest.from_bytes(data, "sha512")) == "sha512:" + hashlib.sha512(data).hexdigest()


def test_from_bytes_empty_is_the_well_known_digest() -> None:
    assert str(Digest.from_bytes(b"")) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_from_bytes_unknown_algorithm() -> None:
    with pytest.raises(RegistryError) as info:
        Digest.from_bytes(b"x", "md5")
    assert info.value.code is ErrorCode.DIGEST_INVALID


def test_new_hasher_streams() -> None:
    for algorithm in SUPPORTED_ALGORITHMS:
        hasher = new_hasher(algorithm)
        hasher.update(b"hel")
        hasher.update(b"lo")
        assert Digest.from_hasher(algorithm, hasher) == Digest.from_bytes(b"hello", algorithm)


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "SHA256", "", "sha384"])
def test_new_hasher_unknown(algorithm: str) -> None:
    with pytest.raises(RegistryError) as info:
        new_hasher(algorithm)
    assert info.value.code is ErrorCode.DIGEST_INVALID
    assert info.value.detail
