"""Real-client round trips: skopeo against a running registry.

Every test is parametrized over the server kind (``distribution`` and
``fastreg``): the Distribution runs prove the tests themselves are right, the
fastreg runs prove fastreg behaves the same. Assertions compare digests and
bytes, never just exit codes.

All copies use ``--preserve-digests`` so skopeo fails instead of silently
rewriting (e.g. compressing) anything: what comes back must be what went in.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .images import (
    MT_DOCKER_CONFIG,
    MT_DOCKER_LAYER_GZIP,
    MT_DOCKER_MANIFEST,
    MT_OCI_INDEX,
    MT_OCI_LAYER_TAR,
    MT_OCI_MANIFEST,
    assert_same_image,
    digest_of,
    dir_transport_blob_digests,
    dir_transport_manifest,
    file_digest,
    layout_blob_digests,
    make_oci_image,
    make_oci_index,
    oci_ref_digest,
    read_blob,
)

pytestmark = pytest.mark.integration

GIB = 1024 * 1024 * 1024
# A server that buffers a blob in memory would peak above 1 GiB here.
MAX_SERVER_RSS = 512 * 1024 * 1024


def test_copy_three_layer_oci_image_round_trip(registry, skopeo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    img = make_oci_image(src, "latest", layers=[1500, 30_000, 200_000])
    assert len(img.layers) == 3
    ref = f"docker://{registry.host}/library/multi:1.0"

    skopeo("copy", "--preserve-digests", f"oci:{src}:latest", ref)

    raw = skopeo.inspect_raw(ref)
    assert digest_of(raw) == img.manifest_digest, (
        f"{registry.kind} served different manifest bytes:\n{raw!r}\nexpected\n"
        f"{img.manifest_bytes!r}"
    )
    assert raw == img.manifest_bytes

    # The same manifest must also be reachable by digest.
    by_digest = skopeo.inspect_raw(f"docker://{registry.host}/library/multi@{img.manifest_digest}")
    assert by_digest == img.manifest_bytes

    dst = tmp_path / "back"
    skopeo("copy", "--preserve-digests", ref, f"oci:{dst}:latest")
    assert_same_image(dst, src, img)


def test_copy_multi_arch_index_all(registry, skopeo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    idx = make_oci_index(src, "latest", platforms=[("amd64", "linux"), ("arm64", "linux")])
    ref = f"docker://{registry.host}/library/multiarch:1"

    skopeo("copy", "--all", "--preserve-digests", f"oci:{src}:latest", ref)

    raw = skopeo.inspect_raw(ref)
    assert raw == idx.index_bytes, f"{registry.kind} served index bytes {raw!r}"
    parsed = json.loads(raw)
    assert parsed["mediaType"] == MT_OCI_INDEX
    assert [m["digest"] for m in parsed["manifests"]] == idx.child_digests
    assert [(m["platform"]["architecture"], m["platform"]["os"]) for m in parsed["manifests"]] == [
        ("amd64", "linux"),
        ("arm64", "linux"),
    ]

    # Each child is individually fetchable by digest, byte-identical.
    for child in idx.children:
        child_raw = skopeo.inspect_raw(
            f"docker://{registry.host}/library/multiarch@{child.manifest_digest}"
        )
        assert child_raw == child.manifest_bytes
        assert json.loads(child_raw)["mediaType"] == MT_OCI_MANIFEST

    dst = tmp_path / "back"
    skopeo("copy", "--all", "--preserve-digests", ref, f"oci:{dst}:latest")
    assert oci_ref_digest(dst, "latest") == idx.index_digest
    expected = {idx.index_digest, *idx.child_digests, *idx.blob_digests}
    assert layout_blob_digests(dst) == expected
    assert read_blob(dst, idx.index_digest) == idx.index_bytes


def test_copy_docker_schema2(registry, skopeo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    img = make_oci_image(src, "latest", layers=[4096, 8192])
    ref = f"docker://{registry.host}/library/v2s2:latest"

    skopeo("copy", "--format", "v2s2", f"oci:{src}:latest", ref)

    raw = skopeo.inspect_raw(ref)
    manifest = json.loads(raw)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == MT_DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == MT_DOCKER_CONFIG
    assert manifest["config"]["digest"] == img.config_digest
    assert [layer["digest"] for layer in manifest["layers"]] == img.layer_digests
    assert {layer["mediaType"] for layer in manifest["layers"]} == {MT_DOCKER_LAYER_GZIP}

    # Fetch by digest: the registry must serve the bytes it was given.
    by_digest = skopeo.inspect_raw(f"docker://{registry.host}/library/v2s2@{digest_of(raw)}")
    assert by_digest == raw

    dst = tmp_path / "back"
    skopeo("copy", "--preserve-digests", ref, f"dir:{dst}")
    assert dir_transport_manifest(dst) == raw
    assert dir_transport_blob_digests(dst) == set(img.blob_digests)


@pytest.mark.slow
def test_copy_one_gib_layer(registry, skopeo, scratch: Path) -> None:
    src = scratch / "src"
    img = make_oci_image(src, "latest", layers=[GIB])
    (layer,) = img.layers
    assert layer.media_type == MT_OCI_LAYER_TAR
    assert layer.size > GIB
    ref = f"docker://{registry.host}/big/layer:1g"
    try:
        skopeo("copy", "--preserve-digests", f"oci:{src}:latest", ref)
        raw = skopeo.inspect_raw(ref)
        assert raw == img.manifest_bytes
        # Free the source before pulling so peak disk use stays ~3 GiB.
        shutil.rmtree(src)

        dst = scratch / "back"
        skopeo("copy", "--preserve-digests", ref, f"dir:{dst}")
        pulled = dst / layer.digest.split(":", 1)[1]
        assert pulled.stat().st_size == layer.size
        assert file_digest(pulled) == layer.digest
        assert json.loads(dir_transport_manifest(dst))["layers"][0]["digest"] == layer.digest
        # The server streamed the GiB both ways instead of buffering it.
        peak = registry.peak_rss()
        print(f"{registry.kind} peak RSS after 1 GiB up+down: {peak / 2**20:.0f} MiB")
        assert peak < MAX_SERVER_RSS, f"{registry.kind} peak RSS {peak / 2**20:.0f} MiB"
    finally:
        # Don't leave 2+ GiB per run in pytest's retained basetemp dirs.
        shutil.rmtree(scratch, ignore_errors=True)
        registry.stop()
        shutil.rmtree(registry.root, ignore_errors=True)


def test_list_tags(registry, skopeo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_oci_image(src, "latest", layers=[512])
    tags = ["1.0", "1.1", "latest"]
    for tag in tags:
        skopeo(
            "copy",
            "--preserve-digests",
            f"oci:{src}:latest",
            f"docker://{registry.host}/team/app:{tag}",
        )
    # A second repository must not leak into the first one's listing.
    skopeo(
        "copy", "--preserve-digests", f"oci:{src}:latest", f"docker://{registry.host}/team/other:9"
    )

    listed = skopeo.list_tags(f"docker://{registry.host}/team/app")
    assert sorted(listed) == sorted(tags)
    assert len(listed) == len(set(listed))
    assert skopeo.list_tags(f"docker://{registry.host}/team/other") == ["9"]


def test_inspect_reports_platform_and_layers(registry, skopeo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    # arm64 on purpose: the host is amd64, so the value must come from the config blob.
    img = make_oci_image(src, "latest", layers=[700, 900], arch="arm64", os="linux")
    ref = f"docker://{registry.host}/library/inspectme:v1"
    skopeo("copy", "--preserve-digests", f"oci:{src}:latest", ref)

    info = skopeo.inspect(ref)
    assert info["Digest"] == img.manifest_digest
    assert info["Architecture"] == "arm64"
    assert info["Os"] == "linux"
    assert info["Layers"] == img.layer_digests
    assert info["RepoTags"] == ["v1"]
    assert info["Name"] == f"{registry.host}/library/inspectme"


def test_delete_tag(registry, skopeo, tmp_path: Path) -> None:
    keep_src = tmp_path / "keep"
    gone_src = tmp_path / "gone"
    keep = make_oci_image(keep_src, "latest", layers=[600])
    gone = make_oci_image(gone_src, "latest", layers=[800])
    assert keep.manifest_digest != gone.manifest_digest
    base = f"docker://{registry.host}/library/deleteme"
    skopeo("copy", "--preserve-digests", f"oci:{keep_src}:latest", f"{base}:keep")
    skopeo("copy", "--preserve-digests", f"oci:{gone_src}:latest", f"{base}:gone")
    assert sorted(skopeo.list_tags(base)) == ["gone", "keep"]

    skopeo("delete", f"{base}:gone")

    proc = skopeo("inspect", "--raw", f"{base}:gone", check=False)
    assert proc.returncode != 0, f"{registry.kind} still serves a deleted manifest: {proc.stdout}"
    assert "manifest unknown" in proc.stderr.lower(), proc.stderr
    proc = skopeo("inspect", "--raw", f"{base}@{gone.manifest_digest}", check=False)
    assert proc.returncode != 0, f"{registry.kind} still serves a deleted manifest by digest"
    assert "manifest unknown" in proc.stderr.lower(), proc.stderr

    assert skopeo.list_tags(base) == ["keep"]
    assert skopeo.inspect_raw(f"{base}:keep") == keep.manifest_bytes


def test_cross_repository_copy_mounts_blobs(registry, skopeo, tmp_path: Path) -> None:
    """docker:// -> docker:// on the same registry: skopeo mounts blobs from the source repo
    (POST ...?mount=&from=) and the target repo must then serve them as its own."""
    src = tmp_path / "src"
    img = make_oci_image(src, "latest", layers=[2500, 3500])
    h = registry.host
    skopeo("copy", "--preserve-digests", f"oci:{src}:latest", f"docker://{h}/team/origin:1")
    skopeo(
        "copy", "--preserve-digests", f"docker://{h}/team/origin:1", f"docker://{h}/team/mirror:1"
    )

    assert skopeo.inspect_raw(f"docker://{h}/team/mirror:1") == img.manifest_bytes
    dst = tmp_path / "back"
    skopeo("copy", "--preserve-digests", f"docker://{h}/team/mirror:1", f"dir:{dst}")
    assert dir_transport_manifest(dst) == img.manifest_bytes
    assert dir_transport_blob_digests(dst) == set(img.blob_digests)
    # The mirror repository links every blob itself (Distribution's _layers links).
    repo = registry.root / "docker" / "registry" / "v2" / "repositories" / "team" / "mirror"
    for d in img.blob_digests:
        link = repo / "_layers" / "sha256" / d.split(":")[1] / "link"
        assert link.is_file() and link.read_bytes() == d.encode(), link


def test_manifest_is_scoped_to_its_repository(registry, skopeo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    img = make_oci_image(src, "latest", layers=[900])
    h = registry.host
    skopeo("copy", "--preserve-digests", f"oci:{src}:latest", f"docker://{h}/scope/a:1")
    # Something must exist in scope/b so the failure is about the manifest, not the repo.
    other = make_oci_image(tmp_path / "other", "latest", layers=[901])
    skopeo(
        "copy", "--preserve-digests", f"oci:{tmp_path / 'other'}:latest", f"docker://{h}/scope/b:1"
    )
    assert skopeo.inspect_raw(f"docker://{h}/scope/b:1") == other.manifest_bytes

    proc = skopeo("inspect", "--raw", f"docker://{h}/scope/b@{img.manifest_digest}", check=False)
    assert proc.returncode != 0, f"{registry.kind} served scope/a's manifest from scope/b"
    assert "manifest unknown" in proc.stderr.lower(), proc.stderr
    proc = skopeo("inspect", "--raw", f"docker://{h}/scope/b:nope", check=False)
    assert proc.returncode != 0
    assert "manifest unknown" in proc.stderr.lower(), proc.stderr


def test_zstd_layers(registry, skopeo, tmp_path: Path) -> None:
    """skopeo recompresses uncompressed layers as zstd; the registry stores any layer type."""
    src = tmp_path / "src"
    img = make_oci_image(src, "latest", layers=[7000, 8000], layer_media_type=MT_OCI_LAYER_TAR)
    ref = f"docker://{registry.host}/comp/zstd:1"
    skopeo("copy", "--dest-compress-format", "zstd", f"oci:{src}:latest", ref)

    raw = skopeo.inspect_raw(ref)
    manifest = json.loads(raw)
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+zstd"
    ] * 2
    assert manifest["config"]["digest"] == img.config_digest
    layer_digests = [layer["digest"] for layer in manifest["layers"]]

    dst = tmp_path / "back"
    skopeo("copy", "--preserve-digests", ref, f"dir:{dst}")
    assert dir_transport_manifest(dst) == raw
    assert dir_transport_blob_digests(dst) == {img.config_digest, *layer_digests}
    for d in layer_digests:
        # zstd frame magic number
        assert (dst / d.split(":")[1]).read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
