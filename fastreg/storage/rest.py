"""What the REST drivers (azure, gcs, swift) share: parameter parsing and one retrying client.

`RestClient.request` signs each attempt (signatures carry the time), bounds it by connect and
read timeouts, retries transport failures, 408, 429 and 5xx by the storage retry policy (retry.py,
which the S3 client follows too), and turns every other failure into a storage error: a missing
object is `PathNotFound`, a read past the end `RangeNotSatisfiable`, anything else `RestError` with
the service's own error code and message. Drivers never see aiohttp errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from fastreg.storage.base import PathNotFound, StorageError
from fastreg.storage.retry import (
    RETRY_STATUSES,
    THROTTLE_STATUSES,
    TRANSPORT_ERRORS,
    Retry,
    retrying,
)

__all__ = ["TRANSPORT_ERRORS", "RestClient", "RestError", "RestSettings"]


class RestError(StorageError):
    """The service answered with an error; ``status`` and the service's ``code`` kept."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RangeNotSatisfiable(RestError):
    """416: a ranged read starts at or past the end of the object."""


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
    verify_tls: bool = True  # False: no certificate checks (swift's `insecureskipverify`)


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
                connector=aiohttp.TCPConnector(
                    limit=self.settings.connections,
                    ttl_dns_cache=60,
                    ssl=self.settings.verify_tls,
                ),
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
        """One call, retried (retry.py); the response has an expected status. ``stream``: the
        caller reads the body and releases the response, else the body is read (``await
        resp.read()`` is free).
        """

        async def attempt() -> aiohttp.ClientResponse:
            send = dict(headers or {})
            if method in ("PUT", "POST") and not any(k.lower() == "content-type" for k in send):
                send["Content-Type"] = "application/octet-stream"  # aiohttp's default, signed
            await self._sign(method, url, send)
            where = f"{self.settings.service} {op} {path}"
            try:
                resp = await self.session().request(
                    method, url, headers=send, data=body, timeout=self._timeout,
                    allow_redirects=False,
                )  # fmt: skip
            except TRANSPORT_ERRORS as exc:
                raise Retry(StorageError(f"{where}: {type(exc).__name__}: {exc}")) from exc
            if resp.status in expect:
                if not stream:
                    try:
                        await resp.read()
                    except TRANSPORT_ERRORS as exc:
                        resp.release()
                        raise Retry(StorageError(f"{where}: {type(exc).__name__}")) from exc
                return resp
            try:
                data = await resp.read()
            except TRANSPORT_ERRORS:
                data = b""
            finally:
                resp.release()
            error = self.error(op, path, resp.status, resp.headers, data)
            if resp.status in RETRY_STATUSES:
                raise Retry(error, throttled=resp.status in THROTTLE_STATUSES)
            raise error

        return await retrying(self.settings.maxretries + 1, attempt, what=f"{op} {path}")

    def error(
        self, op: str, path: str, status: int, headers: Mapping[str, str], body: bytes
    ) -> StorageError:
        code, message = self._describe(status, headers, body)
        if status == 404 and code not in ("ContainerNotFound", "BucketNotFound"):
            return PathNotFound(path)
        kind = RangeNotSatisfiable if status == 416 else RestError
        text = f"{self.settings.service} {op} {path}: {status} {code}: {message}"
        return kind(text, status, code)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
