"""A consistency check of a filesystem storage root in Distribution's layout (see
`fastreg/registry/layout.py`), for any test that wants to know the registry left nothing broken.

It reads the files directly, not through fastreg, so a bug in fastreg's readers cannot hide a bug
in its writers. What must hold (a content-addressed store's promises):
- every `blobs/<alg>/<hh>/<hex>/data` hashes to `<alg>:<hex>`, and `<hh>` is the hex's first two;
- every link file (`_layers`, `_manifests/revisions`, tag `current` and `index`, referrers) holds
  exactly the digest its path names (tags: any valid digest) and that blob's data exists;
- every tag's manifest is a revision of its repository, and every blob that manifest references
  (config, layers, index children, schema1 `fsLayers`) exists, except layers that live elsewhere
  (`urls`, foreign or non-distributable).
Uploads in progress (`_uploads`) are not checked: they promise nothing yet.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

V2 = Path("docker/registry/v2")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"(sha256|sha512):([0-9a-f]+)")
_EXTERNAL = re.compile(r"foreign|nondistributable")


def check_storage(root: Path, repositories_under: str = "") -> list[str]:
    """Every inconsistency under the storage ``root`` (the driver's rootdirectory), as text: in
    every blob, and in the repositories whose names start with ``repositories_under``."""
    problems: list[str] = []
    blobs = _check_blobs(root / V2 / "blobs", problems)
    repositories = root / V2 / "repositories"
    for repo in _repositories(repositories / repositories_under):
        name = repo.relative_to(repositories).as_posix()
        _check_repository(root, name, repo, blobs, problems)
    return problems


def blob_path(root: Path, digest: str) -> Path:
    algorithm, hex_ = digest.split(":", 1)
    return root / V2 / "blobs" / algorithm / hex_[:2] / hex_ / "data"


def _check_blobs(blobs: Path, problems: list[str]) -> set[str]:
    found: set[str] = set()
    for data in sorted(blobs.glob("*/*/*/data")):
        hex_dir = data.parent
        algorithm, prefix, hex_ = hex_dir.parent.parent.name, hex_dir.parent.name, hex_dir.name
        digest = f"{algorithm}:{hex_}"
        if len(hex_) != _HEX_LENGTH.get(algorithm, -1) or not _DIGEST.fullmatch(digest):
            problems.append(f"blob at {data} is not named by a valid digest")
            continue
        if prefix != hex_[:2]:
            problems.append(f"blob {digest} under the wrong prefix directory {prefix}")
        actual = hashlib.new(algorithm, data.read_bytes()).hexdigest()
        if actual != hex_:
            problems.append(f"blob {digest} holds bytes that hash to {algorithm}:{actual}")
        found.add(digest)
    return found


def _repositories(repositories: Path) -> Iterator[Path]:
    """Directories holding `_manifests`, `_layers` or `_uploads`: the repositories."""
    if not repositories.is_dir():
        return
    for path in sorted(repositories.rglob("*")):
        if path.is_dir() and path.name in ("_manifests", "_layers", "_uploads"):
            yield path.parent


def _read_link(link: Path, problems: list[str]) -> str | None:
    text = link.read_text(errors="replace")
    m = _DIGEST.fullmatch(text)
    if m is None or len(m.group(2)) != _HEX_LENGTH[m.group(1)]:
        problems.append(f"link {link} holds {text[:200]!r}, not a digest")
        return None
    return text


def _links(base: Path, problems: list[str], blobs: set[str]) -> dict[str, Path]:
    """`<alg>/<hex>/link` files under ``base``: digest -> link, each naming its own path."""
    out: dict[str, Path] = {}
    for link in sorted(base.glob("*/*/link")) if base.is_dir() else ():
        digest = _read_link(link, problems)
        if digest is None:
            continue
        named = f"{link.parent.parent.name}:{link.parent.name}"
        if digest != named:
            problems.append(f"link {link} holds {digest}, its path names {named}")
        if digest not in blobs:
            problems.append(f"link {link} names {digest}, which has no blob data")
        out[digest] = link
    return out


def _check_repository(
    root: Path, name: str, repo: Path, blobs: set[str], problems: list[str]
) -> None:
    _links(repo / "_layers", problems, blobs)
    revisions = _links(repo / "_manifests/revisions", problems, blobs)
    referrers = repo / "_manifests/referrers"
    for subject in sorted(referrers.glob("*/*")) if referrers.is_dir() else ():
        _links(subject, problems, blobs)
    tags = repo / "_manifests/tags"
    for tag in sorted(tags.iterdir()) if tags.is_dir() else ():
        _links(tag / "index", problems, blobs)
        current = tag / "current/link"
        if not current.is_file():
            continue  # a tag directory without `current`: untagged, as Distribution leaves it
        digest = _read_link(current, problems)
        if digest is None:
            continue
        where = f"tag {name}:{tag.name} -> {digest}"
        if digest not in blobs:
            problems.append(f"{where}: the manifest has no blob data")
            continue
        if digest not in revisions:
            problems.append(f"{where}: the manifest is not a revision of {name}")
        for ref in _references(blob_path(root, digest).read_bytes()):
            if ref not in blobs:
                problems.append(f"{where}: references {ref}, which has no blob data")


def _references(raw: bytes) -> list[str]:
    """The digests a manifest needs in storage: config, layers, index children, fsLayers."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    descriptors: list[object] = [doc.get("config")]
    for key in ("layers", "manifests"):
        if isinstance(doc.get(key), list):
            descriptors.extend(doc[key])
    refs = []
    for d in descriptors:
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
            continue
        if d.get("urls") or _EXTERNAL.search(str(d.get("mediaType", ""))):
            continue
        refs.append(d["digest"])
    for layer in doc.get("fsLayers") or []:
        if isinstance(layer, dict) and isinstance(layer.get("blobSum"), str):
            refs.append(layer["blobSum"])
    return refs
