"""Build OCI image layouts on disk in pure Python (no network, no container tools).

The layouts written here are consumed by skopeo through the ``oci:DIR:REF``
transport. Every helper returns the digests it wrote so tests can compare what
comes back from a registry byte for byte.

Layout written (OCI image-layout spec 1.0)::

    DIR/oci-layout                 {"imageLayoutVersion": "1.0.0"}
    DIR/index.json                 top-level index; one entry per ref
    DIR/blobs/sha256/<hex>         content-addressed blobs

Small layers are real gzip'd tarballs (``tarfile`` + ``gzip``) held in memory.
Big layers (``bytes`` is not given, only a size above ``STREAM_THRESHOLD``) are
written as *uncompressed* tar (``application/vnd.oci.image.layer.v1.tar``)
streamed to disk while hashing, so a 1 GiB layer never sits in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

OCI_LAYOUT_VERSION = "1.0.0"

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

REF_ANNOTATION = "org.opencontainers.image.ref.name"

# Layers given as a size larger than this are streamed as uncompressed tar.
STREAM_THRESHOLD = 64 * 1024 * 1024
_CHUNK = 1024 * 1024
_FIXED_MTIME = 1_700_000_000  # deterministic tar headers


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_of(data: bytes) -> str:
    return "sha256:" + sha256_hex(data)


def file_digest(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


@dataclass
class LayerInfo:
    digest: str  # digest of the blob as stored (compressed if gzip)
    diff_id: str  # digest of the uncompressed tar
    size: int
    media_type: str


@dataclass
class ImageInfo:
    """What :func:`make_oci_image` wrote."""

    layout_dir: Path
    ref: str
    manifest_digest: str
    manifest_bytes: bytes
    config_digest: str
    config_bytes: bytes
    layers: list[LayerInfo]
    arch: str
    os: str

    @property
    def layer_digests(self) -> list[str]:
        return [layer.digest for layer in self.layers]

    @property
    def blob_digests(self) -> list[str]:
        """Config first, then layers (in manifest order)."""
        return [self.config_digest, *self.layer_digests]

    @property
    def descriptor(self) -> dict:
        return {
            "mediaType": MT_OCI_MANIFEST,
            "digest": self.manifest_digest,
            "size": len(self.manifest_bytes),
        }


@dataclass
class IndexInfo:
    """What :func:`make_oci_index` wrote."""

    layout_dir: Path
    ref: str
    index_digest: str
    index_bytes: bytes
    children: list[ImageInfo] = field(default_factory=list)

    @property
    def child_digests(self) -> list[str]:
        return [c.manifest_digest for c in self.children]

    @property
    def blob_digests(self) -> list[str]:
        out: list[str] = []
        for c in self.children:
            for d in c.blob_digests:
                if d not in out:
                    out.append(d)
        return out


# --------------------------------------------------------------------------- layout


def _blobs_dir(layout: Path) -> Path:
    d = layout / "blobs" / "sha256"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _init_layout(layout: Path) -> None:
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    if not (layout / "index.json").exists():
        _write_index_json(layout, [])
    _blobs_dir(layout)


def _write_index_json(layout: Path, manifests: list[dict]) -> None:
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests}
    (layout / "index.json").write_text(json.dumps(index, indent=2))


def _add_ref(layout: Path, descriptor: dict, ref: str) -> None:
    """Point ``ref`` at ``descriptor`` in the layout's top-level index.json."""
    index = json.loads((layout / "index.json").read_text())
    manifests = [
        m for m in index.get("manifests", []) if m.get("annotations", {}).get(REF_ANNOTATION) != ref
    ]
    entry = dict(descriptor)
    entry["annotations"] = {REF_ANNOTATION: ref}
    manifests.append(entry)
    _write_index_json(layout, manifests)


def write_blob(layout: Path, data: bytes) -> str:
    digest = digest_of(data)
    path = _blobs_dir(layout) / digest.split(":", 1)[1]
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.rename(path)
    return digest


def read_blob(layout: str | os.PathLike[str], digest: str) -> bytes:
    algo, hexd = digest.split(":", 1)
    return (Path(layout) / "blobs" / algo / hexd).read_bytes()


def layout_blob_digests(layout: str | os.PathLike[str]) -> set[str]:
    """Every blob digest present in an OCI layout, verified by rehashing."""
    out: set[str] = set()
    root = Path(layout) / "blobs"
    for algo_dir in root.iterdir():
        for p in algo_dir.iterdir():
            d = f"{algo_dir.name}:{p.name}"
            actual = file_digest(p)
            if actual != d:
                raise AssertionError(f"blob {p} is corrupt: named {d}, content is {actual}")
            out.add(d)
    return out


# --------------------------------------------------------------------------- layers


def _tar_bytes(payload: bytes, name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        info.mtime = _FIXED_MTIME
        info.mode = 0o644
        tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _small_layer(layout: Path, payload: bytes, name: str, media_type: str) -> LayerInfo:
    tar = _tar_bytes(payload, name)
    diff_id = digest_of(tar)
    if media_type in (MT_OCI_LAYER_GZIP, MT_DOCKER_LAYER_GZIP):
        blob = gzip.compress(tar, compresslevel=1, mtime=0)
    elif media_type == MT_OCI_LAYER_TAR:
        blob = tar
    else:
        raise ValueError(f"unsupported layer media type {media_type}")
    digest = write_blob(layout, blob)
    return LayerInfo(digest=digest, diff_id=diff_id, size=len(blob), media_type=media_type)


def _streamed_tar_layer(layout: Path, size: int, name: str) -> LayerInfo:
    """Write an uncompressed tar holding ``size`` random bytes, hashing as we go."""
    blobs = _blobs_dir(layout)
    tmp = blobs / f".{name}.partial"
    h = hashlib.sha256()
    total = 0

    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = _FIXED_MTIME
    info.mode = 0o644
    header = info.tobuf(format=tarfile.PAX_FORMAT)

    with open(tmp, "wb") as f:

        def put(b: bytes) -> None:
            nonlocal total
            f.write(b)
            h.update(b)
            total += len(b)

        put(header)
        remaining = size
        while remaining:
            n = min(_CHUNK, remaining)
            put(os.urandom(n))
            remaining -= n
        # pad file data to a 512-byte block, then the two zero end blocks,
        # then pad to a full record like tarfile does.
        if size % tarfile.BLOCKSIZE:
            put(b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))
        put(b"\0" * (2 * tarfile.BLOCKSIZE))
        if total % tarfile.RECORDSIZE:
            put(b"\0" * (tarfile.RECORDSIZE - total % tarfile.RECORDSIZE))

    digest = "sha256:" + h.hexdigest()
    final = blobs / h.hexdigest()
    tmp.replace(final)
    return LayerInfo(digest=digest, diff_id=digest, size=total, media_type=MT_OCI_LAYER_TAR)


def _make_layers(
    layout: Path,
    layers: Sequence[bytes | int],
    layer_media_type: str | None,
) -> list[LayerInfo]:
    out: list[LayerInfo] = []
    for i, spec in enumerate(layers):
        name = f"layer{i}.bin"
        if isinstance(spec, (bytes, bytearray)):
            mt = layer_media_type or MT_OCI_LAYER_GZIP
            out.append(_small_layer(layout, bytes(spec), name, mt))
        elif isinstance(spec, int):
            if spec > STREAM_THRESHOLD:
                if layer_media_type not in (None, MT_OCI_LAYER_TAR):
                    raise ValueError("big layers are always written as uncompressed tar")
                out.append(_streamed_tar_layer(layout, spec, name))
            else:
                mt = layer_media_type or MT_OCI_LAYER_GZIP
                out.append(_small_layer(layout, os.urandom(spec), name, mt))
        else:
            raise TypeError(f"layer spec must be bytes or int, got {type(spec)!r}")
    return out


# --------------------------------------------------------------------------- images


def _build_image(
    layout: Path,
    layers: Sequence[bytes | int],
    arch: str,
    os_: str,
    layer_media_type: str | None,
    ref: str,
    labels: dict[str, str] | None = None,
) -> ImageInfo:
    layer_infos = _make_layers(layout, layers, layer_media_type)
    config_obj: dict = {
        "architecture": arch,
        "os": os_,
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": labels} if labels else {},
        "rootfs": {"type": "layers", "diff_ids": [li.diff_id for li in layer_infos]},
        "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": f"fastreg-test layer {i}"}
            for i in range(len(layer_infos))
        ],
    }
    config_bytes = json.dumps(config_obj, sort_keys=True).encode()
    config_digest = write_blob(layout, config_bytes)
    manifest_obj = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {
            "mediaType": MT_OCI_CONFIG,
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {"mediaType": li.media_type, "digest": li.digest, "size": li.size} for li in layer_infos
        ],
    }
    manifest_bytes = json.dumps(manifest_obj, indent=2).encode()
    manifest_digest = write_blob(layout, manifest_bytes)
    return ImageInfo(
        layout_dir=layout,
        ref=ref,
        manifest_digest=manifest_digest,
        manifest_bytes=manifest_bytes,
        config_digest=config_digest,
        config_bytes=config_bytes,
        layers=layer_infos,
        arch=arch,
        os=os_,
    )


def make_oci_image(
    dir: str | os.PathLike[str],
    ref: str = "latest",
    layers: Sequence[bytes | int] = (1024, 2048, 4096),
    arch: str = "amd64",
    os: str = "linux",
    layer_media_type: str | None = None,
    labels: dict[str, str] | None = None,
) -> ImageInfo:
    """Write a single-platform OCI image into the layout at ``dir`` under ``ref``.

    ``layers`` items are either raw file contents (``bytes``) or a size in bytes
    of random content. Sizes above ``STREAM_THRESHOLD`` produce an uncompressed
    tar layer streamed to disk; everything else is a gzip'd tar unless
    ``layer_media_type`` says otherwise.
    """
    layout = Path(dir)
    _init_layout(layout)
    img = _build_image(layout, layers, arch, os, layer_media_type, ref, labels)
    _add_ref(layout, img.descriptor, ref)
    return img


def make_oci_index(
    dir: str | os.PathLike[str],
    ref: str = "latest",
    platforms: Iterable[tuple[str, str]] = (("amd64", "linux"), ("arm64", "linux")),
    layers: Sequence[bytes | int] = (1024, 2048),
) -> IndexInfo:
    """Write a multi-arch OCI image index whose children are image manifests."""
    layout = Path(dir)
    _init_layout(layout)
    children: list[ImageInfo] = []
    entries: list[dict] = []
    for arch, os_ in platforms:
        img = _build_image(layout, layers, arch, os_, None, ref, {"platform": f"{os_}/{arch}"})
        children.append(img)
        entries.append({**img.descriptor, "platform": {"architecture": arch, "os": os_}})
    index_obj = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries}
    index_bytes = json.dumps(index_obj, indent=2).encode()
    index_digest = write_blob(layout, index_bytes)
    _add_ref(
        layout,
        {"mediaType": MT_OCI_INDEX, "digest": index_digest, "size": len(index_bytes)},
        ref,
    )
    return IndexInfo(
        layout_dir=layout,
        ref=ref,
        index_digest=index_digest,
        index_bytes=index_bytes,
        children=children,
    )


def oci_ref_digest(layout: str | os.PathLike[str], ref: str) -> str:
    """Digest the layout's top-level index.json assigns to ``ref``."""
    index = json.loads((Path(layout) / "index.json").read_text())
    for m in index.get("manifests", []):
        if m.get("annotations", {}).get(REF_ANNOTATION) == ref:
            return str(m["digest"])
    raise KeyError(f"ref {ref!r} not in {layout}/index.json: {index}")


def dir_transport_manifest(path: str | os.PathLike[str]) -> bytes:
    """The manifest bytes written by skopeo's ``dir:`` transport."""
    return (Path(path) / "manifest.json").read_bytes()


def dir_transport_blob_digests(path: str | os.PathLike[str]) -> set[str]:
    """Digests of the blobs written by skopeo's ``dir:`` transport, verified.

    The ``dir:`` transport names blob files by the hex digest (no algorithm
    prefix) next to ``manifest.json`` and ``version``.
    """
    out: set[str] = set()
    for p in Path(path).iterdir():
        if p.name in ("manifest.json", "version") or p.name.endswith(".manifest.json"):
            continue
        if p.name.endswith(".signature") or p.name.startswith("signature-"):
            continue
        d = "sha256:" + p.name
        actual = file_digest(p)
        if actual != d:
            raise AssertionError(f"blob {p} is corrupt: named {d}, content is {actual}")
        out.add(d)
    return out


def assert_same_image(copy: str | os.PathLike[str], src: str | os.PathLike[str], img: ImageInfo) -> None:
    """The OCI layout ``copy`` holds ``img`` (made in ``src``) as `latest`, byte for byte."""
    assert oci_ref_digest(copy, "latest") == img.manifest_digest
    assert layout_blob_digests(copy) == {img.manifest_digest, *img.blob_digests}
    for d in img.blob_digests:
        assert read_blob(copy, d) == read_blob(src, d)
