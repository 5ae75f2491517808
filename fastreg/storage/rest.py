"""What the REST drivers (azure, gcs) share: parameter parsing and one retrying aiohttp client.

`RestClient.request` signs each attempt (signatures carry the time), bounds it by connect and
read timeouts, retries transport failures, 408, 429 and 5xx with jittered exponential backoff, and
turns every other failure into a storage error: a missing object is `PathNotFound`, anything else
`StorageError` with the service's own error code and message. Drivers never see aiohttp errors.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from fastreg.storage.base import PathNotFound, StorageError

#: Failures of the transport itself: worth another attempt.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
BACKOFF_BASE = 0.1
BACKOFF_MAX = 5.0


class RestError(StorageError):
    """The service answered with an error; ``status`` and the service's ``code`` kept."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


#: (method, url, headers) -> None: adds the authorization to ``headers`` for one attempt.
Signer = Callable[[str, URL, dict[str, str]], Awaitable[None]]
#: (status, headers, body) -> (error code, message), from the service's error document.
Describer = Callable[[int, Mapping[str, str], bytes], tuple[str, str]]


@dataclass(frozen=True, slots=True)
class RestSettings:
    service: str  # "azure", "gcs": names the service in messages
    maxretries: int
    connecttimeout: float
    readtimeout: float
    connections: int = 256  # the pool's size: requests beyond it wait for a connection


class RestClient:
    def __init__(self, settings: RestSettings, sign: Signer, describe: Describer) -> None:
        self.settings = settings
        self._sign = sign
        self._describe = describe
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connecttimeout, sock_read=settings.readtimeout
        )

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.settings.connections, ttl_dns_cache=60),
                auto_decompress=False,  # blob bytes go through exactly as stored
                trust_env=False,
            )
        return self._session

    async def request(
        self,
        op: str,
        path: str,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        expect: tuple[int, ...] = (200,),
        stream: bool = False,
    ) -> aiohttp.ClientResponse:
        """One call, retried; the response has an expected status. ``stream``: the caller reads
        the body and releases the response, else the body is read (``await resp.read()`` is free).
        """
        attempts = self.settings.maxretries + 1
        for attempt in range(attempts):
            last = attempt + 1 == attempts
            send = dict(headers or {})
            if method in ("PUT", "POST") and not any(k.lower() == "content-type" for k in send):
                send["Content-Type"] = "application/octet-stream"  # aiohttp's default, signed
            await self._sign(method, url, send)
            try:
                resp = await self.session().request(
                    method, url, headers=send, data=body, timeout=self._timeout,
                    allow_redirects=False,
                )
            except TRANSPORT_ERRORS as exc:
                if last:
                    raise StorageError(
                        f"{self.settings.service} {op} {path}: {type(exc).__name__}: {exc}"
                    ) from exc
                await _backoff(attempt)
                continue
            if resp.status in expect:
                if not stream:
                    try:
                        await resp.read()
                    except TRANSPORT_ERRORS as exc:
                        resp.release()
                        if last:
                            raise StorageError(
                                f"{self.settings.service} {op} {path}: {type(exc).__name__}"
                            ) from exc
                        await _backoff(attempt)
                        continue
                return resp
            try:
                data = await resp.read()
            except TRANSPORT_ERRORS:
                data = b""
            finally:
                resp.release()
            if resp.status in RETRY_STATUSES and not last:
                await _backoff(attempt)
                continue
            raise self.error(op, path, resp.status, resp.headers, data)
        raise AssertionError("unreachable")

    def error(
        self, op: str, path: str, status: int, headers: Mapping[str, str], body: bytes
    ) -> StorageError:
        code, message = self._describe(status, headers, body)
        if status == 404 and code not in ("ContainerNotFound", "BucketNotFound"):
            return PathNotFound(path)
        return RestError(f"{self.settings.service} {op} {path}: {status} {code}: {message}",
                         status, code)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _backoff(attempt: int) -> None:
    delay = min(BACKOFF_MAX, BACKOFF_BASE * 2**attempt)
    await asyncio.sleep(delay / 2 + random.random() * delay / 2)


async def delete_all(
    names: list[str], delete_one: Callable[[str], Awaitable[None]], concurrency: int
) -> None:
    """Delete many objects, ``concurrency`` at a time; one already gone is no failure."""
    limit = asyncio.Semaphore(concurrency)

    async def one(name: str) -> None:
        async with limit:
            try:
                await delete_one(name)
            except PathNotFound:
                pass  # deleted meanwhile: the goal is reached

    await asyncio.gather(*(one(n) for n in names))
