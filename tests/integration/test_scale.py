"""The scale-out set-up of deploy/scale, started by its own start.sh: SeaweedFS, Redis, three
fastreg backends (two workers each) and nginx balancing them round robin on 127.0.0.1.

What it must show: any request may land on any process. A chunked upload whose PATCHes go to
different backends completes; tags pushed through nginx are listed by every backend at once, even
after each backend has cached the list; a blob or manifest deleted through one backend is gone for
all of them at once, though each had it in the shared descriptor cache.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import REPO_ROOT, SERVERS_KEY, Skopeo
from tests.integration.images import (
    MT_OCI_CONFIG,
    MT_OCI_LAYER_GZIP,
    MT_OCI_MANIFEST,
    assert_same_image,
    make_oci_image,
)

pytestmark = [pytest.mark.integration, pytest.mark.s3]

SCALE = REPO_ROOT / "deploy" / "scale"
START_TIMEOUT = 120.0
MIB = 1024 * 1024


@dataclass
class Log:
    """One service's log, in the shape the conftest's failure report reads."""

    kind: str
    url: str
    log_path: Path

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class Scale:
    workdir: Path
    url: str  # nginx
    backends: dict[str, str]  # name -> URL
    logs: list[Log]

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).netloc

    def backend_log(self, name: str) -> str:
        return (self.workdir / name / "fastreg.log").read_text(errors="replace")


def _kill_leftovers(workdir: Path) -> None:
    """SIGKILL every process group start.sh recorded that stop.sh left alive."""
    state_file = workdir / "cluster.json"
    if not state_file.exists():
        return
    for service in json.loads(state_file.read_text()).get("services", {}).values():
        try:
            stat = Path(f"/proc/{service['pid']}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2 :].split()[19] == service.get("started"):
            try:
                os.killpg(int(service["pid"]), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module", params=["s3", "filesystem"])
def scale(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Scale]:
    """The set-up on SeaweedFS (what deploy/scale ships), and on a shared directory (--storage)."""
    workdir = tmp_path_factory.mktemp(f"scale-{request.param}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["FASTREG_PYTHON"] = sys.executable
    try:
        proc = subprocess.run(
            [str(SCALE / "start.sh"), str(workdir), "--port", "0", "--storage", request.param],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=START_TIMEOUT, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.fail(f"start.sh failed ({proc.returncode}):\n{proc.stderr}", pytrace=False)
        state = json.loads((workdir / "cluster.json").read_text())
        assert proc.stdout.splitlines()[-1] == state["url"], proc.stdout
        backends = {b["name"]: b["url"] for b in state["backends"]}
        logs = [Log(name, state["url"], Path(s["log"])) for name, s in state["services"].items()]
        logs.append(Log("nginx access", state["url"], workdir / "nginx" / "access.log"))
        yield Scale(workdir, state["url"], backends, logs)
    finally:
        subprocess.run(
            [str(SCALE / "stop.sh"), str(workdir)], env=env, stdin=subprocess.DEVNULL,
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        _kill_leftovers(workdir)


@pytest.fixture(autouse=True)
def _report_logs(scale: Scale, request: pytest.FixtureRequest) -> None:
    """A failing test prints the logs of every service (conftest's report hook)."""
    request.node.stash.setdefault(SERVERS_KEY, []).extend(scale.logs)


# --------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


def call(
    base: str, method: str, target: str, body: bytes | None = None, **headers: str
) -> Reply:
    """One request on a fresh connection; ``target`` is a path or an absolute URL."""
    url = urllib.parse.urljoin(base, target)
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=60)
    try:
        fields = {k.replace("_", "-"): v for k, v in headers.items()}
        conn.request(method, target_of(url), body=body, headers=fields)
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def target_of(url: str) -> str:
    """The path and query of an absolute URL (to send it to a backend directly)."""
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = "&".join(filter(None, (parts.query, urllib.parse.urlencode(params))))
    return urllib.parse.urlunsplit(parts._replace(query=query))


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(base: str, name: str, data: bytes) -> str:
    d = digest(data)
    reply = call(base, "POST", f"/v2/{name}/blobs/uploads/?digest={d}", data,
                 Content_Type="application/octet-stream")  # fmt: skip
    assert reply.status == 201, reply
    return d


def push_image(base: str, name: str, tag: str, payload: bytes) -> tuple[str, str]:
    """A one-layer image tagged ``tag``; returns (manifest digest, layer digest)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "note": tag}).encode()
    layer = push_blob(base, name, payload)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": push_blob(base, name, config),
                   "size": len(config)},
        "layers": [{"mediaType": MT_OCI_LAYER_GZIP, "digest": layer, "size": len(payload)}],
    }).encode()  # fmt: skip
    reply = call(base, "PUT", f"/v2/{name}/manifests/{tag}", manifest,
                 Content_Type=MT_OCI_MANIFEST)  # fmt: skip
    assert reply.status == 201, reply
    assert reply.header("Docker-Content-Digest") == digest(manifest)
    return digest(manifest), layer


def head_manifest(base: str, name: str, reference: str) -> Reply:
    # by tag, an OCI manifest is found only by a client that accepts it (as in Distribution)
    return call(base, "HEAD", f"/v2/{name}/manifests/{reference}", Accept=MT_OCI_MANIFEST)


def tags_of(base: str, name: str) -> list[str] | int:
    reply = call(base, "GET", f"/v2/{name}/tags/list")
    return list(json.loads(reply.body)["tags"] or []) if reply.status == 200 else reply.status


# --------------------------------------------------------------------------- tests


def test_chunked_upload_spread_over_backends(scale: Scale) -> None:
    name = "scale/chunked"
    data = os.urandom(14 * MIB + 12_345)
    # small PATCHes (below S3's 5 MiB part minimum) and one above it, cut at odd offsets
    cuts = [0, 700_001, 2 * MIB, 3 * MIB + 7, 9 * MIB + 11, 10 * MIB, 12 * MIB + 5, len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(cuts)]
    chunks, last = pieces[:-1], pieces[-1]  # PATCHes, then the final PUT carries the rest

    opened = call(scale.url, "POST", f"/v2/{name}/blobs/uploads/")
    assert opened.status == 202, opened
    location = opened.header("Location")
    # behind nginx, Location names the address the client used, not a backend's
    assert location.startswith(f"{scale.url}/v2/{name}/blobs/uploads/"), location
    upload_id = opened.header("Docker-Upload-UUID")
    assert upload_id and upload_id in location

    served = []
    offset = 0
    for chunk in chunks:
        reply = call(scale.url, "PATCH", location, chunk, Content_Type="application/octet-stream",
                     Content_Range=f"{offset}-{offset + len(chunk) - 1}")  # fmt: skip
        assert reply.status == 202, (reply, reply.body)
        offset += len(chunk)
        assert reply.header("Range") == f"0-{offset - 1}"
        served.append(reply.header("X-Served-By"))
        location = reply.header("Location")
        assert location.startswith(scale.url), location
        # every backend sees the session at its new offset at once
        for backend in scale.backends.values():
            status = call(backend, "GET", target_of(location))
            assert (status.status, status.header("Range")) == (204, f"0-{offset - 1}"), backend

    addresses = {urllib.parse.urlsplit(u).netloc for u in scale.backends.values()}
    assert set(served) == addresses, f"PATCHes went to {served}, backends are {addresses}"
    # and the backends say so themselves: each logged PATCHes of this upload
    for backend in scale.backends:
        lines = [json.loads(line) for line in scale.backend_log(backend).splitlines()
                 if upload_id in line and '"PATCH"' in line]  # fmt: skip
        assert lines and {line["http.response.status"] for line in lines} == {202}, backend

    final = call(scale.url, "PUT", with_query(location, digest=digest(data)), last,
                 Content_Type="application/octet-stream")  # fmt: skip
    assert final.status == 201, (final, final.body)
    assert final.header("Docker-Content-Digest") == digest(data)
    assert final.header("Location").startswith(scale.url)
    for base in (scale.url, *scale.backends.values()):
        got = call(base, "GET", f"/v2/{name}/blobs/{digest(data)}")
        assert got.status == 200 and digest(got.body) == digest(data), base
    for base in scale.backends.values():  # the session is gone
        assert call(base, "GET", f"/v2/{name}/blobs/uploads/{upload_id}").status == 404


def test_tags_consistent_on_every_backend(scale: Scale) -> None:
    name = "scale/tags"
    pushed = {"v0": push_image(scale.url, name, "v0", b"layer v0")[0]}
    for base in scale.backends.values():  # every backend has the list cached now
        assert tags_of(base, name) == ["v0"]
    for i in range(1, 6):
        tag = f"v{i}"
        pushed[tag] = push_image(scale.url, name, tag, f"layer {tag}".encode())[0]
        for backend, base in scale.backends.items():
            assert tags_of(base, name) == sorted(pushed), f"{backend} after pushing {tag}"
    # moving a tag through one backend is seen by the others at once
    first, second, third = scale.backends.values()
    moved = push_image(first, name, "v0", b"layer v0, second edition")[0]
    assert moved != pushed["v0"]
    for base in (second, third, scale.url):
        reply = head_manifest(base, name, "v0")
        assert (reply.status, reply.header("Docker-Content-Digest")) == (200, moved), base
    # a tag deleted through one backend is gone from every list
    assert call(third, "DELETE", f"/v2/{name}/manifests/v3").status == 202
    for base in (first, second, third):
        assert tags_of(base, name) == ["v0", "v1", "v2", "v4", "v5"], base
        assert head_manifest(base, name, "v3").status == 404
        assert head_manifest(base, name, pushed['v3']).status == 200


def test_deletes_seen_by_every_backend(scale: Scale) -> None:
    name = "scale/deletes"
    first, second, third = scale.backends.values()
    kept, _ = push_image(scale.url, name, "kept", b"kept layer")
    doomed, layer = push_image(scale.url, name, "doomed", b"doomed layer")
    for base in scale.backends.values():  # descriptors, links and the tag list cached everywhere
        assert call(base, "HEAD", f"/v2/{name}/blobs/{layer}").status == 200
        assert head_manifest(base, name, "doomed").status == 200
        assert tags_of(base, name) == ["doomed", "kept"]

    assert call(first, "DELETE", f"/v2/{name}/blobs/{layer}").status == 202
    for base in (second, third, first, scale.url):
        assert call(base, "HEAD", f"/v2/{name}/blobs/{layer}").status == 404, base
        assert call(base, "GET", f"/v2/{name}/blobs/{layer}").status == 404, base

    assert call(second, "DELETE", f"/v2/{name}/manifests/{doomed}").status == 202
    for base in (third, first, second, scale.url):
        assert head_manifest(base, name, doomed).status == 404, base
        assert head_manifest(base, name, "doomed").status == 404, base
        assert tags_of(base, name) == ["kept"], base
        assert head_manifest(base, name, kept).status == 200, base


def test_skopeo_round_trip_through_nginx(scale: Scale, skopeo: Skopeo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    img = make_oci_image(src, "latest", layers=[1500, 300_000, 3 * MIB, 64_000])
    ref = f"docker://{scale.host}/scale/skopeo:1.0"
    skopeo("copy", "--preserve-digests", f"oci:{src}:latest", ref)

    for base in scale.backends.values():
        host = urllib.parse.urlsplit(base).netloc
        assert skopeo.inspect_raw(f"docker://{host}/scale/skopeo:1.0") == img.manifest_bytes
        for blob in img.blob_digests:
            assert call(base, "HEAD", f"/v2/scale/skopeo/blobs/{blob}").status == 200

    dst = tmp_path / "back"
    skopeo("copy", "--preserve-digests", ref, f"oci:{dst}:latest")
    assert_same_image(dst, src, img)
    # skopeo's requests were spread over all three backends
    access = (scale.workdir / "nginx" / "access.log").read_text()
    upstreams = {line.split("upstream=")[1].split()[0] for line in access.splitlines()
                 if "/v2/scale/skopeo/" in line}  # fmt: skip
    assert upstreams == {urllib.parse.urlsplit(u).netloc for u in scale.backends.values()}
