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
        patched = {entry["pid"] for entry in _log_entries(server) if entry.get("http.request.method") == "PATCH"}
        assert len(_listening_pids(server)) == 2
        assert len(patched) == 2, "the PATCHes should have reached both workers"
    finally:
        server.stop()
    assert server.proc is not None and server.proc.returncode == 0


def cmdline(pid: int) -> str:
    """What ps shows for ``pid``: its /proc cmdline, arguments joined by spaces."""
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return " ".join(part.decode() for part in raw.split(b"\0") if part).strip()


def test_processes_are_titled_supervisor_and_workers(tmp_path: Path) -> None:
    extra = {"log": {"level": "info", "formatter": "json"}}
    server = start_fastreg(tmp_path / "root", tmp_path / "w", "--workers", "2", extra=extra)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while len(_listening_pids(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.proc is not None
        addr = f"127.0.0.1:{server.port}"
        assert cmdline(server.proc.pid) == f"fastreg serve {addr} (2 workers)"
        titles = sorted(cmdline(pid) for pid in _listening_pids(server))
        assert titles == [f"fastreg worker 1/2 {addr}", f"fastreg worker 2/2 {addr}"]
    finally:
        server.stop()


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


@pytest.mark.parametrize(
    ("params", "key"),
    [("rootdirectory: [a, b]", "storage.filesystem.rootdirectory"),
     ("maxthreads: lots", "storage.filesystem.maxthreads")],
)
def test_a_wrongly_typed_driver_key_stops_the_start_in_one_line(
    tmp_path: Path, params: str, key: str
) -> None:
    result = run_serve(
        tmp_path,
        f"version: 0.1\nstorage:\n  filesystem:\n    {params}\nhttp:\n  addr: 127.0.0.1:0\n",
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"fastreg: configuration error: {key}: expected ")


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


def fastreg_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m fastreg ARGS`` to its end, with no REGISTRY_* variable, output captured."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    base.update(PYTHONPATH=str(REPO_ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "fastreg", *args],
        check=False, capture_output=True, text=True, env=base, timeout=READY_TIMEOUT,
    )  # fmt: skip


def test_version_option_prints_what_the_version_command_prints() -> None:
    option, command = fastreg_command("--version"), fastreg_command("version")
    assert option.returncode == 0, option.stderr
    assert option.stdout == command.stdout and option.stdout.startswith("fastreg ")


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_workers_below_one_is_a_usage_error(tmp_path: Path, workers: str) -> None:
    config = tmp_path / "config.yml"
    config.write_text(registry_config(tmp_path / "root", free_port()))
    result = fastreg_command("serve", "--workers", workers, str(config))
    assert result.returncode == 2, result.stderr
    assert f"--workers: {workers} is not a number of processes (1 or more)" in result.stderr


def test_serve_without_a_configuration_refuses_to_start() -> None:
    result = fastreg_command("serve")
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert "fastreg serve CONFIG.yml" in line and "REGISTRY_CONFIGURATION_PATH" in line, line


def test_serve_reads_registry_configuration_path(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("version: 0.1\nstorage:\n  inmemory:\nhttp:\n  addr: 127.0.0.1:nope\n")
    result = fastreg_command("serve", env={"REGISTRY_CONFIGURATION_PATH": str(config)})
    assert result.returncode == 2, result.stderr
    assert "http.addr" in one_line(result.stderr)  # it read that file


def run_fastreg(tmp_path: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`fastreg serve ARGS config` to its end (a start that is refused), output captured."""
    cfg = tmp_path / f"config-{len(list(tmp_path.glob('config*')))}.yml"
    cfg.write_text(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    argv = [sys.executable, "-m", "fastreg", "serve", *args, str(cfg)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=READY_TIMEOUT * 2)
    except subprocess.TimeoutExpired:  # it went on serving (or restarting): take its workers too
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"fastreg serve {' '.join(args)} did not stop by itself:\n{err[-2000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def one_line(stderr: str) -> str:
    """The operator's message: fastreg's lines on stderr, and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("fastreg: ")]
    assert len(lines) >= 1, stderr
    return lines[-1]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_second_instance_on_a_bound_address_refuses_to_start(tmp_path: Path, workers: str) -> None:
    first = start_fastreg(tmp_path / "root", tmp_path / "a", "--workers", "2")
    try:
        config = registry_config(tmp_path / "root2", first.port)
        result = run_fastreg(tmp_path, config, "--workers", workers)
        assert result.returncode == 1, result.stderr
        line = one_line(result.stderr)
        assert f"127.0.0.1:{first.port}" in line and "in use" in line, line
        assert len([x for x in result.stderr.splitlines() if x.startswith("fastreg: ")]) == 1
        assert request(first, "GET", "/v2/").status == 200  # the first one keeps serving
        for _ in range(8):  # new connections: every one reaches the first instance
            resp = request(first, "POST", "/v2/second/blobs/uploads/")
            assert resp.status == 202
            assert request(first, "GET", upload_path(resp)).status == 204
    finally:
        first.stop()


def test_port_held_by_a_plain_socket_makes_workers_give_up(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        result = run_fastreg(tmp_path, registry_config(tmp_path / "root", port), "--workers", "2")
    assert result.returncode == 1, result.stderr
    assert f"127.0.0.1:{port}" in one_line(result.stderr)


def test_workers_that_cannot_start_make_the_supervisor_give_up(tmp_path: Path) -> None:
    # storage refused by every worker at start (root below a regular file): 3 tries, exit 1
    (tmp_path / "file").write_text("")
    config = registry_config(tmp_path / "file" / "root", free_port())
    result = run_fastreg(tmp_path, config, "--workers", "2")
    assert result.returncode == 1, result.stderr
    assert "giving up" in one_line(result.stderr)
    assert "storage is not usable" in result.stderr


@pytest.mark.parametrize("missing", ["certificate", "key"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_missing_tls_file_is_one_line_naming_key_and_path(
    tmp_path: Path, missing: str, workers: str
) -> None:
    # the files are checked before they are parsed: the one present need not be a real PEM
    files = {"certificate": tmp_path / "cert.pem", "key": tmp_path / "key.pem"}
    for path in files.values():
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    files[missing] = tmp_path / "absent" / f"{missing}.pem"
    tls = {"certificate": str(files["certificate"]), "key": str(files["key"])}
    config = registry_config(tmp_path / "root", free_port(), {"http": {"tls": tls}})
    result = run_fastreg(tmp_path, config, "--workers", workers)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert f"http.tls.{missing}" in line and str(files[missing]) in line, line
