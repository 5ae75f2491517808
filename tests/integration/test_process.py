"""The fastreg process itself: crashes between and during chunks, workers sharing a port, and
configuration errors at start."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import (
    READY_TIMEOUT,
    REPO_ROOT,
    ServerProcess,
    free_port,
    registry_config,
)

pytestmark = pytest.mark.integration


def start_fastreg(root: Path, work: Path, *args: str, extra: dict | None = None) -> ServerProcess:
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = work / f"config-{port}.yml"
    cfg.write_text(registry_config(root, port, extra))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO_ROOT))
    server = ServerProcess(
        kind="fastreg",
        root=root,
        port=port,
        config_path=cfg,
        argv=[sys.executable, "-m", "fastreg", "serve", *args, str(cfg)],
        env=env,
        log_path=work / f"server-{port}.log",
    )
    return server.start()


def request(
    server: ServerProcess, method: str, path: str, body: bytes = b"", headers: dict | None = None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers={"Connection": "close", **(headers or {})})
    resp = conn.getresponse()
    resp.read_body = resp.read()  # type: ignore[attr-defined]
    conn.close()
    return resp


def upload_path(resp: http.client.HTTPResponse) -> str:
    location = resp.getheader("Location") or ""
    return location[location.index("/v2/") :]


def blob_files(root: Path) -> list[Path]:
    return list((root / "docker/registry/v2/blobs").rglob("data"))


def test_kill_between_chunks_then_finish_on_new_process(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = os.urandom(3 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    first = start_fastreg(root, tmp_path / "a")
    resp = request(first, "POST", "/v2/crash/test/blobs/uploads/")
    assert resp.status == 202
    path = upload_path(resp)
    resp = request(
        first,
        "PATCH",
        path,
        data[:1_000_000],
        {"Content-Range": "0-999999", "Content-Type": "application/octet-stream"},
    )
    assert resp.status == 202 and resp.getheader("Range") == "0-999999"
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    first.stop()

    second = start_fastreg(root, tmp_path / "b")
    try:
        resp = request(second, "GET", path)
        assert resp.status == 204 and resp.getheader("Range") == "0-999999"
        resp = request(
            second, "PATCH", path, data[1_000_000:], {"Content-Range": f"1000000-{len(data) - 1}"}
        )
        assert resp.status == 202
        resp = request(second, "PUT", f"{path}?digest={digest}")
        assert resp.status == 201, resp.read_body  # type: ignore[attr-defined]
        resp = request(second, "GET", f"/v2/crash/test/blobs/{digest}")
        assert resp.status == 200
        assert hashlib.sha256(resp.read_body).hexdigest() == digest.split(":")[1]  # type: ignore[attr-defined]
    finally:
        second.stop()


def test_kill_during_a_chunk_leaves_no_blob_and_the_upload_resumes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = os.urandom(8 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    first = start_fastreg(root, tmp_path / "a")
    resp = request(first, "POST", "/v2/crash/mid/blobs/uploads/")
    path = upload_path(resp)
    # send half of the promised body, then kill the server while it waits for the rest
    sock = socket.create_connection(("127.0.0.1", first.port), timeout=10)
    head = (
        f"PUT {path}?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    sock.sendall(head + data[: len(data) // 2])
    time.sleep(0.5)
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    sock.close()
    first.stop()
    assert blob_files(root) == []  # nothing visible under a digest

    second = start_fastreg(root, tmp_path / "b")
    try:
        resp = request(second, "GET", f"/v2/crash/mid/blobs/{digest}")
        assert resp.status == 404
        resp = request(second, "GET", path)
        assert resp.status == 204
        offset = int((resp.getheader("Range") or "0-0").split("-")[1]) + 1
        stored = (
            (
                root
                / "docker/registry/v2/repositories/crash/mid/_uploads"
                / path.rsplit("/", 1)[1]
                / "data"
            )
            .stat()
            .st_size
        )
        offset = stored  # the Range header cannot say "0 bytes"; the size on disk can
        assert stored <= len(data) // 2
        resp = request(
            second,
            "PUT",
            f"{path}?digest={digest}",
            data[offset:],
            {"Content-Range": f"{offset}-{len(data) - 1}"} if offset else {},
        )
        assert resp.status == 201, resp.read_body  # type: ignore[attr-defined]
        resp = request(second, "GET", f"/v2/crash/mid/blobs/{digest}")
        assert resp.read_body == data  # type: ignore[attr-defined]
    finally:
        second.stop()


def test_workers_share_a_port_and_a_chunked_upload_spans_them(tmp_path: Path) -> None:
    root = tmp_path / "root"
    server = start_fastreg(
        root,
        tmp_path / "w",
        "--workers",
        "2",
        extra={"log": {"level": "info", "formatter": "json"}},
    )
    try:
        # ready means one worker answers; wait until both listen before spreading connections
        deadline = time.monotonic() + READY_TIMEOUT
        while len(_listening_pids(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        chunks = [os.urandom(64 * 1024 + i) for i in range(24)]
        data = b"".join(chunks)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        resp = request(server, "POST", "/v2/workers/blobs/uploads/")
        path = upload_path(resp)
        offset = 0
        for chunk in chunks:  # a new connection each time: SO_REUSEPORT spreads them
            resp = request(
                server,
                "PATCH",
                path,
                chunk,
                {"Content-Range": f"{offset}-{offset + len(chunk) - 1}"},
            )
            assert resp.status == 202, resp.read_body  # type: ignore[attr-defined]
            offset += len(chunk)
        resp = request(server, "PUT", f"{path}?digest={digest}")
        assert resp.status == 201, resp.read_body  # type: ignore[attr-defined]
        resp = request(server, "GET", f"/v2/workers/blobs/{digest}")
        assert resp.read_body == data  # type: ignore[attr-defined]
        patched = {entry["pid"] for entry in _log_entries(server) if entry.get("method") == "PATCH"}
        assert len(_listening_pids(server)) == 2
        assert len(patched) == 2, "the PATCHes should have reached both workers"
    finally:
        server.stop()
    assert server.proc is not None and server.proc.returncode == 0


def _log_entries(server: ServerProcess) -> list[dict]:
    return [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]


def _listening_pids(server: ServerProcess) -> set[int]:
    return {entry["pid"] for entry in _log_entries(server) if entry.get("msg") == "listening"}


def run_serve(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "config.yml"
    cfg.write_text(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "fastreg", "serve", str(cfg)],
        check=False,
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT,
        env=env,
    )


def test_wrong_type_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    result = run_serve(
        tmp_path,
        "version: 0.1\nstorage:\n  inmemory:\n  delete:\n"
        "    enabled: maybe\nhttp:\n  addr: 127.0.0.1:0\n",
    )
    assert result.returncode == 2
    assert "storage.delete.enabled" in result.stderr


def test_unknown_key_warns_and_starts(tmp_path: Path) -> None:
    root = tmp_path / "root"
    server = start_fastreg(root, tmp_path / "w", extra={"http": {"bogus": 1}})
    try:
        assert request(server, "GET", "/v2/").status == 200
        assert "http.bogus" in server.output()
    finally:
        server.stop()


def test_python_dash_m_and_version_command() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "fastreg", "version"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert out.returncode == 0 and out.stdout.startswith("fastreg ")
