"""Real container clients pulling through fastreg as a Docker Hub mirror: the Docker daemon
(`--registry-mirror`), containerd's `ctr` (`hosts.toml`, so the `ns` parameter is sent) and
podman (`registries.conf`). Each thinks it pulls from docker.io; the upstream playing Docker Hub
is Distribution 2.8 (`docker-registry`) with htpasswd or with token auth (the Docker Hub shape:
Bearer challenge, realm, scope; tokens from fastreg's own issuer), holding an OCI image under
`library/` (what `docker pull NAME` asks for) and a Docker schema 2 image under `org/app`.

What each client ends up with is compared with the upstream's bytes: the manifest digest, the
config (the image ID) and every layer (compressed digests where the client keeps them, diff IDs
where it only keeps the unpacked layers); the mirror's storage holds every blob byte for byte.
A second pull, with the upstream stopped, is served from the mirror's cache (a stale tag).

The mirror is configured two ways: Distribution's top-level `proxy.remoteurl` (names pass
through as-is), and fastreg's `proxy.upstreams` with a `docker.io` namespace (routed by the `ns`
parameter or the name's first component).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.auth.tokens import write_htpasswd

from .clients import Containerd, Dockerd, Podman, containerd, dockerd, podman, rootful
from .conftest import ServerFactory, ServerProcess, Skopeo, token_auth
from .images import (
    MT_DOCKER_LAYER_GZIP,
    digest_of,
    layout_blob_digests,
    make_oci_image,
    read_blob,
)

pytestmark = pytest.mark.integration

__all__ = ["containerd", "dockerd", "podman", "rootful"]  # the fixtures this module uses

CREDS = ("alice", "alice-pw")
BASE = "fastreg-it-base"  # `docker pull fastreg-it-base` is library/fastreg-it-base on Docker Hub
APP = "org/app"

# (upstream auth, mirror config shape): `remoteurl` is Distribution's single upstream;
# `upstreams` fastreg's list with a docker.io namespace and no default, which clients reach by
# containerd's `ns` parameter or a `docker.io/` name prefix; `both` adds the top-level default
# a Docker daemon needs: dockerd sends neither (its mirror URL may not carry a path)
SINGLE = [
    pytest.param(("htpasswd", "remoteurl"), id="htpasswd-remoteurl"),
    pytest.param(("token", "remoteurl"), id="token-remoteurl"),
]
ROUTED = [*SINGLE, pytest.param(("htpasswd", "upstreams"), id="htpasswd-upstreams")]
DOCKER = [*SINGLE, pytest.param(("htpasswd", "both"), id="htpasswd-default-and-upstreams")]


@dataclass
class Pushed:
    """An image as the upstream serves it: manifest bytes and every blob's bytes."""

    name: str  # on the upstream: library/fastreg-it-base, org/app
    tag: str
    manifest: bytes
    blobs: dict[str, bytes]  # config and layers, by digest

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    @property
    def parsed(self) -> dict:
        return dict(json.loads(self.manifest))

    @property
    def config_digest(self) -> str:
        return str(self.parsed["config"]["digest"])

    @property
    def config(self) -> bytes:
        return self.blobs[self.config_digest]

    @property
    def layer_digests(self) -> list[str]:
        return [layer["digest"] for layer in self.parsed["layers"]]

    @property
    def diff_ids(self) -> list[str]:
        return list(json.loads(self.config)["rootfs"]["diff_ids"])

    @property
    def hub_ref(self) -> str:
        """The reference a client that knows Docker Hub uses."""
        return f"docker.io/{self.name}:{self.tag}"


@dataclass
class Setup:
    hub: ServerProcess  # the upstream, as Docker Hub
    mirror: ServerProcess
    shape: str
    base: Pushed
    app: Pushed

    @property
    def images(self) -> tuple[Pushed, Pushed]:
        return self.base, self.app


def push(skopeo: Skopeo, hub: ServerProcess, tmp_path: Path, name: str, layers: list[int],
         docker_format: bool = False) -> Pushed:  # fmt: skip
    """Build an image, push it to ``hub`` as ``name:v1``, and read back what the hub serves."""
    src = tmp_path / f"src-{name.replace('/', '-')}"
    make_oci_image(src, "latest", layers=layers)
    creds = ":".join(CREDS)
    ref = f"docker://{hub.host}/{name}:v1"
    fmt = ["--format", "v2s2"] if docker_format else []
    skopeo("copy", *fmt, "--dest-creds", creds, f"oci:{src}:latest", ref)
    back = tmp_path / f"hub-{name.replace('/', '-')}"
    skopeo("copy", "--src-creds", creds, ref, f"dir:{back}")
    manifest = (back / "manifest.json").read_bytes()
    blobs = {f"sha256:{p.name}": p.read_bytes() for p in back.iterdir()
             if p.name not in ("manifest.json", "version")}  # fmt: skip
    image = Pushed(name, "v1", manifest, blobs)
    assert set(blobs) == {image.config_digest, *image.layer_digests}
    return image


@pytest.fixture
def setup(request: pytest.FixtureRequest, distribution_server: ServerFactory,
          fastreg_server: ServerFactory, skopeo: Skopeo, tmp_path: Path) -> Setup:  # fmt: skip
    auth, shape = request.param
    if auth == "htpasswd":
        htpasswd = write_htpasswd(tmp_path / "htpasswd", dict([CREDS]))
        hub_auth = {"auth": {"htpasswd": {"realm": "hub", "path": htpasswd}}}
    else:
        realm = request.getfixturevalue("token_server")
        hub_auth = token_auth(realm, request.getfixturevalue("issuer_files")["cert"])
    hub = distribution_server(tmp_path / "hub", hub_auth)
    upstream = {"remoteurl": hub.url, "username": CREDS[0], "password": CREDS[1]}
    routed = {"upstreams": [{"namespace": "docker.io", **upstream}]}
    proxy = {"remoteurl": upstream, "upstreams": routed, "both": {**upstream, **routed}}[shape]
    mirror = fastreg_server(tmp_path / "mirror", {"proxy": proxy})
    base = push(skopeo, hub, tmp_path, f"library/{BASE}", [1500, 300_000, 2_000_000])
    app = push(skopeo, hub, tmp_path, APP, [4000, 700_000], docker_format=True)
    assert json.loads(app.manifest)["layers"][0]["mediaType"] == MT_DOCKER_LAYER_GZIP
    return Setup(hub, mirror, shape, base, app)


def assert_cached(setup: Setup) -> None:
    """The mirror's storage holds the manifest and every blob of both images, byte for byte."""
    blobs = setup.mirror.root / "docker" / "registry" / "v2" / "blobs" / "sha256"
    for image in setup.images:
        for digest, data in {image.digest: image.manifest, **image.blobs}.items():
            hexd = digest.split(":", 1)[1]
            assert (blobs / hexd[:2] / hexd / "data").read_bytes() == data, digest


def pull_twice(setup: Setup, pull: Callable[[Pushed], object], forget: Callable[[Pushed], object],
               check: Callable[[Pushed, str], None]) -> None:  # fmt: skip
    """Pull and check both images; then stop the upstream, make the client forget them, and
    pull again: what comes now can only be the mirror's cache (tags served stale)."""
    for image in setup.images:
        pull(image)
        check(image, "first")
    assert_cached(setup)
    setup.hub.stop()
    for image in setup.images:
        forget(image)
        pull(image)
        check(image, "again")


# --------------------------------------------------------------------------- docker


def docker_name(image: Pushed) -> str:
    """How a Docker Hub user types it: no `library/`, no registry."""
    return f"{image.name.removeprefix('library/')}:{image.tag}"


def check_docker(docker: Dockerd, image: Pushed) -> None:
    name = docker_name(image)
    info = docker.inspect(name)
    assert info["Id"] == image.config_digest
    assert f"{name.split(':')[0]}@{image.digest}" in info["RepoDigests"]
    assert info["RootFS"]["Layers"] == image.diff_ids
    # `docker save`: the config as stored, and each layer as unpacked (its diff ID)
    with tarfile.open(fileobj=io.BytesIO(docker("save", name))) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        (entry,) = manifest
        assert tar.extractfile(entry["Config"]).read() == image.config  # type: ignore[union-attr]
        diff_ids = ["sha256:" + hashlib.sha256(tar.extractfile(layer).read()).hexdigest()  # type: ignore[union-attr]
                    for layer in entry["Layers"]]  # fmt: skip
    assert diff_ids == image.diff_ids
    # the compressed digest of each layer, as the daemon recorded it on download
    by_diff_id = docker.home / "data" / "image" / "vfs" / "distribution" / "v2metadata-by-diffid"
    for diff_id, digest in zip(image.diff_ids, image.layer_digests, strict=True):
        seen = json.loads((by_diff_id / "sha256" / diff_id.split(":")[1]).read_text())
        assert digest in {m["Digest"] for m in seen}


@pytest.mark.parametrize("setup", DOCKER, indirect=True)
def test_docker_daemon_pulls_through_the_mirror(
    setup: Setup, dockerd: Callable[[str], Dockerd]
) -> None:
    docker = dockerd(setup.mirror.host)
    pull_twice(setup, lambda image: docker("pull", docker_name(image)),
               lambda image: docker("rmi", docker_name(image)),
               lambda image, _: check_docker(docker, image))  # fmt: skip


# --------------------------------------------------------------------------- containerd


def check_ctr(ctr: Containerd, image: Pushed) -> None:
    assert ctr.image_digest(image.hub_ref) == image.digest
    assert ctr.content(image.digest) == image.manifest
    for digest, data in image.blobs.items():
        assert ctr.content(digest) == data, digest


@pytest.mark.parametrize("setup", ROUTED, indirect=True)
def test_containerd_pulls_through_the_mirror(
    setup: Setup, containerd: Callable[[str], Containerd]
) -> None:
    ctr = containerd(setup.mirror.host)

    def forget(image: Pushed) -> None:
        ctr("images", "rm", "--sync", image.hub_ref)
        ctr("content", "rm", image.digest, *image.blobs)

    # `ctr images pull` unpacks too: each layer's diff ID is checked
    pull_twice(setup, lambda image: ctr.pull(image.hub_ref), forget,
               lambda image, _: check_ctr(ctr, image))  # fmt: skip


# --------------------------------------------------------------------------- podman


def check_podman(pm: Podman, image: Pushed, out: Path) -> None:
    info = pm.inspect(image.hub_ref)
    assert "sha256:" + info["Id"] == image.config_digest
    assert info["Digest"] == image.digest
    assert info["RootFS"]["Layers"] == image.diff_ids
    # the compressed digest of each layer, as containers/storage recorded it on download
    layers = json.loads((pm.home / "root" / "vfs-layers" / "layers.json").read_text())
    compressed = {layer.get("diff-digest"): layer.get("compressed-diff-digest") for layer in layers}
    assert [compressed[d] for d in image.diff_ids] == image.layer_digests
    # saved, each layer (recompressed by podman, the config re-serialised) unpacks to the
    # upstream's diff ID
    pm("image", "save", "--format", "oci-dir", "-o", str(out), image.hub_ref)
    (entry,) = json.loads((out / "index.json").read_text())["manifests"]
    saved = json.loads(read_blob(out, entry["digest"]))
    layout_blob_digests(out)  # every saved blob rehashed
    unpacked = [digest_of(gzip.decompress(read_blob(out, layer["digest"])))
                for layer in saved["layers"]]  # fmt: skip
    assert unpacked == image.diff_ids


@pytest.mark.parametrize("setup", ROUTED, indirect=True)
def test_podman_pulls_through_the_mirror(
    setup: Setup, podman: Callable[..., Podman], tmp_path: Path
) -> None:
    # with `proxy.upstreams`, podman names the namespace as the mirror location's path
    pm = podman(setup.mirror.host, "/docker.io" if setup.shape == "upstreams" else "")
    pull_twice(setup, lambda image: pm.pull(image.hub_ref),
               lambda image: pm("rmi", image.hub_ref),
               lambda image, when: check_podman(
                   pm, image, tmp_path / f"{when}-{image.name.replace('/', '-')}"))  # fmt: skip
