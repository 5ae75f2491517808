"""Content digests: parsing, validating and computing ``<algorithm>:<hex>`` identifiers.

This module owns the digest grammar the registry accepts (the OCI digest grammar, narrowed to
``sha256`` and ``sha512`` with lowercase hex of the exact length) and the hashers used to
compute digests. It does no I/O: callers feed it strings and bytes.

Every rejection is ``RegistryError(ErrorCode.DIGEST_INVALID, detail=<reason string>)``, including
well-formed digests whose algorithm is not supported (Distribution answers those the same way).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastreg.registry.errors import ErrorCode, RegistryError

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["SUPPORTED_ALGORITHMS", "Digest", "new_hasher"]

SUPPORTED_ALGORITHMS: tuple[str, ...] = ("sha256", "sha512")

# Hex length of each supported algorithm's encoded part.
_HEX_LENGTHS: tuple[tuple[str, int], ...] = (("sha256", 64), ("sha512", 128))

# OCI image-spec descriptor.md: digest ::= algorithm ":" encoded
_GRAMMAR = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
_LOWER_HEX = re.compile(r"[0-9a-f]+")
# far above the longest digest accepted (sha512: 135 characters); a longer text is refused
# before the grammar runs, and an error detail never echoes more than its start
_MAX_TEXT = 256


def _invalid(reason: str) -> RegistryError:
    return RegistryError(ErrorCode.DIGEST_INVALID, detail=reason)


def _expected_length(algorithm: str) -> int | None:
    for name, length in _HEX_LENGTHS:
        if name == algorithm:
            return length
    return None


def _check_encoded(algorithm: str, encoded: str) -> None:
    length = _expected_length(algorithm)
    if length is None:
        raise _invalid(f"unsupported digest algorithm: {algorithm!r}")
    if len(encoded) != length:
        raise _invalid(f"{algorithm} digest must have {length} hex characters, got {len(encoded)}")
    if _LOWER_HEX.fullmatch(encoded) is None:
        raise _invalid(f"{algorithm} digest must be lowercase hex")


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated content digest; ``str(d)`` is the wire form ``algorithm:hex``."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        _check_encoded(self.algorithm, self.hex)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse a digest string strictly; raise DIGEST_INVALID on anything unexpected."""
        if not isinstance(text, str):
            raise _invalid(f"digest must be a string, got {type(text).__name__}")
        if not text:
            raise _invalid("empty digest")
        if len(text) > _MAX_TEXT:
            raise _invalid(f"digest longer than {_MAX_TEXT} characters: {text[:100]!r}...")
        match = _GRAMMAR.fullmatch(text)
        if match is None:
            raise _invalid(f"malformed digest: {text!r}")
        return cls(match.group(1), match.group(2))

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """Digest of ``data`` with ``algorithm`` (sha256 or sha512)."""
        hasher = new_hasher(algorithm)
        hasher.update(data)
        return cls(algorithm, hasher.hexdigest())

    @classmethod
    def from_hasher(cls, algorithm: str, hasher: _Hash) -> Digest:
        """Digest from a hasher returned by :func:`new_hasher` after feeding it the content."""
        return cls(algorithm, hasher.hexdigest())


def new_hasher(algorithm: str) -> _Hash:
    """A fresh hashlib object for ``algorithm``; DIGEST_INVALID if it is not supported."""
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "sha512":
        return hashlib.sha512()
    raise _invalid(f"unsupported digest algorithm: {algorithm!r}")
