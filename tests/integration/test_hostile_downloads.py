"""Downloads under hostile clients (issue 12, findings 1 and 4), against real `fastreg serve`.

Clients that reset mid-download while others make small requests (no byte of one response in
another), 1,100 idle keep-alive connections under a soft open-files limit of 1,024 (no
`select()`, the limit raised at start), more non-reading clients than the old sendfile pool had
threads (no pool to exhaust), and a reader that stalls (cut after `http.sendtimeout`, on the
sendfile path and on the streamed path of a driver without local files).
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import ipaddress
import os
import resource
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO_ROOT, SERVERS_KEY, ServerProcess, _to_yaml, free_port

pytestmark = pytest.mark.integration

MiB = 1 << 20
TIMEOUT = 30.0  # detects a hang; no test asserts on how fast anything is
SMALL_RCVBUF = 4096  # a client window so small that the server's send buffer fills at once
TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8


Serve = Callable[..., ServerProcess]


class TLSServer(ServerProcess):
    @property
    def url(self) -> str:  # what readiness is polled on; SSL_CERT_FILE names the test's CA
        return f"https://{self.host}"


@pytest.fixture
def serve(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Serve]:
    """``serve(*args, storage=, http=, soft_nofile=)`` -> a running `fastreg serve`, stopped after
    the test; its output goes with a failure report (conftest's hook)."""
    started: list[ServerProcess] = request.node.stash.setdefault(SERVERS_KEY, [])

    def start(*args: str, storage: str = "filesystem", http: dict[str, Any] | None = None,
              soft_nofile: int | None = None, tls: bool = False) -> ServerProcess:  # fmt: skip
        root = tmp_path / "root"
        root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        driver = {storage: {"rootdirectory": str(root)} if storage == "filesystem" else {}}
        body = {"log": {"level": "warn"}, "storage": driver,
                "http": {"addr": f"127.0.0.1:{port}", **(http or {})}}  # fmt: skip
        cfg = tmp_path / "config.yml"
        cfg.write_text("version: 0.1\n" + _to_yaml(body) + "\n")
        argv = [sys.executable, "-m", "fastreg", "serve", *args, str(cfg)]
        if soft_nofile is not None:  # what a default systemd or login session gives a process
            argv = ["sh", "-c", f'ulimit -Sn {soft_nofile} && exec "$@"', "sh", *argv]
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO_ROOT))
        server = (TLSServer if tls else ServerProcess)(kind="fastreg", root=root, port=port, config_path=cfg, argv=argv,
                               env=env, log_path=tmp_path / "server.log")  # fmt: skip
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def connect(server: ServerProcess, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", server.port))
    return sock


def send_get(sock: socket.socket, path: str, close: bool = False) -> None:
    extra = "Connection: close\r\n" if close else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())


def read_head(sock: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """The status line, headers and whatever body bytes came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed inside the headers: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode("ascii").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def read_body(sock: socket.socket, length: int, already: bytes, digest: hashlib._Hash) -> int:
    digest.update(already)
    got = len(already)
    while got < length:
        chunk = sock.recv(min(1 << 20, length - got))
        if not chunk:
            break
        digest.update(chunk)
        got += len(chunk)
    return got


def fetch(server: ServerProcess, path: str) -> bytes:
    """A whole exchange on a fresh `Connection: close` connection: every byte until EOF."""
    with connect(server) as sock:
        send_get(sock, path, close=True)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def exact(raw: bytes, body: bytes) -> bool:
    """One well-formed 200 whose body is ``body`` and nothing else, up to EOF."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1.1 200 OK\r\n"):
        return False
    try:
        lines = [line.decode("ascii") for line in head.split(b"\r\n")[1:]]
    except UnicodeDecodeError:
        return False
    lengths = [line.split(":", 1)[1].strip() for line in lines
               if line.lower().startswith("content-length:")]  # fmt: skip
    return all(":" in line for line in lines) and lengths == [str(len(body))] and rest == body


def push(server: ServerProcess, name: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with connect(server) as sock:
        sock.sendall(
            f"POST /v2/{name}/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n".encode() + data
        )
        status, _, _ = read_head(sock)
    assert status.startswith(b"HTTP/1.1 201"), status
    return digest


def tcp_state(sock: socket.socket) -> int:
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0])


def raise_own_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        assert hard == resource.RLIM_INFINITY or hard >= need, f"hard open files limit {hard}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


# --------------------------------------------------------------------------- finding 1


@pytest.mark.parametrize("workers", ["1", "2"])
def test_reset_downloads_never_leak_into_other_responses(serve: Serve, workers: str) -> None:
    server = serve("--workers", workers)
    big = push(server, "hostile/big", os.urandom(8 * MiB))
    small_data = os.urandom(2048)
    small = push(server, "hostile/small", small_data)
    expected = {"/v2/": b"{}", f"/v2/hostile/small/blobs/{small}": small_data}
    done = threading.Event()
    answers: list[int] = [0]
    bad: list[bytes] = []

    def reset_downloads(rounds: int) -> None:
        for _ in range(rounds):
            sock = connect(server, rcvbuf=SMALL_RCVBUF)
            send_get(sock, f"/v2/hostile/big/blobs/{big}")
            for _ in range(3):
                sock.recv(SMALL_RCVBUF)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST: the server's send buffer was full, its sendfile in flight

    def small_requests() -> None:
        while not done.is_set():
            for path, body in expected.items():
                raw = fetch(server, path)
                answers[0] += 1
                if not exact(raw, body):
                    bad.append(raw[:300])

    with ThreadPoolExecutor(48) as pool:
        checkers = [pool.submit(small_requests) for _ in range(8)]
        resetters = [pool.submit(reset_downloads, 12) for _ in range(40)]
        try:
            for f in resetters:
                f.result(timeout=300)
        finally:
            done.set()
        for f in checkers:
            f.result(timeout=TIMEOUT)
    assert not bad, f"{len(bad)} of {answers[0]} small answers carried other bytes: {bad[:3]}"
    assert answers[0] > 0
    # and the server still serves the big blob whole
    with connect(server) as sock:
        send_get(sock, f"/v2/hostile/big/blobs/{big}")
        status, headers, rest = read_head(sock)
        h = hashlib.sha256()
        assert read_body(sock, int(headers["content-length"]), rest, h) == 8 * MiB
    assert status == b"HTTP/1.1 200 OK" and "sha256:" + h.hexdigest() == big
    assert "Bad file descriptor" not in server.output()


# --------------------------------------------------------------------------- finding 4


def test_download_whole_with_1100_idle_connections_under_soft_limit_1024(serve: Serve) -> None:
    raise_own_nofile(4096)
    server = serve("--workers", "1", soft_nofile=1024)
    size = 16 * MiB
    digest = push(server, "hostile/many", os.urandom(size))
    idle = []
    try:
        for _ in range(1100):  # each answered once and kept alive: every one a server descriptor
            sock = connect(server)
            idle.append(sock)
            send_get(sock, "/v2/")
            status, headers, rest = read_head(sock)
            assert status == b"HTTP/1.1 200 OK" and rest == b"{}", (status, rest)
        with connect(server) as sock:
            send_get(sock, f"/v2/hostile/many/blobs/{digest}")
            status, headers, rest = read_head(sock)
            h = hashlib.sha256()
            got = read_body(sock, int(headers["content-length"]), rest, h)
        assert status == b"HTTP/1.1 200 OK" and got == size
        assert "sha256:" + h.hexdigest() == digest
    finally:
        for sock in idle:
            sock.close()


def test_non_reading_clients_do_not_delay_others(serve: Serve) -> None:
    server = serve("--workers", "1")
    size = 16 * MiB
    big = push(server, "hostile/big", os.urandom(size))
    small_data = os.urandom(1024)
    small = push(server, "hostile/small", small_data)
    stalled = []
    try:
        for _ in range(70):  # more than the 64 threads the old sendfile pool had
            sock = connect(server, rcvbuf=SMALL_RCVBUF)
            stalled.append(sock)
            send_get(sock, f"/v2/hostile/big/blobs/{big}")
        first_rest = b""
        for i, sock in enumerate(stalled):  # every one reached its body: headers are out
            status, _, rest = read_head(sock)
            assert status == b"HTTP/1.1 200 OK"
            first_rest = rest if i == 0 else first_rest
        assert exact(fetch(server, f"/v2/hostile/small/blobs/{small}"), small_data)
        # a stalled download resumes and completes once its client reads again
        h = hashlib.sha256()
        assert read_body(stalled[0], size, first_rest, h) == size
        assert "sha256:" + h.hexdigest() == big
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.parametrize("storage", ["filesystem", "inmemory"])  # sendfile / streamed body
def test_stalled_reader_is_cut_after_sendtimeout(serve: Serve, storage: str) -> None:
    server = serve(storage=storage, http={"sendtimeout": "1s"})
    digest = push(server, "hostile/big", os.urandom(16 * MiB))
    with connect(server, rcvbuf=SMALL_RCVBUF) as sock:
        send_get(sock, f"/v2/hostile/big/blobs/{digest}")
        deadline = time.monotonic() + TIMEOUT
        while tcp_state(sock) not in (TCP_CLOSE, TCP_CLOSE_WAIT) and time.monotonic() < deadline:
            time.sleep(0.1)  # never read: the server must give up on its own
        assert tcp_state(sock) in (TCP_CLOSE, TCP_CLOSE_WAIT), "the stalled download was not cut"
        received = 0
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < 16 * MiB  # a cut body, never taken for a whole one
    assert exact(fetch(server, "/v2/"), b"{}")


def self_signed(tmp_path: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return str(cert_path), str(key_path)


def test_tls_download_goes_through_the_tls_stream(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sendfile bypasses TLS: over `http.tls` the body must be encrypted like the headers."""
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    server = serve(http={"tls": {"certificate": cert, "key": key}}, tls=True)
    data = os.urandom(4 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    context = ssl.create_default_context(cafile=cert)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=TIMEOUT, context=context)
    conn.request("POST", f"/v2/hostile/tls/blobs/uploads/?digest={digest}", body=data,
                 headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 201
    conn.request("GET", f"/v2/hostile/tls/blobs/{digest}")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == data
    conn.close()
