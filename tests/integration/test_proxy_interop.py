"""fastreg as a pull-through cache of Distribution 2.8 (`docker-registry` with htpasswd), with
skopeo: copies through the mirror byte-identical, pushes refused, the upstream stopped, and
concurrent cold pulls counted in the upstream's access log.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.auth.tokens import write_htpasswd
from tests.integration.test_process import start_fastreg
from tests.redis_server import RedisServer, redis_server  # noqa: F401 - fixture

from .conftest import ServerFactory, ServerProcess, Skopeo, SkopeoError, token_auth
from .images import file_digest, make_oci_image, oci_ref_digest

pytestmark = pytest.mark.integration

CREDS = "alice:alice-pw"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def upstream(distribution_server: ServerFactory, tmp_path: Path) -> ServerProcess:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"})
    return distribution_server(
        tmp_path / "upstream", {"auth": {"htpasswd": {"realm": "upstream", "path": htpasswd}}}
    )


@pytest.fixture
def mirror(fastreg_server: ServerFactory, upstream: ServerProcess, tmp_path: Path) -> ServerProcess:
    return fastreg_server(tmp_path / "mirror", {"proxy": {
        "remoteurl": upstream.url, "username": "alice", "password": "alice-pw"}})  # fmt: skip


def push(skopeo: Skopeo, upstream: ServerProcess, tmp_path: Path, ref: str,
         layers: list[int]) -> str:  # fmt: skip
    """An OCI image pushed to the upstream as ``ref``; its manifest digest there."""
    src = tmp_path / f"src-{ref.replace('/', '-').replace(':', '-')}"
    make_oci_image(src, "latest", layers=layers)
    skopeo("copy", "--dest-creds", CREDS, f"oci:{src}:latest", f"docker://{upstream.host}/{ref}")
    return oci_ref_digest(src, "latest")


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"})  # fmt: skip
    try:
        with OPENER.open(request, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_skopeo_through_the_mirror_is_byte_identical(
    skopeo: Skopeo, upstream: ServerProcess, mirror: ServerProcess, tmp_path: Path
) -> None:
    push(skopeo, upstream, tmp_path, "team/app:v1", [1500, 300_000, 2_000_000])
    direct, through, again = tmp_path / "direct", tmp_path / "through", tmp_path / "again"
    skopeo("copy", "--src-creds", CREDS, f"docker://{upstream.host}/team/app:v1", f"dir:{direct}")
    skopeo("copy", f"docker://{mirror.host}/team/app:v1", f"dir:{through}")
    assert files(through) == files(direct)
    skopeo("copy", f"docker://{mirror.host}/team/app:v1", f"dir:{again}")  # now from the cache
    assert files(again) == files(direct)
    for name in files(direct):
        if name not in ("manifest.json", "version"):
            assert file_digest(direct / name) == f"sha256:{name}"
    assert skopeo.list_tags(f"docker://{mirror.host}/team/app") == ["v1"]


def test_pushes_to_the_mirror_are_unsupported(
    skopeo: Skopeo, mirror: ServerProcess, tmp_path: Path
) -> None:
    make_oci_image(tmp_path / "src", "latest", layers=[1000])
    with pytest.raises(SkopeoError):
        skopeo("copy", f"oci:{tmp_path / 'src'}:latest", f"docker://{mirror.host}/team/app:v1")
    status, _, body = get(f"{mirror.url}/v2/team/app/blobs/uploads/", "POST")
    assert status == 405 and json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"


def test_upstream_stopped_serves_the_cache(
    skopeo: Skopeo, upstream: ServerProcess, mirror: ServerProcess, tmp_path: Path
) -> None:
    digest = push(skopeo, upstream, tmp_path, "team/app:v1", [1500, 40_000])
    push(skopeo, upstream, tmp_path, "team/app:v2", [1600])
    skopeo("copy", f"docker://{mirror.host}/team/app:v1", f"dir:{tmp_path / 'warm'}")
    upstream.stop()
    skopeo("copy", f"docker://{mirror.host}/team/app:v1", f"dir:{tmp_path / 'by-tag'}")
    skopeo("copy", f"docker://{mirror.host}/team/app@{digest}", f"dir:{tmp_path / 'by-digest'}")
    assert files(tmp_path / "by-tag") == files(tmp_path / "warm") == files(tmp_path / "by-digest")
    status, headers, _ = get(f"{mirror.url}/v2/team/app/manifests/v1")
    assert status == 200 and headers["Warning"].startswith("110 ")
    with pytest.raises(SkopeoError):
        skopeo("copy", f"docker://{mirror.host}/team/app:v2", f"dir:{tmp_path / 'cold'}")
    status, _, body = get(f"{mirror.url}/v2/team/app/manifests/v2")
    assert status == 503 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"


def test_concurrent_cold_pulls_make_one_upstream_get(
    skopeo: Skopeo, upstream: ServerProcess, mirror: ServerProcess, tmp_path: Path
) -> None:
    push(skopeo, upstream, tmp_path, "team/big:v1", [32 * 1024 * 1024])
    _, _, raw = get(f"{mirror.url}/v2/team/big/manifests/v1")
    layer = json.loads(raw)["layers"][0]
    url = f"{mirror.url}/v2/team/big/blobs/{layer['digest']}"
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: get(url), range(8)))
    assert all(status == 200 and len(body) == layer["size"] for status, _, body in results)
    served = re.findall(
        rf'"GET /v2/team/big/blobs/{layer["digest"]} HTTP/1.1" 200 ', upstream.output()
    )
    assert len(served) == 1, upstream.output()[-3000:]


def test_token_auth_upstream(
    skopeo: Skopeo,
    distribution_server: ServerFactory,
    fastreg_server: ServerFactory,
    token_server: str,
    issuer_files: dict[str, str],
    tmp_path: Path,
) -> None:
    """The Docker Hub shape: Bearer challenge, realm, service, scope; tokens from fastreg's issuer."""
    upstream = distribution_server(tmp_path / "upstream", token_auth(
        token_server, issuer_files["cert"]))
    mirror = fastreg_server(tmp_path / "mirror", {"proxy": {
        "remoteurl": upstream.url, "username": "alice", "password": "alice-pw"}})  # fmt: skip
    push(skopeo, upstream, tmp_path, "alice/app:v1", [1500, 100_000])
    direct, through = tmp_path / "direct", tmp_path / "through"
    skopeo("copy", "--src-creds", CREDS, f"docker://{upstream.host}/alice/app:v1", f"dir:{direct}")
    skopeo("copy", f"docker://{mirror.host}/alice/app:v1", f"dir:{through}")
    assert files(through) == files(direct)


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_cold_pulls_of_a_big_blob_fetch_it_once(
    skopeo: Skopeo, upstream: ServerProcess, tmp_path: Path, redis_server: RedisServer,  # noqa: F811
    workers: int,
) -> None:
    """8 clients on one cold 256 MiB layer: one GET upstream (with `--workers 2` through the
    Redis lock), every client byte-identical with the right digest."""
    push(skopeo, upstream, tmp_path, "team/huge:v1", [256 * 1024 * 1024])
    extra: dict = {"proxy": {"remoteurl": upstream.url, "username": "alice", "password": "alice-pw"}}
    if workers == 2:
        extra["redis"] = {"addr": redis_server.addr}
    mirror = start_fastreg(tmp_path / "mirror", tmp_path / "w", "--workers", str(workers), extra=extra)
    try:
        _, _, raw = get(f"{mirror.url}/v2/team/huge/manifests/v1")
        layer = json.loads(raw)["layers"][0]
        url = f"{mirror.url}/v2/team/huge/blobs/{layer['digest']}"
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: digest_of(url), range(8)))
    finally:
        mirror.stop()
    assert all(r == (200, layer["size"], layer["digest"]) for r in results), results
    served = re.findall(
        rf'"GET /v2/team/huge/blobs/{layer["digest"]} HTTP/1.1" 200 ', upstream.output()
    )
    assert len(served) == 1, upstream.output()[-3000:]


def digest_of(url: str) -> tuple[int, int, str]:
    """Status, length and sha256 of a body, read in 1 MiB pieces (never held whole)."""
    with OPENER.open(urllib.request.Request(url), timeout=120) as resp:
        h, n = hashlib.sha256(), 0
        while chunk := resp.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
        return resp.status, n, f"sha256:{h.hexdigest()}"
