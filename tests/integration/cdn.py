"""A stand-in for the CDN or web server a storage middleware redirects to: a real HTTP server on
127.0.0.1 serving a registry's storage root from disk, and, as CloudFront, refusing any request
whose canned-policy signature does not verify with the public key or whose `Expires` has passed.

It runs aiohttp in a thread of its own (the test drives real processes synchronously) and keeps
the requests it answered, so a test can tell that the bytes came from here, not the registry.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

_FROM_CLOUDFRONT = str.maketrans("-_~", "+=/")


@dataclass
class Served:
    path: str
    status: int


@dataclass
class CDN:
    root: Path
    public_key: rsa.RSAPublicKey | None = None  # None: a plain static server (redirect)
    keypairid: str = ""
    prefix: str = ""  # a path in front of the storage path (stripped before the file lookup)
    served: list[Served] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def refusal(self, request: web.Request) -> str | None:
        """Why CloudFront would refuse this request (None: it would serve it)."""
        if self.public_key is None:
            return None
        q = request.query
        if set(q) != {"Expires", "Signature", "Key-Pair-Id"}:
            return f"query {sorted(q)}"
        if q["Key-Pair-Id"] != self.keypairid:
            return "key pair id"
        expires = int(q["Expires"])
        if expires < time.time():
            return "expired"
        resource = str(request.url.with_query(None))
        policy = json.dumps(
            {"Statement": [{"Resource": resource,
                            "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}]},
            separators=(",", ":"),
        ).encode()
        signature = base64.b64decode(q["Signature"].translate(_FROM_CLOUDFRONT))
        try:
            self.public_key.verify(signature, policy, padding.PKCS1v15(), hashes.SHA1())
        except InvalidSignature:
            return "signature"
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        refused = self.refusal(request)
        path = request.path
        if refused is not None:
            self.served.append(Served(path, 403))
            return web.Response(status=403, text=f"refused: {refused}\n")
        if not path.startswith(self.prefix + "/"):
            self.served.append(Served(path, 404))
            return web.Response(status=404)
        file = (self.root / path[len(self.prefix) :].lstrip("/")).resolve()
        if not file.is_relative_to(self.root.resolve()) or not file.is_file():
            self.served.append(Served(path, 404))
            return web.Response(status=404)
        self.served.append(Served(path, 200))
        return web.FileResponse(file)


@contextmanager
def running(cdn: CDN) -> Iterator[CDN]:
    """Serve ``cdn`` on an ephemeral port of 127.0.0.1 until the block ends."""
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", cdn.handle)
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        cdn.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    started.wait(10)
    try:
        yield cdn
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
