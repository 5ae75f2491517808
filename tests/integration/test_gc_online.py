"""Online garbage collection against a real server process: a push loop and a GC loop together.

The pusher behaves like a real client (HEAD, upload what is missing, PUT the manifest) and keeps
re-using layers of images it deleted a moment ago, so the collector keeps parking blobs that
pushes are about to reference. Every PUT must answer 201 or a clean 400 MANIFEST_BLOB_UNKNOWN;
every image must pull whole after the collection it raced with; at the end every tag pulls whole
and nothing unreferenced is left.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from fastreg.registry.gc import GCOptions, collect
from fastreg.storage.filesystem import FilesystemDriver

DURATION = float(os.environ.get("FASTREG_GC_LOOP_SECONDS", "20"))
DELAY = 1.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def request(
    method: str, url: str, data: bytes | None = None, ctype: str = "", headers: bool = False
) -> Any:
    req = urllib.request.Request(url, data=data, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    req.add_header("Accept", f"{OCI_MANIFEST}, {OCI_INDEX}")
    try:
        with _OPENER.open(req, timeout=30) as resp:
            out = (resp.status, resp.read(), resp.headers)
    except urllib.error.HTTPError as e:
        out = (e.code, e.read(), e.headers)
    return out if headers else out[:2]


class Pusher:
    def __init__(self, base: str) -> None:
        self.base = base
        self.outcomes: dict[str, int] = {}

    def blob(self, name: str, data: bytes) -> None:
        d = sha256(data)
        if request("HEAD", f"{self.base}/v2/{name}/blobs/{d}")[0] == 200:
            return
        # POST then PUT (monolithic): Distribution 2.8 has no single-POST upload
        status, body, headers = request(
            "POST", f"{self.base}/v2/{name}/blobs/uploads/", b"", headers=True
        )
        assert status == 202, body
        location = urllib.parse.urljoin(self.base, headers["Location"])
        sep = "&" if "?" in location else "?"
        status, body = request(
            "PUT", f"{location}{sep}digest={d}", data, "application/octet-stream"
        )
        assert status == 201, body

    def push(self, name: str, tag: str, layers: list[bytes], config: bytes) -> str | None:
        for blob in (*layers, config):
            self.blob(name, blob)
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": _desc("application/vnd.oci.image.config.v1+json", config),
                "layers": [_desc("application/vnd.oci.image.layer.v1.tar", x) for x in layers],
            }
        ).encode()
        status, answer = request(
            "PUT", f"{self.base}/v2/{name}/manifests/{tag}", body, OCI_MANIFEST
        )
        if status == 201:
            self.outcomes["201"] = self.outcomes.get("201", 0) + 1
            return sha256(body)
        code = json.loads(answer)["errors"][0]["code"]
        assert (status, code) == (400, "MANIFEST_BLOB_UNKNOWN"), (status, answer)
        self.outcomes["400 MANIFEST_BLOB_UNKNOWN"] = (
            self.outcomes.get("400 MANIFEST_BLOB_UNKNOWN", 0) + 1
        )
        return None

    def pulls(self, name: str, ref: str) -> bool:
        status, raw = request("GET", f"{self.base}/v2/{name}/manifests/{ref}")
        if status != 200:
            return False
        m = json.loads(raw)
        for d in [m["config"]["digest"], *(x["digest"] for x in m["layers"])]:
            status, data = request("GET", f"{self.base}/v2/{name}/blobs/{d}")
            if status != 200 or sha256(data) != d:
                return False
        return True


def _desc(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


class Collector(threading.Thread):
    """Rounds of online GC from another process's point of view: its own driver on the root."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        self.round_done = threading.Event()
        self.rounds = self.deleted = self.restored = self.too_young = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._loop())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.round_done.set()

    async def _loop(self) -> None:
        driver = FilesystemDriver(str(self.root))
        try:
            while not self.stop.is_set():
                report = await collect(driver, GCOptions(delay=DELAY, verbose=False))
                self.rounds += 1
                self.deleted += report.blobs_deleted
                self.restored += report.restored
                self.too_young += report.too_young
                self.round_done.set()
                await asyncio.sleep(0.05)
        finally:
            await driver.close()


def test_push_loop_and_gc_loop(fastreg_server, tmp_path: Path) -> None:
    root = tmp_path / "root"
    server = fastreg_server(root)
    pusher = Pusher(server.url)
    gc = Collector(root)
    gc.start()
    current: dict[str, str] = {}
    retired: list[str] = []
    checked = 0
    pool: dict[str, list[bytes]] = {"loop/r0": [], "loop/r1": []}
    fresh: dict[str, bytes] = {}
    i = 0
    deadline = time.monotonic() + DURATION
    try:
        while time.monotonic() < deadline and gc.error is None:
            i += 1
            repo = f"loop/r{i % 2}"
            # a layer of an image deleted a moment ago: garbage the collector may be parking now
            reused = pool[repo][(i // 2) % len(pool[repo])] if pool[repo] else b"first" * 1000
            layers = [os.urandom(64 * 1024), reused]
            tag = f"t{i % 4}"
            digest = pusher.push(repo, tag, layers, f'{{"i": {i}}}'.encode())
            if digest is None:
                continue
            previous = current.get(f"{repo}:{tag}")
            current[f"{repo}:{tag}"] = digest
            fresh[f"{repo}@{digest}"] = layers[0]
            if previous is not None:
                retired.append(f"{repo}@{previous}")
            if len(retired) >= 4:
                # a blob of an image pushed mid-collection may be parked until that collection's
                # re-scan restores it: judge each image after a collection has ended
                gc.round_done.clear()
                assert gc.round_done.wait(30)
                for ref in retired:
                    name, d = ref.split("@")
                    assert pusher.pulls(name, d), ref
                    status, _ = request("DELETE", f"{server.url}/v2/{name}/manifests/{d}")
                    assert status == 202
                    checked += 1
                    pool[name] = [fresh.pop(ref), *pool[name]][:6]
                retired.clear()
    finally:
        gc.stop.set()
        gc.join(60)
    assert gc.error is None, repr(gc.error)

    for key, digest in current.items():
        name, tag = key.split(":")
        assert pusher.pulls(name, tag) and pusher.pulls(name, digest), key
    time.sleep(DELAY)
    final = asyncio.run(_final_collection(root))
    for key in current:
        name, tag = key.split(":")
        assert pusher.pulls(name, tag), key
    v2 = root / "docker" / "registry" / "v2"
    assert not [p for p in (v2 / "_gc").rglob("*") if "tombstones" in p.parts and p.is_file()]
    print(
        f"\npush loop {DURATION:.0f}s: {i} pushes {pusher.outcomes}, {checked} images checked "
        f"whole after a collection then deleted; GC loop: {gc.rounds} rounds, {gc.deleted} blobs "
        f"deleted, {gc.restored} restored, {gc.too_young} spared as young; final: {final}"
    )
    assert pusher.outcomes.get("201", 0) > 50 and gc.rounds > 10 and gc.deleted > 50


async def _final_collection(root: Path) -> str:
    driver = FilesystemDriver(str(root))
    try:
        await collect(driver, GCOptions(delay=DELAY, verbose=False))
        left = await collect(driver, GCOptions(dry_run=True, verbose=False))
        assert left.blobs_eligible == 0, "unreferenced blobs left"
        return f"{left.marked} blobs referenced, 0 unreferenced left"
    finally:
        await driver.close()


def test_server_collects_in_the_background(fastreg_server, tmp_path: Path) -> None:
    root = tmp_path / "root"
    server = fastreg_server(
        root,
        {"storage": {"maintenance": {"gc": {"enabled": True, "interval": "1s", "delay": "0s"}}}},
    )
    pusher = Pusher(server.url)
    doomed = pusher.push("bg/app", "x", [b"doomed-layer"], b"{}")
    kept = pusher.push("bg/app", "y", [b"kept-layer"], b'{"k": 1}')
    assert doomed and kept
    assert request("DELETE", f"{server.url}/v2/bg/app/manifests/{doomed}")[0] == 202
    data = root / "docker/registry/v2/blobs/sha256" / sha256(b"doomed-layer")[7:9]
    deadline = time.monotonic() + 15
    while (data / sha256(b"doomed-layer")[7:] / "data").exists():
        assert time.monotonic() < deadline, "the server never collected"
        time.sleep(0.2)
    assert pusher.pulls("bg/app", "y")
