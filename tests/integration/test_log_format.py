"""The logs of a real `fastreg serve`, read as a log pipeline built for Distribution reads them.

One API session (a push with the API test helpers, pulls, a 404, 401s) against a fastreg process
with htpasswd auth, with `log.formatter: json` and `text`; every line the process writes is
parsed (`json.loads`; logfmt with `logfmtkv` in its strict mode, which accepts exactly what
go-logfmt, Loki's parser, accepts) and each request's "response completed" line is checked field
by field. The same session against Distribution 2.8 (Debian's `docker-registry`) gives the field
names fastreg must write. Then the client address rule for `http.trustedproxies`, both ways.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import logfmtkv
import orjson
import pytest
from multidict import CIMultiDictProxy

from tests.api.helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, sha256
from tests.auth.tokens import write_htpasswd
from tests.integration.conftest import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration

AGENT = "fastreg-log-test/1.0 (go-compatible)"
ALICE = ("alice", "alice-pw")


@dataclass
class Sent:
    """One request of the session and what its answer was."""

    method: str
    uri: str
    status: int
    written: int
    user: str | None


async def _session(url: str) -> list[Sent]:
    """Push (POST, PUT ?digest= for each blob, as Distribution 2.8 takes it; the manifest),
    pull, fetch by digest, a 404, a tag list, two 401s; every request recorded."""
    sent: list[Sent] = []

    async def call(method: str, uri: str, auth: tuple[str, str] | None = ALICE, **kw: Any
                   ) -> tuple[bytes, CIMultiDictProxy[str]]:  # fmt: skip
        async with (aiohttp.ClientSession(headers=_headers(auth)) as session,
                    session.request(method, url + uri, **kw) as resp):  # fmt: skip
            body = await resp.read()
            user = auth[0] if auth is not None and resp.status != 401 else None
            sent.append(Sent(method, uri, resp.status, len(body) if method != "HEAD" else 0, user))
            return body, resp.headers

    layer = b"log-test-layer" * 200
    config = b'{"architecture":"amd64","os":"linux"}'
    for blob in (config, layer):
        _, headers = await call("POST", "/v2/logs/app/blobs/uploads/")
        upload = urllib.parse.urlsplit(headers["Location"])
        await call("PUT", f"{upload.path}?{upload.query}&digest={sha256(blob)}", data=blob,
                   headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    manifest = orjson.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config), "layers": [descriptor(OCI_LAYER, layer)],
    })  # fmt: skip
    await call("PUT", "/v2/logs/app/manifests/v1", data=manifest,
               headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
    assert (await call("GET", "/v2/"))[0] == b"{}"
    oci = {"Accept": OCI_MANIFEST}
    assert (await call("GET", "/v2/logs/app/manifests/v1", headers=oci))[0] == manifest
    assert (await call("GET", f"/v2/logs/app/blobs/{sha256(layer)}"))[0] == layer
    await call("GET", f"/v2/logs/app/manifests/{sha256(manifest)}", headers=oci)
    await call("GET", "/v2/logs/app/manifests/nope", headers=oci)
    await call("GET", "/v2/logs/app/tags/list?n=1")
    await call("GET", "/v2/", None)
    await call("GET", "/v2/logs/app/manifests/v1", ("alice", "wrong"))
    statuses = [s.status for s in sent]
    assert statuses == [202, 201, 202, 201, 201, 200, 200, 200, 200, 404, 200, 401, 401], sent
    return sent


def _expected_uri(uri: str) -> str:
    """fastreg's `http.request.uri`: the path, and of the query only what carries no secret."""
    parts = urllib.parse.urlsplit(uri)
    kept = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k in ("n", "last", "mount", "from")]
    return parts.path + ("?" + urllib.parse.urlencode(kept) if kept else "")


def _headers(auth: tuple[str, str] | None) -> dict[str, str]:
    headers = {"User-Agent": AGENT}
    if auth is not None:
        headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
    return headers


def _start(factory: ServerFactory, tmp_path: Path, formatter: str, http: dict | None = None
           ) -> ServerProcess:  # fmt: skip
    tmp_path.mkdir(parents=True, exist_ok=True)
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"})
    return factory(tmp_path / "root", {
        "log": {"level": "info", "formatter": formatter, "fields": {"service": "registry"}},
        "auth": {"htpasswd": {"realm": "logs", "path": htpasswd}},
        "http": http or {},
    })  # fmt: skip


def _parser(formatter: str) -> Callable[[str], dict[str, Any]]:
    if formatter == "text":
        return lambda line: logfmtkv.parse(line, strict=True)
    return json.loads


def _lines(server: ServerProcess, formatter: str) -> list[dict[str, Any]]:
    """Every line the process wrote, parsed; one that does not parse fails the test."""
    parse = _parser(formatter)
    out = []
    for line in server.output().splitlines():
        try:
            entry = parse(line)
        except ValueError as exc:
            raise AssertionError(f"a {formatter} log line that does not parse: {line!r}") from exc
        if formatter == "logstash":  # logstash's names for logrus' time and msg
            assert entry.pop("@version") == "1" and "time" not in entry and "msg" not in entry
            entry["time"], entry["msg"] = entry.pop("@timestamp"), entry.pop("message")
        out.append(entry)
    return out


def _completed(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The session's "response completed" lines (not those of the fixture's readiness probe)."""
    return [e for e in lines if str(e.get("msg", "")).startswith("response completed")
            and e.get("http.request.useragent") == AGENT]  # fmt: skip


@pytest.mark.parametrize("formatter", ["json", "text", "logstash"])
async def test_every_line_parses_with_distributions_fields(
    fastreg_server: ServerFactory, tmp_path: Path, formatter: str
) -> None:
    server = _start(fastreg_server, tmp_path, formatter)
    sent = await _session(server.url)
    server.stop()  # every line written
    lines = _lines(server, formatter)
    assert {"time", "level", "msg", "instance.id", "version", "pid"} <= set(lines[0]), lines[0]
    assert all(e["service"] == "registry" for e in lines)  # log.fields on every line
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", e["time"]) for e in lines)
    # in the text format every value is a string: compare what the line says
    typed: Callable[[object], object] = str if formatter == "text" else (lambda v: v)
    completed = _completed(lines)
    assert len(completed) == len(sent), [e["http.request.uri"] for e in completed]
    for line, req in zip(completed, sent, strict=True):
        where = (req, line)
        assert line["http.request.method"] == req.method, where
        assert line["http.request.uri"] == _expected_uri(req.uri), where
        assert line["http.response.status"] == typed(req.status), where
        assert line["http.response.written"] == typed(req.written), where
        assert line["http.request.useragent"] == AGENT, where
        assert line["http.request.host"] == server.host, where
        assert re.fullmatch(r"127\.0\.0\.1:\d+", line["http.request.remoteaddr"]), where
        assert re.fullmatch(r"\d+(\.\d+)?(ns|µs|ms|s)", line["http.response.duration"]), where
        assert line.get("auth.user.name") == req.user, where
        assert line["level"] == "info", where
        if req.uri != "/v2/":
            assert line["vars.name"] == "logs/app", where
        if req.status >= 400:
            assert line["msg"] == "response completed with error", where
            code = "manifest unknown" if req.status == 404 else "unauthorized"
            assert line["err.code"] == code, where
        else:
            assert line["msg"] == "response completed", where
    pull = completed[6]
    assert pull["vars.reference"] == "v1" and pull["http.response.contenttype"] == OCI_MANIFEST
    assert pull["digest"].startswith("sha256:")  # fastreg's own: the manifest's digest
    assert completed[7]["vars.digest"] == sha256(b"log-test-layer" * 200)
    assert completed[1]["vars.uuid"] and completed[1]["http.request.contenttype"] == "application/octet-stream"
    assert completed[3]["bytes_in"] == typed(len(b"log-test-layer" * 200))
    assert "vars.name" not in completed[5] and "vars.name" not in completed[11]


@pytest.fixture
def distribution_lines(distribution_server: ServerFactory, tmp_path: Path) -> Iterator[Any]:
    async def run() -> list[dict[str, Any]]:
        server = _start(distribution_server, tmp_path / "dist", "json")
        await _session(server.url)
        server.stop()
        # Distribution writes gorilla's combined access log on stdout, logrus' JSON on stderr
        return [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]

    yield run


async def test_fastreg_writes_every_field_distribution_writes(
    fastreg_server: ServerFactory, distribution_lines: Any, tmp_path: Path
) -> None:
    """Per request, the keys of Distribution's "response completed" line are in fastreg's."""
    theirs = {_key(e): e for e in _completed(await distribution_lines())}
    server = _start(fastreg_server, tmp_path / "fastreg", "json")
    await _session(server.url)
    server.stop()
    ours = {_key(e): e for e in _completed(_lines(server, "json"))}
    compared = 0
    for key, line in theirs.items():
        missing = set(line) - set(ours[key]) - {"go.version"}
        assert not missing, (key, missing, line)
        compared += 1
    assert compared >= 7, theirs.keys()


def _key(line: dict[str, Any]) -> tuple[str, str]:
    """A request of the session in either server's log: method and uri, less the upload's id
    and the query Distribution logs whole."""
    uri = re.sub(r"/uploads/[^/?]+", "/uploads/ID", _expected_uri(line["http.request.uri"]))
    return line["http.request.method"], uri


async def _claimed_by(server: ServerProcess, headers: dict[str, str]) -> str:
    async with (aiohttp.ClientSession(headers=_headers(ALICE)) as client,
                client.get(server.url + "/v2/", headers=headers) as resp):  # fmt: skip
        assert resp.status == 200
    request_id = headers["X-Request-Id"]
    server.stop()  # the line is written
    line = next(e for e in _completed(_lines(server, "json")) if e["http.request.id"] == request_id)
    return str(line["http.request.remoteaddr"])


@pytest.mark.parametrize(
    "headers, client",
    [
        ({"X-Forwarded-For": "203.0.113.9"}, "203.0.113.9"),
        ({"X-Real-IP": "203.0.113.9"}, "203.0.113.9"),
        # a client's own X-Forwarded-For, to which the one trusted proxy appended its peer
        ({"X-Forwarded-For": "1.2.3.4, 203.0.113.9"}, "203.0.113.9"),
        # the trusted proxies' own hops are walked past
        ({"X-Forwarded-For": "203.0.113.9, 127.0.0.1"}, "203.0.113.9"),
        ({"X-Forwarded-For": "::ffff:198.51.100.4"}, "198.51.100.4"),
        # a malformed hop ends the walk at the proxy that relayed it
        ({"X-Forwarded-For": "203.0.113.9, not-an-ip"}, "peer"),
        ({"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "198.51.100.7"}, "203.0.113.9"),
    ],
    ids=["xff", "x-real-ip", "spoofed-left-most", "trusted-hops", "v4-mapped", "malformed", "both"],
)
async def test_a_trusted_proxy_names_the_client(
    fastreg_server: ServerFactory, tmp_path: Path, headers: dict[str, str], client: str
) -> None:
    server = _start(fastreg_server, tmp_path, "json", {"trustedproxies": ["127.0.0.1/32", "::1/128"]})
    remote = await _claimed_by(server, {**headers, "X-Request-Id": "proxied-1"})
    if client == "peer":
        assert re.fullmatch(r"127\.0\.0\.1:\d+", remote), remote
    else:
        assert remote == client


@pytest.mark.parametrize("trusted", [None, ["10.0.0.0/8"]], ids=["key-absent", "other-network"])
@pytest.mark.parametrize("header", ["X-Forwarded-For", "X-Real-IP"])
async def test_an_untrusted_peer_cannot_name_the_client(
    fastreg_server: ServerFactory, tmp_path: Path, trusted: list[str] | None, header: str
) -> None:
    http = {"trustedproxies": trusted} if trusted else {}
    server = _start(fastreg_server, tmp_path, "json", http)
    remote = await _claimed_by(server, {header: "203.0.113.9", "X-Request-Id": "direct-1"})
    assert re.fullmatch(r"127\.0\.0\.1:\d+", remote), remote
