"""Hostile requests over raw sockets against a real `python -m fastreg serve` (issue 12, findings
5, 7, 8, 9a): what no client library would send, byte for byte."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import zlib
from collections.abc import Iterator
from pathlib import Path

import logfmtkv
import pytest

from tests.integration.conftest import ServerProcess
from tests.integration.test_process import start_fastreg

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("hostile")
    proc = start_fastreg(base / "root", base / "w", extra={"http": {"relativeurls": False}})
    try:
        yield proc
    finally:
        proc.stop()


def exchange(server: ServerProcess, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request as the bytes given (Connection: close added), the response parsed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + b"Connection: close\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    raw_head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, payload


def oci_error(status: int, payload: bytes) -> str:
    assert 400 <= status < 500, payload[:300]
    return str(json.loads(payload)["errors"][0]["code"])


def new_upload(server: ServerProcess, name: str = "hostile") -> str:
    status, headers, _ = exchange(
        server, f"POST /v2/{name}/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
    )
    assert status == 202
    location = headers["location"]
    return location[location.index("/v2/") :]


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(b"\0" * (4 << 20))),  # inflates 1000x
        ("deflate", zlib.compress(b"layer" * 999)),
        ("deflate", b"\x78\x9cnot deflate"),
        ("br", b"\x0b\x02\x80hi\x03"),
        ("zstd", b"\x28\xb5\x2f\xfd\x20\x02\x11\x00\x00hi"),
    ],
    ids=["gzip-bomb", "deflate", "invalid-deflate", "br", "zstd"],
)
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_encoded_bodies_are_stored_as_sent(
    server: ServerProcess, encoding: str, body: bytes, framing: str
) -> None:
    upload = new_upload(server)
    if framing == "length":
        framed, header = body, f"Content-Length: {len(body)}\r\n"
    else:
        framed, header = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body), "Transfer-Encoding: chunked\r\n"
    status, headers, payload = exchange(
        server, f"PATCH {upload} HTTP/1.1\r\nHost: x\r\nContent-Encoding: {encoding}\r\n{header}",
        framed,
    )
    assert status == 202, payload
    assert headers["range"] == f"0-{len(body) - 1}"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    status, _, payload = exchange(
        server, f"PUT {upload}?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
    )
    assert status == 201, payload
    status, _, payload = exchange(server, f"GET /v2/hostile/blobs/{digest} HTTP/1.1\r\nHost: x\r\n")
    assert status == 200 and payload == body


def test_huge_n_is_pagination_number_invalid(server: ServerProcess) -> None:
    config = b"{}"
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    head = f"POST /v2/tagged/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n"
    assert exchange(server, head + "Content-Length: 2\r\n", config)[0] == 201
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest,
                   "size": 2}, "layers": []}).encode()  # fmt: skip
    head = (
        "PUT /v2/tagged/manifests/t HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {len(manifest)}\r\n"
    )
    assert exchange(server, head, manifest)[0] == 201
    for path in ("/v2/tagged/tags/list", "/v2/_catalog"):
        status, _, payload = exchange(server, f"GET {path}?n={'9' * 5000} HTTP/1.1\r\nHost: x\r\n")
        assert oci_error(status, payload) == "PAGINATION_NUMBER_INVALID"


def test_long_mount_from_is_a_plain_upload(server: ServerProcess) -> None:
    digest = "sha256:" + "a" * 64
    status, headers, payload = exchange(
        server,
        f"POST /v2/hostile/blobs/uploads/?mount={digest}&from={'a' * 300} HTTP/1.1\r\n"
        "Host: x\r\nContent-Length: 0\r\n",
    )
    assert status == 202, payload
    assert "/v2/hostile/blobs/uploads/" in headers["location"]


@pytest.mark.parametrize("host", ["evil.example/x?", "a b", "[::1", "", "x@y", "evil.example#"])
def test_bad_host_is_400_with_the_oci_body(server: ServerProcess, host: str) -> None:
    status, headers, payload = exchange(
        server, f"POST /v2/hostile/blobs/uploads/ HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n"
    )
    assert status == 400, payload
    assert oci_error(status, payload) == "UNKNOWN"
    assert "location" not in headers


@pytest.mark.parametrize("host", ["registry.example:5000", "[::1]:5000", "10.0.0.1", "r_1.local"])
def test_good_host_is_in_the_location(server: ServerProcess, host: str) -> None:
    status, headers, _ = exchange(
        server, f"POST /v2/hostile/blobs/uploads/ HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n"
    )
    assert status == 202
    assert headers["location"].startswith(f"http://{host}/v2/hostile/blobs/uploads/")


def test_forwarded_proto_javascript_is_not_used(server: ServerProcess) -> None:
    status, headers, _ = exchange(
        server,
        "POST /v2/hostile/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: javascript\r\n"
        "Content-Length: 0\r\n",
    )
    assert status == 202
    assert headers["location"].startswith("http://x/v2/")


@pytest.mark.parametrize(("count", "size"), [(300, 8), (1, 64 * 1024), (16, 4096)])
def test_many_and_large_headers_are_accepted(server: ServerProcess, count: int, size: int) -> None:
    extra = "".join(f"X-Extra-{i}: {'v' * size}\r\n" for i in range(count))
    status, _, payload = exchange(server, f"GET /v2/ HTTP/1.1\r\nHost: x\r\n{extra}")
    assert status == 200, payload[:200]


def test_no_server_header(server: ServerProcess) -> None:
    for target in ("/v2/", "/v2/absent/tags/list", "/v2", "/other"):
        _, headers, _ = exchange(server, f"GET {target} HTTP/1.1\r\nHost: x\r\n")
        assert "server" not in headers, headers


@pytest.mark.parametrize(
    "head",
    [
        "FUZZ /v2/ HTTP/1.1\r\nHost: x\r\n",  # a method aiohttp's parser does not know
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nHost: y\r\n",  # a duplicate Host
        "GET /v2/?n=" + "9" * 9000 + " HTTP/1.1\r\nHost: x\r\n",  # a request line past the limit
        "GET /v2/ HTTP/1.1\r\nHost: x\r\n" + "X-A: b\r\n" * 600,  # past max_headers
    ],
    ids=["method", "duplicate-host", "long-line", "too-many-headers"],
)
def test_requests_the_parser_refuses_log_no_traceback(server: ServerProcess, head: str) -> None:
    """aiohttp's parser refuses these before any route; the answer is still the registry's: a
    400 with the OCI error body and no Server header, and what any client can send at will must
    not log an error with a traceback."""
    before = len(server.output())
    status, headers, payload = exchange(server, head)
    assert status == 400
    assert "server" not in headers, headers
    assert headers["content-type"].startswith("application/json"), (headers, payload[:200])
    assert [e["code"] for e in json.loads(payload)["errors"]] == ["UNKNOWN"], payload[:200]
    status, _, _ = exchange(server, "GET /v2/ HTTP/1.1\r\nHost: x\r\n")  # the log has caught up
    assert status == 200
    new = server.output()[before:]
    assert "Traceback" not in new
    # logrus' text format (log.formatter's default): logfmt, `time=... level=...` first
    levels = [logfmtkv.parse(line)["level"] for line in new.splitlines() if line.startswith("time=")]
    assert not {"error", "fatal"} & set(levels), new
    if not head.startswith("FUZZ"):  # aiohttp logs an unknown first method at debug level only
        assert "malformed request refused" in new and "warning" in levels, new


def test_manifest_puts_without_a_body_answer(server: ServerProcess) -> None:
    """aiohttp hands every bodyless request one shared empty stream; once its end was read it
    answers "chunk boundary" for ever, and a reader looping for the end never returned."""
    for _ in range(3):
        status, _, payload = exchange(
            server, "PUT /v2/nobody/manifests/t HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
        )  # fmt: skip
        assert (status, oci_error(status, payload)) == (400, "MANIFEST_INVALID")


def test_headers_up_to_1_mib_are_taken(server: ServerProcess) -> None:
    """Go's net/http (Distribution) reads 1 MiB of request head; so does fastreg."""
    extra = "".join(f"X-Extra-{i}: {'v' * 250 * 1024}\r\n" for i in range(3))
    status, _, payload = exchange(server, f"GET /v2/ HTTP/1.1\r\nHost: x\r\n{extra}")
    assert status == 200, payload[:200]


def test_a_head_past_1_mib_is_refused_before_it_is_held(tmp_path: Path) -> None:
    """Each header within the line limits, 64 MiB of them in all, on 4 connections at once:
    aiohttp held them all until the head ended (250 MiB per connection, measured); the head is
    now refused with a 431 once it passes 1 MiB, and what follows is read on and dropped."""
    server = start_fastreg(tmp_path / "root", tmp_path / "w")
    try:
        before = server.peak_rss()
        line = b"X-Pad: " + b"v" * (200 * 1024) + b"\r\n"
        socks = []
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
            sent = 0
            with pytest.raises(OSError):  # a reset: the server read on for a moment, then left
                while sent < 64 * 1024 * 1024:
                    sock.sendall(line)
                    sent += len(line)
            assert sent < 16 * 1024 * 1024, sent  # 1 MiB of head, 8 MiB read on, socket buffers
            socks.append(sock)
        grown = server.peak_rss() - before
        assert grown < 32 * 1024 * 1024, f"peak RSS grew by {grown >> 20} MiB"
        for sock in socks:
            sock.close()
        assert exchange(server, "GET /v2/ HTTP/1.1\r\nHost: x\r\n")[0] == 200
    finally:
        server.stop()


def test_a_head_past_1_mib_is_answered_431_with_the_oci_body(server: ServerProcess) -> None:
    extra = "".join(f"X-Extra-{i}: {'v' * 250 * 1024}\r\n" for i in range(5))
    status, headers, payload = exchange(server, f"GET /v2/ HTTP/1.1\r\nHost: x\r\n{extra}")
    assert status == 431
    assert "server" not in headers
    assert [e["code"] for e in json.loads(payload)["errors"]] == ["UNKNOWN"]
