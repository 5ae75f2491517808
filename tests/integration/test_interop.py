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
        # ...and pushes blobs that `first` already stored, into a new repository.
        single = set_a[0]
        skopeo(
            "copy",
            "--preserve-digests",
            f"oci:{work / 'img-v1'}:latest",
            f"docker://{b.host}/library/copied:v1",
        )
        set_b.append(Pushed("library/copied", "v1", "image", single.manifest_bytes, single.closure))
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


def _assert_no_pending_uploads(repo: Path) -> None:
    uploads = repo / "_uploads"
    leftovers = sorted(p.name for p in uploads.iterdir()) if uploads.is_dir() else []
    assert leftovers == [], f"upload state left behind after completed pushes: {leftovers}"


def test_no_upload_leftovers(registry, skopeo, tmp_path: Path) -> None:
    """Like Distribution, completed uploads leave nothing under ``_uploads``."""
    src = tmp_path / "src"
    make_oci_image(src, "latest", layers=[10_000, 20_000])
    skopeo("copy", "--preserve-digests", f"oci:{src}:latest", f"docker://{registry.host}/org/up:1")
    repo = registry.root / "docker" / "registry" / "v2" / "repositories" / "org" / "up"
    assert repo.is_dir()
    _assert_no_pending_uploads(repo)


# --------------------------------------------------------------------------- tree equality


def tree_snapshot(root: Path) -> dict[str, str]:
    """``relative path -> content`` for every file under ``<root>/docker/registry/v2``.

    Link files map to their exact content; blob ``data`` files to their digest.
    ``_uploads`` is ignored (transient, uuid-named).
    """
    v2 = root / "docker" / "registry" / "v2"
    out: dict[str, str] = {}
    for p in sorted(v2.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(v2).as_posix()
        if "/_uploads/" in f"/{rel}":
            continue
        if p.name == "data":
            out[rel] = file_digest(p)
        else:
            out[rel] = repr(p.read_bytes())
    return out


def _diff_trees(expected: dict[str, str], actual: dict[str, str]) -> str:
    lines = []
    for rel in sorted(set(expected) | set(actual)):
        e, a = expected.get(rel), actual.get(rel)
        if e != a:
            lines.append(f"  {rel}: distribution={e} other={a}")
    return "\n".join(lines)


@pytest.mark.parametrize("other", ["fastreg", "distribution"])
def test_on_disk_tree_identical_to_distribution(
    other: str, distribution_server, server_factory, skopeo, tmp_path: Path
) -> None:
    """The same pushes (incl. a re-tag and a delete) leave the same files on both servers."""
    src = tmp_path / "src"
    a = make_oci_image(src, "a", layers=[1111, 2222])
    b = make_oci_image(src, "b", layers=[3333])
    make_oci_index(src, "multi")
    make_oci_image(src, "v2", layers=[4444])

    ref_server = distribution_server(tmp_path / "distribution-root")
    other_server = server_factory(other)(tmp_path / "other-root")
    servers = (ref_server, other_server)

    def push(*args: str) -> None:
        *flags, src_ref, dst_path = args
        for s in servers:
            skopeo("copy", *flags, src_ref, f"docker://{s.host}/{dst_path}")

    push("--preserve-digests", f"oci:{src}:a", "org/app:1.0")
    push("--preserve-digests", f"oci:{src}:a", "org/app:moving")
    push("--preserve-digests", f"oci:{src}:b", "org/app:moving")  # re-tag: index keeps history
    push("--all", "--preserve-digests", f"oci:{src}:multi", "org/app:multi")
    push("--format", "v2s2", f"oci:{src}:v2", "org/legacy:1")

    expected = tree_snapshot(ref_server.root)
    actual = tree_snapshot(other_server.root)
    moving = "repositories/org/app/_manifests/tags/moving"
    assert expected[f"{moving}/current/link"] == repr(b.manifest_digest.encode())
    assert f"{moving}/index/sha256/{a.manifest_digest.split(':')[1]}/link" in expected
    assert actual == expected, f"{other} tree differs after pushes:\n" + _diff_trees(
        expected, actual
    )

    # Deleting a manifest: Distribution drops its revision link and every tag whose
    # current link points at it; blob data stays until garbage collection.
    for s in servers:
        skopeo("delete", f"docker://{s.host}/org/app:1.0")
    expected = tree_snapshot(ref_server.root)
    actual = tree_snapshot(other_server.root)
    a_hex = a.manifest_digest.split(":")[1]
    assert f"repositories/org/app/_manifests/revisions/sha256/{a_hex}/link" not in expected
    assert f"blobs/sha256/{a_hex[:2]}/{a_hex}/data" in expected
    assert actual == expected, f"{other} tree differs after delete:\n" + _diff_trees(
        expected, actual
    )


# --------------------------------------------------------------------------- garbage collection


@pytest.mark.parametrize("writer", ["fastreg", "distribution"])
def test_distribution_gc_on_root(
    writer: str, server_factory, skopeo, distribution_gc, tmp_path: Path
) -> None:
    """Distribution's garbage collector walks a root the writer filled, deletes exactly the
    garbage, and the writer still serves everything that is left."""
    root = tmp_path / "root"
    work = tmp_path / "work"
    work.mkdir()
    doomed_dir = tmp_path / "doomed"
    doomed = make_oci_image(doomed_dir, "latest", layers=[5555, 6666])

    s = server_factory(writer)(root)
    try:
        kept = push_set(skopeo, s, work, "v1")
        skopeo(
            "copy",
            "--preserve-digests",
            f"oci:{doomed_dir}:latest",
            f"docker://{s.host}/library/single:doomed",
        )
        skopeo("delete", f"docker://{s.host}/library/single:doomed")
    finally:
        s.stop()

    dry = distribution_gc(root, dry_run=True)
    every_kept = set().union(*(p.closure for p in kept))
    garbage = {doomed.manifest_digest, *doomed.blob_digests} - every_kept
    # Everything reachable from a tag is marked; exactly the deleted image is garbage.
    assert dry.marked_digests == every_kept, dry.output
    assert dry.eligible_digests == garbage, dry.output
    assert (dry.marked, dry.blobs_eligible) == (len(every_kept), len(garbage)), dry.output

    distribution_gc(root)
    v2 = root / "docker" / "registry" / "v2"
    for d in doomed.blob_digests:
        hexd = d.split(":")[1]
        assert not (v2 / "blobs" / "sha256" / hexd[:2] / hexd / "data").exists()

    s = server_factory(writer)(root)
    try:
        verify_set(skopeo, s, kept, work)
        verify_tags(skopeo, s, kept)
    finally:
        s.stop()


# --------------------------------------------------------------------------- live sync

SYNCS = [
    pytest.param("fastreg", "distribution", id="fastreg-to-distribution"),
    pytest.param("distribution", "fastreg", id="distribution-to-fastreg"),
    pytest.param("distribution", "distribution", id="control-distribution-to-distribution"),
]


@pytest.mark.parametrize(("src_kind", "dst_kind"), SYNCS)
def test_skopeo_sync_between_live_servers(
    src_kind: str, dst_kind: str, server_factory, skopeo, tmp_path: Path
) -> None:
    """A registry migration as people do it: `skopeo sync` every tag of a repository from
    one running server to the other, byte-identical."""
    src = tmp_path / "src"
    img = make_oci_image(src, "img", layers=[1234, 5678])
    idx = make_oci_index(src, "idx")
    a = server_factory(src_kind)(tmp_path / "src-root")
    b = server_factory(dst_kind)(tmp_path / "dst-root")
    skopeo("copy", "--preserve-digests", f"oci:{src}:img", f"docker://{a.host}/apps/web:1.0")
    skopeo("copy", "--preserve-digests", f"oci:{src}:img", f"docker://{a.host}/apps/web:stable")
    skopeo(
        "copy", "--all", "--preserve-digests", f"oci:{src}:idx", f"docker://{a.host}/apps/web:multi"
    )

    skopeo(
        "sync",
        "--src",
        "docker",
        "--dest",
        "docker",
        "--all",
        "--preserve-digests",
        f"{a.host}/apps/web",
        f"{b.host}/mirror",
    )

    dst = f"docker://{b.host}/mirror/web"
    assert sorted(skopeo.list_tags(dst)) == ["1.0", "multi", "stable"]
    assert skopeo.inspect_raw(f"{dst}:1.0") == img.manifest_bytes
    assert skopeo.inspect_raw(f"{dst}:stable") == img.manifest_bytes
    assert skopeo.inspect_raw(f"{dst}:multi") == idx.index_bytes
    for child in idx.children:
        assert skopeo.inspect_raw(f"{dst}@{child.manifest_digest}") == child.manifest_bytes
    back = tmp_path / "back"
    skopeo("copy", "--all", "--preserve-digests", f"{dst}:multi", f"oci:{back}:x")
    assert layout_blob_digests(back) == {idx.index_digest, *idx.child_digests, *idx.blob_digests}
