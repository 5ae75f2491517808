"""Repository name, tag and reference grammar (OCI Distribution Spec, "Pulling manifests").

Everything that reaches a storage path passes through here first, so a name can never be a
path traversal: the grammar admits only lowercase alphanumerics and single separators.
"""

from __future__ import annotations

import re

from fastreg.registry.digests import Digest
from fastreg.registry.errors import ErrorCode, RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_NAME_LENGTH = 255


def is_valid_name(name: str) -> bool:
    """The spec grammar and Distribution's length limit, wherever a name enters (the path, a
    mount's `from=`): a longer name is no repository and too long a path for some filesystems."""
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.fullmatch(name) is not None


def validate_name(name: str) -> str:
    if not is_valid_name(name):
        raise RegistryError(ErrorCode.NAME_INVALID, detail={"name": name[:300]})
    return name


def validate_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise RegistryError(ErrorCode.TAG_INVALID, detail={"tag": tag[:300]})
    return tag


def parse_reference(reference: str) -> str | Digest:
    """A manifest reference is a digest when it has a colon, otherwise a tag (a PUT's: an
    invalid one is 400 TAG_INVALID)."""
    if ":" in reference:
        return Digest.parse(reference)
    return validate_tag(reference)


def lookup_reference(reference: str) -> str | Digest:
    """The reference of a GET, HEAD or DELETE: as ``parse_reference``, but a tag that breaks the
    grammar names no manifest, so it is 404 MANIFEST_UNKNOWN (the spec's MUST for a manifest not
    found; Distribution's route grammar refuses such a path with 404 as well). Only a PUT, which
    would create the tag, is told TAG_INVALID."""
    if ":" in reference or TAG_RE.fullmatch(reference):
        return parse_reference(reference)
    raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": reference[:300]})
