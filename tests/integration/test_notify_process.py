"""Notifications and the debug server of a real `fastreg serve` process: events spooled while the
listener is down survive `kill -9` and arrive after a restart; `--workers 2` share the debug port."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ServerProcess, free_port
from tests.integration.test_process import request, start_fastreg

pytestmark = pytest.mark.integration

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Listener:
    def __init__(self, port: int) -> None:
        self.port = port
        self.events: list[dict[str, Any]] = []
        self.content_types: set[str] = set()
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.content_types.add(self.headers["Content-Type"])
                outer.events += json.loads(body)["events"]
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener(free_port())
    yield server
    server.stop()


def debug_vars(port: int) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/debug/vars", timeout=5) as resp:
        return json.loads(resp.read())


def push_tagged(server: ServerProcess, name: str, tag: str) -> str:
    config = json.dumps({"os": "linux", "tag": tag}).encode()
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    resp = request(server, "POST", f"/v2/{name}/blobs/uploads/?digest={digest}", config)
    assert resp.status == 201
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest,
        "size": len(config)}}).encode()
    resp = request(server, "PUT", f"/v2/{name}/manifests/{tag}", manifest,
                   {"Content-Type": OCI_MANIFEST})
    assert resp.status == 201
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def test_spooled_events_survive_kill_9(tmp_path: Path, listener: Listener) -> None:
    debug_port = free_port()
    extra = {
        "http": {"debug": {"addr": f"127.0.0.1:{debug_port}"}},
        "notifications": {
            "endpoints": [{"name": "gitlab", "url": f"http://127.0.0.1:{listener.port}/notify",
                           "threshold": 1, "backoff": "200ms", "timeout": "1s"}],
            "spool": {"directory": str(tmp_path / "spool")},
        },
    }
    first = start_fastreg(tmp_path / "root", tmp_path / "a", extra=extra)
    digests = [push_tagged(first, "crash/repo", f"t{i}") for i in range(3)]
    before = debug_vars(debug_port)["notifications"]["endpoints"]["gitlab"]
    assert before["pending"] == 6 and before["delivered"] == 0 and before["errors"] >= 1
    assert first.proc is not None
    os.kill(first.proc.pid, signal.SIGKILL)  # no cleanup, no flush
    first.proc.wait(timeout=10)
    first.stop()
    second = start_fastreg(tmp_path / "root", tmp_path / "b", extra=extra)
    try:
        listener.start()
        deadline = time.monotonic() + 15
        while len(listener.events) < 6:
            assert time.monotonic() < deadline, listener.events
            time.sleep(0.05)
        assert listener.content_types == {"application/vnd.docker.distribution.events.v1+json"}
        manifests = [e for e in listener.events if e["target"]["mediaType"] == OCI_MANIFEST]
        assert [e["target"]["tag"] for e in manifests] == ["t0", "t1", "t2"]
        assert [e["target"]["digest"] for e in manifests] == digests
        assert all(e["action"] == "push" for e in listener.events)
        time.sleep(0.3)
        assert len(listener.events) == 6  # delivered once the cursor moved
        after = debug_vars(debug_port)["notifications"]["endpoints"]["gitlab"]
        assert after["pending"] == 0 and after["delivered"] == 6
    finally:
        second.stop()


def test_workers_share_the_debug_port(tmp_path: Path) -> None:
    debug_port = free_port()
    extra = {"http": {"debug": {"addr": f"127.0.0.1:{debug_port}",
                                "prometheus": {"enabled": True}}},
             "health": {"storagedriver": {"enabled": True, "interval": "1s"}}}
    server = start_fastreg(tmp_path / "root", tmp_path / "w", "--workers", "2", extra=extra)
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        pids = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2:  # both workers answer on the one debug port
            assert time.monotonic() < deadline, pids
            pids.add(debug_vars(debug_port)["pid"])
        with opener.open(f"http://127.0.0.1:{debug_port}/debug/health", timeout=5) as resp:
            assert resp.status == 200 and json.loads(resp.read()) == {}
        with opener.open(f"http://127.0.0.1:{debug_port}/metrics", timeout=5) as resp:
            assert b"# TYPE registry_http_requests_total counter" in resp.read()
    finally:
        server.stop()
