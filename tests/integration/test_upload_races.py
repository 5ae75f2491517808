"""Issue 12, findings 2 and 6, against a real process on the filesystem driver: a PUT racing a
PATCH held open mid-body on another worker, a commit of a digest that is already stored, and a
DELETE of an upload whose PATCH is stalled."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import select
import socket
import time
from pathlib import Path

import pytest

from tests.integration.conftest import READY_TIMEOUT, ServerProcess
from tests.integration.test_process import (
    _listening_pids,
    _log_entries,
    request,
    start_fastreg,
    upload_path,
)

pytestmark = pytest.mark.integration

HANG = 10.0  # seconds without an answer that mean the server hangs


def _start(tmp_path: Path, workers: int) -> ServerProcess:
    server = start_fastreg(
        tmp_path / "root", tmp_path / "w", "--workers", str(workers),
        extra={"log": {"level": "info", "formatter": "json"}},
    )  # fmt: skip
    deadline = time.monotonic() + READY_TIMEOUT
    while len(_listening_pids(server)) < workers and time.monotonic() < deadline:
        time.sleep(0.1)
    return server


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hold_patch(server: ServerProcess, path: str, total: int, first: bytes) -> socket.socket:
    """A PATCH of ``total`` bytes of which only ``first`` is sent: the socket stays open."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=HANG)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n"
    )
    sock.sendall(head.encode() + first)
    time.sleep(0.5)  # let a worker take the request in and start writing it
    return sock


def _answer(sock: socket.socket) -> tuple[int, str]:
    """Status and OCI error code (or "") of the response on ``sock``."""
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    body = resp.read()
    sock.close()
    code = json.loads(body)["errors"][0]["code"] if body.startswith(b"{") else ""
    return resp.status, code


def _send_rest(sock: socket.socket, rest: bytes) -> None:
    try:
        sock.sendall(rest)
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered already and closed: the answer is still to be read


def _error_code(resp: http.client.HTTPResponse) -> str:
    body: bytes = resp.read_body  # type: ignore[attr-defined]
    return str(json.loads(body)["errors"][0]["code"]) if body.startswith(b"{") else ""


def test_a_put_racing_a_held_patch_never_commits_bytes_of_another_digest(tmp_path: Path) -> None:
    server = _start(tmp_path, 2)
    try:
        first, second = os.urandom(64 * 1024), os.urandom(256 * 1024)
        resp = request(server, "POST", "/v2/race/blobs/uploads/")
        path = upload_path(resp)
        assert request(server, "PATCH", path, first).status == 202
        held = _hold_patch(server, path, len(second), second[: len(second) // 2])
        # PUTs of the bytes stored so far, on new connections (SO_REUSEPORT spreads them), until
        # both workers have answered one, or one commits
        answers = []
        for _ in range(40):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=3)
            try:
                conn.request("PUT", f"{path}?digest={_sha(first)}", headers={"Connection": "close"})
                put = conn.getresponse()
                put.read_body = put.read()  # type: ignore[attr-defined]
                answers.append((put.status, _error_code(put)))
            except TimeoutError:
                answers.append((0, "no answer"))  # waits behind the held PATCH
            finally:
                conn.close()
            pids = {e["pid"] for e in _log_entries(server) if e.get("http.request.method") == "PUT"}
            if len(pids) == 2 or answers[-1][0] == 201:
                break
        _send_rest(held, second[len(second) // 2 :])
        patched = _answer(held)
        # whatever happened, a blob served under a digest has bytes of that digest
        for data in (first, first + second):
            got = request(server, "GET", f"/v2/race/blobs/{_sha(data)}")
            if got.status == 200:
                assert _sha(got.read_body) == _sha(data), "a blob served under a wrong digest"  # type: ignore[attr-defined]
        assert answers and all(a == (400, "BLOB_UPLOAD_INVALID") for a in answers), answers
        assert len(pids) == 2, "the PUTs should have reached both workers"
        assert patched == (202, ""), patched  # the PATCH held the upload: it completed
        done = request(server, "PUT", f"{path}?digest={_sha(first + second)}")
        assert done.status == 201, done.read_body  # type: ignore[attr-defined]
        got = request(server, "GET", f"/v2/race/blobs/{_sha(first + second)}")
        assert got.read_body == first + second  # type: ignore[attr-defined]
    finally:
        server.stop()


def test_a_commit_never_replaces_a_stored_blob(tmp_path: Path) -> None:
    server = _start(tmp_path, 1)
    try:
        data = os.urandom(100_000)
        digest = _sha(data)
        assert request(server, "POST", f"/v2/one/blobs/uploads/?digest={digest}", data).status == 201
        blob = server.root / "docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:] / "data"
        before = blob.stat()
        path = upload_path(request(server, "POST", "/v2/two/blobs/uploads/"))
        assert request(server, "PATCH", path, data).status == 202
        assert request(server, "PUT", f"{path}?digest={digest}").status == 201
        after = blob.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        assert blob.read_bytes() == data
        assert request(server, "GET", f"/v2/two/blobs/{digest}").read_body == data  # type: ignore[attr-defined]
        assert not list((server.root / "docker/registry/v2/repositories/two/_uploads").iterdir())
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_delete_of_an_upload_with_a_stalled_patch_answers_at_once(
    tmp_path: Path, workers: int
) -> None:
    server = _start(tmp_path, workers)
    try:
        body = os.urandom(1024 * 1024)
        path = upload_path(request(server, "POST", "/v2/stall/blobs/uploads/"))
        uuid = path.rsplit("/", 1)[1]
        held = _hold_patch(server, path, len(body), body[:64 * 1024])
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HANG)
        conn.request("DELETE", path, headers={"Connection": "close"})
        assert conn.getresponse().status == 204  # a hang times out here
        conn.close()
        # a PATCH in the same process is stopped at once; one on the other worker finds the
        # upload gone when its body has come
        ready, _, _ = select.select([held], [], [], HANG if workers == 1 else 2.0)
        if not ready:
            assert workers == 2, "the stalled PATCH was not stopped by the cancel"
            _send_rest(held, body[64 * 1024 :])
        assert _answer(held) == (404, "BLOB_UPLOAD_UNKNOWN")
        assert request(server, "GET", path).status == 404
        uploads = server.root / "docker/registry/v2/repositories/stall/_uploads"
        assert not (uploads / uuid).exists(), list(uploads.rglob("*"))
    finally:
        server.stop()


def test_a_stalled_body_is_cut_after_readtimeout_and_frees_the_upload(tmp_path: Path) -> None:
    """A client that sends part of a body and stops holds a connection, a descriptor and the
    upload's lease: `http.readtimeout` resets it, and the upload takes the next PATCH."""
    server = start_fastreg(tmp_path / "root", tmp_path / "w", extra={"http": {"readtimeout": "1s"}})
    try:
        body = os.urandom(256 * 1024)
        path = upload_path(request(server, "POST", "/v2/idle/blobs/uploads/"))
        held = _hold_patch(server, path, len(body) * 4, body)
        ready, _, _ = select.select([held], [], [], HANG)
        assert ready, "the stalled PATCH was never cut"
        with pytest.raises(ConnectionResetError):
            while held.recv(65536):  # a reset, not an answer the client could take for one
                pass
        held.close()
        status = request(server, "GET", path)  # the lease was released with the request
        assert status.status == 204
        last = int(status.headers["Range"].split("-")[1])
        offset = last + 1 if last else 0  # "0-0" is empty (Distribution's form)
        rest = body[offset:]
        resp = request(server, "PATCH", path, rest, {"Content-Range": f"{offset}-{len(body) - 1}"})
        assert resp.status == 202, resp.read_body  # type: ignore[attr-defined]
        resp = request(server, "PUT", f"{upload_path(resp)}?digest={_sha(body)}")
        assert resp.status == 201, resp.read_body  # type: ignore[attr-defined]
        blob = request(server, "GET", f"/v2/idle/blobs/{_sha(body)}")
        assert blob.read_body == body  # type: ignore[attr-defined]
    finally:
        server.stop()


def test_a_slow_body_that_keeps_coming_is_never_cut(tmp_path: Path) -> None:
    """`http.readtimeout` is an idle timeout: a body sent in pieces 0.4 s apart takes 3 s in
    all, three times the timeout, and is taken whole."""
    server = start_fastreg(tmp_path / "root", tmp_path / "w", extra={"http": {"readtimeout": "1s"}})
    try:
        body = os.urandom(8 * 64 * 1024)
        path = upload_path(request(server, "POST", "/v2/slow/blobs/uploads/"))
        pieces = [body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024)]
        sock = _hold_patch(server, path, len(body), pieces[0])
        for piece in pieces[1:]:
            time.sleep(0.4)
            sock.sendall(piece)
        status, code = _answer(sock)
        assert (status, code) == (202, "")
        resp = request(server, "PUT", f"{path}?digest={_sha(body)}")
        assert resp.status == 201, resp.read_body  # type: ignore[attr-defined]
    finally:
        server.stop()
