"""A small upstream registry for the mirror tests: the read side of the distribution API, served
by a real aiohttp server on 127.0.0.1, with the faults a mirror must survive at hand.

It counts every request by (method, path), can answer 503 or 429 to everything, serve wrong
bytes for a digest, cut a blob short, pace a blob slowly (so concurrent pulls overlap), and ask
for Basic or Bearer authentication (its own token endpoint, whose calls are counted too).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.api.helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeUpstream:
    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    mode: str = "up"  # "up", "down" (503), "throttle" (429)
    corrupt: dict[str, bytes] = field(default_factory=dict)  # digest -> the bytes served instead
    cut: set[str] = field(default_factory=set)  # digests whose transfer stops half way
    stall: set[str] = field(default_factory=set)  # ... whose transfer pauses half way, for a minute
    pace: float = 0.0  # seconds between 64 KiB chunks of a blob
    auth: str = ""  # "", "basic", "bearer"
    user: tuple[str, str] = ("alice", "secret")
    token_lifetime: int = 300
    finished: dict[str, float] = field(default_factory=dict)  # digest -> when its last byte went
    server: TestServer | None = None
    port: int | None = None  # kept across a stop and a start

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push(self, name: str, tag: str | None, layers: list[bytes]) -> tuple[str, bytes]:
        """An OCI image with these layers; returns (manifest digest, manifest bytes)."""
        config = b'{"architecture":"amd64","os":"linux","tag":"%s"}' % (tag or "").encode()
        for blob in (config, *layers):
            self.blobs[sha256(blob)] = blob
        body = (
            b'{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"%s","digest":"%s",'
            b'"size":%d},"layers":[%s]}'
            % (
                OCI_MANIFEST.encode(), OCI_CONFIG.encode(), sha256(config).encode(), len(config),
                b",".join(b'{"mediaType":"%s","digest":"%s","size":%d}'
                          % (OCI_LAYER.encode(), sha256(x).encode(), len(x)) for x in layers),
            )
        )  # fmt: skip
        digest = sha256(body)
        self.manifests[(name, digest)] = (OCI_MANIFEST, body)
        if tag is not None:
            self.manifests[(name, tag)] = (OCI_MANIFEST, body)
        return digest, body

    async def start(self) -> FakeUpstream:
        app = web.Application()
        app.router.add_get("/token", self._token)
        app.router.add_route("*", "/v2/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1", port=self.port)
        await self.server.start_server()
        self.port = self.server.port
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()

    def gets(self, kind: str) -> int:
        """GET requests for `manifests` or `blobs`."""
        return sum(n for (m, p), n in self.counts.items() if m == "GET" and f"/{kind}/" in p)

    async def _token(self, request: web.Request) -> web.Response:
        self.counts[("GET", "/token")] += 1
        if request.headers.get("Authorization") != self._basic():
            return web.Response(status=401)
        scope = request.query.get("scope", "")
        return web.json_response({"token": f"tok-{scope}", "expires_in": self.token_lifetime})

    def _basic(self) -> str:
        return "Basic " + base64.b64encode(":".join(self.user).encode()).decode()

    def _authorized(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "")
        if self.auth == "basic":
            return given == self._basic()
        if self.auth == "bearer":
            return given.startswith("Bearer tok-repository:")
        return True

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.counts[(request.method, request.path)] += 1
        if self.mode == "down":
            return web.Response(status=503)
        if self.mode == "throttle":
            return web.Response(status=429, headers={"Retry-After": "7"})
        if not self._authorized(request):
            challenge = 'Basic realm="fake"' if self.auth == "basic" else (
                f'Bearer realm="{self.url}/token",service="fake"')
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        tail = request.match_info["tail"]
        if tail == "":
            return web.json_response({})
        if "/manifests/" in tail:
            name, _, reference = tail.rpartition("/manifests/")
            found = self.manifests.get((name, reference))
            if found is None:
                return web.Response(status=404)
            media_type, body = found
            headers = {"Docker-Content-Digest": sha256(body), "Content-Type": media_type}
            if request.method == "HEAD":
                return web.Response(headers={**headers, "Content-Length": str(len(body))})
            return web.Response(body=body, headers=headers)
        if "/blobs/" in tail:
            return await self._blob(request, tail.rpartition("/blobs/")[2])
        if tail.endswith("/tags/list"):
            name = tail[: -len("/tags/list")]
            tags = sorted(r for (n, r) in self.manifests if n == name and ":" not in r)
            return web.json_response({"name": name, "tags": tags})
        return web.Response(status=404)

    async def _blob(self, request: web.Request, digest: str) -> web.StreamResponse:
        data = self.blobs.get(digest)
        if data is None:
            return web.Response(status=404)
        data = self.corrupt.get(digest, data)
        headers = {"Content-Length": str(len(data)), "Docker-Content-Digest": digest}
        if request.method == "HEAD":
            return web.Response(headers=headers)
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        end = len(data) // 2 if digest in self.cut else len(data)
        for start in range(0, end, 65536):
            if digest in self.stall and start >= len(data) // 2:
                await asyncio.sleep(60)  # the connection stays open, silent
            await response.write(data[start : min(start + 65536, end)])
            if start + 65536 >= end:
                self.finished[digest] = time.monotonic()
            if self.pace:
                await asyncio.sleep(self.pace)
        if digest in self.cut:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response


@contextlib.asynccontextmanager
async def running(**fields: Any) -> AsyncIterator[FakeUpstream]:
    """A started FakeUpstream (``fields`` set on it), stopped on the way out."""
    fake = await FakeUpstream(**fields).start()
    try:
        yield fake
    finally:
        await fake.stop()
