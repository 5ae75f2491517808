"""The one HTTP client of the object-store drivers (azure, gcs, swift and s3).

`RestClient.request` signs each attempt (signatures carry the time), bounds it by connect and
read timeouts, spaces attempts by an optional rate limit, retries transport failures, 408, 429,
5xx and the error codes a service calls transient by the storage retry policy (retry.py), and
turns every other failure into a storage error: a missing object is `PathNotFound`, a read past
the end `RangeNotSatisfiable`, anything else `RestError` with the service's own error code and
message. Drivers never see aiohttp errors.

What differs by service is declared, not coded again: the signer and the error document's reader
are the driver's (`Signer`, `Describer`); `RestSettings` carries the pool, the socket buffer, the
default content type and the service's transient codes; a request whose 2xx answer can still
carry an error (S3's copies and multipart completion) passes its own `inspect`. A seekable body
(S3's `PartBody`, a view of the upload's buffers) is rewound and sent again on each attempt.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from fastreg import __version__
from fastreg.storage.base import PathNotFound, StorageError
from fastreg.storage.clientparams import ClientParams
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
#: the body of a 2xx answer -> (error code, message) of an error it carries, else None.
Inspector = Callable[[bytes], tuple[str, str] | None]
#: What a request sends: bytes, or a seekable stream rewound before each attempt.
Body = bytes | io.BytesIO | None
#: Codes of a missing bucket or container: a 404 that is not a missing object.
_MISSING_STORE = frozenset({"ContainerNotFound", "BucketNotFound", "NoSuchBucket"})


@dataclass(frozen=True, slots=True)
class RestSettings:
    service: str  # "azure", "gcs": names the service in messages
    maxretries: int
    connecttimeout: float
    readtimeout: float
    connections: int = 256  # the pool's size: requests beyond it wait for a connection
    verify_tls: bool = True  # False: no certificate checks (swift's `insecureskipverify`)
    read_bufsize: int = 2**16  # per response: reading pauses at twice this much unread
    #: given to a PUT or POST without one (and signed); None: no Content-Type unless the caller
    #: sets one (S3 signs what it sends: aiohttp may add nothing after the signature)
    content_type: str | None = "application/octet-stream"
    retry_codes: frozenset[str] = frozenset()  # service error codes worth another attempt
    throttle_codes: frozenset[str] = frozenset()  # ... after a throttled wait

    @classmethod
    def of(cls, service: str, params: ClientParams, **options: Any) -> RestSettings:
        """The settings of a driver whose parameters read the client keys (clientparams.py)."""
        return cls(service, params.maxretries, params.connecttimeout, params.readtimeout, **options)


class RestClient:
    def __init__(
        self,
        settings: RestSettings,
        sign: Signer,
        describe: Describer,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self._sign = sign
        self._describe = describe
        self._before = before  # ahead of each attempt: a rate limiter
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
                    enable_cleanup_closed=True,  # TLS transports a peer never closed
                ),
                auto_decompress=False,  # blob bytes go through exactly as stored
                trust_env=False,
                read_bufsize=self.settings.read_bufsize,
                headers={"User-Agent": f"fastreg/{__version__}"},
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
        body: Body = None,
        expect: tuple[int, ...] = (200,),
        stream: bool = False,
        inspect: Inspector | None = None,
    ) -> aiohttp.ClientResponse:
        """One call, retried (retry.py); the response has an expected status. ``stream``: the
        caller reads the body and releases the response, else the body is read (``await
        resp.read()`` is free). ``inspect``: an error found in a 2xx body is retried.
        """
        content_type = self.settings.content_type

        async def attempt() -> aiohttp.ClientResponse:
            send = dict(headers or {})
            if (content_type and method in ("PUT", "POST")
                    and not any(k.lower() == "content-type" for k in send)):  # fmt: skip
                send["Content-Type"] = content_type  # aiohttp's default, signed
            if isinstance(body, io.IOBase):
                body.seek(0)  # a retry sends it again from the start
            await self._sign(method, url, send)
            where = f"{self.settings.service} {op} {path}"
            inside: tuple[str, str] | None = None
            try:
                resp = await self.session().request(
                    method, url, headers=send, data=body, timeout=self._timeout,
                    allow_redirects=False, skip_auto_headers=("Content-Type",),
                )  # fmt: skip
            except TRANSPORT_ERRORS as exc:
                raise Retry(StorageError(f"{where}: {type(exc).__name__}: {exc}")) from exc
            if resp.status in expect:
                if not stream:
                    try:
                        data = await resp.read()
                    except TRANSPORT_ERRORS as exc:
                        resp.release()
                        raise Retry(StorageError(f"{where}: {type(exc).__name__}")) from exc
                inside = None if stream or inspect is None else inspect(data)
                if inside is None:
                    return resp
                code, message = inside  # an error inside a 2xx: transient (botocore's rule)
            else:
                try:
                    data = await resp.read()
                except TRANSPORT_ERRORS:
                    data = b""
                finally:
                    resp.release()
                code, message = self._describe(resp.status, resp.headers, data)
            error = self.error(op, path, resp.status, code, message)
            s = self.settings
            if inside or resp.status in RETRY_STATUSES or code in s.retry_codes:
                throttled = resp.status in THROTTLE_STATUSES or code in s.throttle_codes
                raise Retry(error, throttled=throttled)
            raise error

        return await retrying(
            self.settings.maxretries + 1, attempt, before=self._before,
            what=f"{self.settings.service} {op} {path}",
        )  # fmt: skip

    def error(self, op: str, path: str, status: int, code: str, message: str) -> StorageError:
        if status == 404 and code not in _MISSING_STORE:
            return PathNotFound(path)
        kind = RangeNotSatisfiable if status == 416 else RestError
        text = f"{self.settings.service} {op} {path}: {status} {code}: {message}"
        return kind(text, status, code)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
