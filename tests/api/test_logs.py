"""Access logs: one line per request with request id, repository, digest, status, bytes and
duration, in JSON and text; credentials never reach a log line (nor a notification)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from fastreg.server.logs import JSONFormatter, TextFormatter
from tests.api.conftest import MakeClient
from tests.api.helpers import OCI_MANIFEST, location, open_upload, push_image, sha256


class Capture(logging.Handler):
    """Formats every record of every logger, as the CLI's handler would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.json = JSONFormatter({"service": "fastreg"})
        self.text = TextFormatter()
        self.lines: list[str] = []
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("fastreg"):
            return  # aiohttp's own access log is off in `fastreg serve` (access_log=None)
        self.lines.append(self.json.format(record))
        self.texts.append(self.text.format(record))

    def access(self) -> list[dict[str, object]]:
        records = [orjson.loads(line) for line in self.lines]
        return [r for r in records if r["logger"] == "fastreg.access"]


@pytest.fixture
def logs() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(level)


async def test_access_line_fields(make_client: MakeClient, logs: Capture) -> None:
    client = await make_client()
    layer = b"x" * 3000
    digest, manifest = await push_image(client, "logs/app", "v1", [layer])
    logs.lines.clear()
    resp = await client.get("/v2/logs/app/manifests/v1", headers={
        "Accept": OCI_MANIFEST, "X-Request-Id": "req-123"})
    assert await resp.read() == manifest
    resp = await client.get(f"/v2/logs/app/blobs/{sha256(layer)}")
    assert await resp.read() == layer
    resp = await client.get("/v2/logs/app/blobs/" + sha256(b"nope"))
    error_body = await resp.read()
    pull, blob, missing = logs.access()
    assert pull["http.request.id"] == "req-123"
    assert pull["vars.name"] == "logs/app" and pull["vars.reference"] == "v1"
    assert pull["digest"] == digest
    assert pull["http.response.status"] == 200
    assert pull["http.response.written"] == len(manifest)
    assert pull["http.response.contenttype"] == OCI_MANIFEST
    assert pull["route"] == "manifest" and pull["http.request.method"] == "GET"
    assert pull["http.request.uri"] == "/v2/logs/app/manifests/v1"
    assert isinstance(pull["http.response.duration.epoch"], float)
    assert pull["msg"] == "response completed"
    assert blob["digest"] == sha256(layer) == blob["vars.digest"]
    # sendfile on the filesystem driver, a stream in memory
    assert blob["http.response.written"] == len(layer)
    assert missing["http.response.status"] == 404 and missing["digest"] == sha256(b"nope")
    assert missing["http.response.written"] == len(error_body)
    assert missing["msg"] == "response completed with error"
    assert missing["err.code"] == "blob unknown"  # as logrus writes errcode.ErrorCode
    assert all(line["service"] == "fastreg" and line["level"] == "info" for line in logs.access())


async def test_chunked_upload_counts_bytes_in(make_client: MakeClient, logs: Capture) -> None:
    client = await make_client()
    url = await open_upload(client, "up")

    async def chunks() -> object:
        yield b"a" * 70_000
        yield b"b" * 30_000

    resp = await client.patch(url, data=chunks())
    assert resp.status == 202
    resp = await client.put(location(resp), params={"digest": sha256(b"a" * 70_000 + b"b" * 30_000)})
    assert resp.status == 201
    patch, put = logs.access()[-2:]
    assert patch["bytes_in"] == 100_000 and patch["http.response.status"] == 202
    assert put["digest"] == sha256(b"a" * 70_000 + b"b" * 30_000)
    assert put["http.response.written"] == 0


async def test_credentials_never_logged(
    make_client: MakeClient, logs: Capture, tmp_path: Path
) -> None:
    from tests.api.test_notify import Listener

    listener = await Listener().start()
    try:
        client = await make_client(notifications={
            "endpoints": [{"name": "n", "url": listener.url()}],
            "spool": {"directory": str(tmp_path / "spool")}})
        secret = {"Authorization": "Bearer SECRET", "Cookie": "session=SECRET",
                  "X-Registry-Auth": "SECRET"}
        await push_image(client, "hidden", "v1", [b"layer"])
        for method, path in [("GET", "/v2/"), ("GET", "/v2/hidden/manifests/v1"),
                             ("GET", "/v2/hidden/tags/list?n=1&token=SECRET"),
                             ("POST", "/v2/hidden/blobs/uploads/?digest=sha256:SECRET"),
                             ("DELETE", "/v2/hidden/manifests/v1")]:
            resp = await client.request(method, path, headers={**secret, "Accept": OCI_MANIFEST})
            await resp.read()
        await listener.wait(1)
    finally:
        await listener.stop()
    assert len(logs.access()) >= 5
    assert not [line for line in logs.lines + logs.texts if "SECRET" in line]
    assert not [post for post in listener.posts if b"SECRET" in orjson.dumps(post)]
