"""The drop-in proof: fastreg and Distribution serve each other's storage root.

* ``test_handover`` pushes images with skopeo to one server on root R, stops
  it, serves R with the other server and pulls everything back byte-identical;
  then pushes new tags to the second server, stops it, serves R with the first
  server again and checks old and new content (mixed writes).
  Variants: fastreg -> Distribution (8), Distribution -> fastreg (9), and a
  Distribution -> Distribution control that validates the test itself.
* ``test_on_disk_layout`` checks the files a server wrote under
  ``<root>/docker/registry/v2`` against Distribution's layout (10).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .images import (
    MT_DOCKER_MANIFEST,
    digest_of,
    dir_transport_blob_digests,
    dir_transport_manifest,
    file_digest,
    layout_blob_digests,
    make_oci_image,
    make_oci_index,
    oci_ref_digest,
)

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- catalog


@dataclass
class Pushed:
    """One tag pushed to a registry, and what it must look like forever after."""

    repo: str
    tag: str
    kind: str  # "image" | "index" | "v2s2"
    manifest_bytes: bytes
    # every digest reachable from the tag: manifest(s) + config(s) + layers
    closure: set[str]
    # child manifest digest -> bytes (index only)
    children: dict[str, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return digest_of(self.manifest_bytes)


def push_set(skopeo, server, work: Path, suffix: str) -> list[Pushed]:
    """Push a single OCI image, a multi-arch index and a v2s2 image."""
    out: list[Pushed] = []
    h = server.host

    img_dir = work / f"img-{suffix}"
    img = make_oci_image(img_dir, "latest", layers=[3000, 50_000, 700])
    skopeo(
        "copy",
        "--preserve-digests",
        f"oci:{img_dir}:latest",
        f"docker://{h}/library/single:{suffix}",
    )
    out.append(
        Pushed(
            "library/single",
            suffix,
            "image",
            img.manifest_bytes,
            {img.manifest_digest, *img.blob_digests},
        )
    )

    idx_dir = work / f"idx-{suffix}"
    idx = make_oci_index(idx_dir, "latest")
    skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        f"oci:{idx_dir}:latest",
        f"docker://{h}/multi/arch:{suffix}",
    )
    out.append(
        Pushed(
            "multi/arch",
            suffix,
            "index",
            idx.index_bytes,
            {idx.index_digest, *idx.child_digests, *idx.blob_digests},
            {c.manifest_digest: c.manifest_bytes for c in idx.children},
        )
    )

    v2_dir = work / f"v2-{suffix}"
    v2 = make_oci_image(v2_dir, "latest", layers=[1200, 2400])
    ref = f"docker://{h}/legacy/docker-v2s2:{suffix}"
    skopeo("copy", "--format", "v2s2", f"oci:{v2_dir}:latest", ref)
    raw = skopeo.inspect_raw(ref)
    assert json.loads(raw)["mediaType"] == MT_DOCKER_MANIFEST
    out.append(
        Pushed("legacy/docker-v2s2", suffix, "v2s2", raw, {digest_of(raw), *v2.blob_digests})
    )
    return out


def verify_set(skopeo, server, pushed: list[Pushed], work: Path) -> None:
    """Pull every pushed tag from ``server`` and compare bytes and digests."""
    h = server.host
    for p in pushed:
        where = f"{server.kind} on {server.root}: {p.repo}:{p.tag}"
        ref = f"docker://{h}/{p.repo}:{p.tag}"
        raw = skopeo.inspect_raw(ref)
        assert raw == p.manifest_bytes, f"{where}: manifest bytes differ:\n{raw!r}"
        assert skopeo.inspect_raw(f"docker://{h}/{p.repo}@{p.digest}") == p.manifest_bytes, where
        for child_digest, child_bytes in p.children.items():
            got = skopeo.inspect_raw(f"docker://{h}/{p.repo}@{child_digest}")
            assert got == child_bytes, f"{where}: child {child_digest} differs"

        dst = work / f"pull-{server.kind}-{server.port}-{p.repo.replace('/', '_')}-{p.tag}"
        if p.kind == "image":
            skopeo("copy", "--preserve-digests", ref, f"oci:{dst}:x")
            assert oci_ref_digest(dst, "x") == p.digest, where
            assert layout_blob_digests(dst) == p.closure, where
        elif p.kind == "index":
            skopeo("copy", "--all", "--preserve-digests", ref, f"oci:{dst}:x")
            assert oci_ref_digest(dst, "x") == p.digest, where
            assert layout_blob_digests(dst) == p.closure, where
        elif p.kind == "v2s2":
            skopeo("copy", "--preserve-digests", ref, f"dir:{dst}")
            assert dir_transport_manifest(dst) == p.manifest_bytes, where
            assert dir_transport_blob_digests(dst) | {p.digest} == p.closure, where
        else:  # pragma: no cover
            raise AssertionError(p.kind)


def expected_tags(pushed: list[Pushed]) -> dict[str, set[str]]:
    tags: dict[str, set[str]] = {}
    for p in pushed:
        tags.setdefault(p.repo, set()).add(p.tag)
    return tags


def verify_tags(skopeo, server, pushed: list[Pushed]) -> None:
    for repo, tags in expected_tags(pushed).items():
        listed = skopeo.list_tags(f"docker://{server.host}/{repo}")
        assert sorted(listed) == sorted(tags), f"{server.kind}: tags of {repo}"


# --------------------------------------------------------------------------- tests

HANDOVERS = [
    pytest.param("fastreg", "distribution", id="fastreg-then-distribution"),
    pytest.param("distribution", "fastreg", id="distribution-then-fastreg"),
    pytest.param("distribution", "distribution", id="control-distribution-only"),
]


@pytest.mark.parametrize(("first", "second"), HANDOVERS)
def test_handover(first: str, second: str, server_factory, skopeo, tmp_path: Path) -> None:
    root = tmp_path / "shared-root"
    work = tmp_path / "work"
    work.mkdir()

    # 1. `first` writes R.
    a = server_factory(first)(root)
    try:
        set_a = push_set(skopeo, a, work, "v1")
        verify_tags(skopeo, a, set_a)
    finally:
        a.stop()
    assert (root / "docker" / "registry" / "v2" / "repositories").is_dir(), (
        f"{first} did not write Distribution's layout under {root}"
    )

    # 2. `second` serves R: everything comes back byte-identical.
    b = server_factory(second)(root)
    try:
        verify_set(skopeo, b, set_a, work)
        verify_tags(skopeo, b, set_a)
        # 3. `second` adds new tags to the same repositories on R (mixed writes).
        set_b = push_set(skopeo, b, work, "v2")
        verify_tags(skopeo, b, set_a + set_b)
    finally:
        b.stop()

    # 4. `first` serves R again and sees both generations.
    c = server_factory(first)(root)
    try:
        verify_set(skopeo, c, set_a + set_b, work)
        verify_tags(skopeo, c, set_a + set_b)
    finally:
        c.stop()


def _assert_link(path: Path, digest: str) -> None:
    content = path.read_bytes() if path.is_file() else None
    assert content is not None, f"missing link file {path}"
    assert content == digest.encode(), (
        f"{path} must contain exactly {digest!r} (no newline), has {content!r}"
    )


def _assert_blob_data(v2: Path, digest: str, expected: bytes | None = None) -> None:
    hexd = digest.split(":", 1)[1]
    data = v2 / "blobs" / "sha256" / hexd[:2] / hexd / "data"
    assert data.is_file(), f"missing blob data {data}"
    assert file_digest(data) == digest, f"{data} content does not hash to {digest}"
    if expected is not None:
        assert data.read_bytes() == expected


def test_on_disk_layout(registry, skopeo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    img = make_oci_image(src, "latest", layers=[1000, 2000, 3000])
    idx = make_oci_index(src, "multi")
    h = registry.host
    skopeo("copy", "--preserve-digests", f"oci:{src}:latest", f"docker://{h}/org/app:1.0")
    skopeo("copy", "--all", "--preserve-digests", f"oci:{src}:multi", f"docker://{h}/org/app:multi")

    v2 = registry.root / "docker" / "registry" / "v2"
    repo = v2 / "repositories" / "org" / "app"
    assert repo.is_dir(), f"{registry.kind} did not create {repo}"

    # Tags: current/link and index/sha256/<hex>/link.
    for tag, digest in (("1.0", img.manifest_digest), ("multi", idx.index_digest)):
        hexd = digest.split(":", 1)[1]
        tag_dir = repo / "_manifests" / "tags" / tag
        _assert_link(tag_dir / "current" / "link", digest)
        _assert_link(tag_dir / "index" / "sha256" / hexd / "link", digest)

    # Manifest revisions: the image, the index and each child manifest.
    manifests = {img.manifest_digest: img.manifest_bytes, idx.index_digest: idx.index_bytes}
    manifests.update({c.manifest_digest: c.manifest_bytes for c in idx.children})
    for digest, body in manifests.items():
        hexd = digest.split(":", 1)[1]
        _assert_link(repo / "_manifests" / "revisions" / "sha256" / hexd / "link", digest)
        _assert_blob_data(v2, digest, body)

    # Layers (and configs): repository links + global blob data.
    blobs = set(img.blob_digests) | set(idx.blob_digests)
    for digest in blobs:
        hexd = digest.split(":", 1)[1]
        _assert_link(repo / "_layers" / "sha256" / hexd / "link", digest)
        _assert_blob_data(v2, digest, (src / "blobs" / "sha256" / hexd).read_bytes())

    # Nothing unexpected at the top level of the repository.
    assert {p.name for p in repo.iterdir()} <= {"_layers", "_manifests", "_uploads"}
    assert sorted(p.name for p in (repo / "_manifests" / "tags").iterdir()) == ["1.0", "multi"]
    assert {p.name for p in (v2 / "blobs").iterdir()} == {"sha256"}
    # Every blob dir is <hh>/<hex>/data with hh = hex[:2].
    for hh in (v2 / "blobs" / "sha256").iterdir():
        for blob_dir in hh.iterdir():
            assert blob_dir.name[:2] == hh.name, blob_dir
            assert (blob_dir / "data").is_file(), blob_dir
