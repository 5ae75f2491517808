"""The driver's S3 client: the S3 operations the driver uses (operations.py), sent over one
aiohttp session.

botocore spent about 1.25 ms of CPU on every request here (measured: a HEAD loop against
SeaweedFS; cProfile shows model-driven parsing, a user-agent string rebuilt per request, endpoint
rules, hooks and dateutil), several times the request itself, and its S3 client costs each worker
some 22 MiB. This client builds each request directly, signs it (signing.py), parses the few
fields the driver reads, and keeps botocore's behaviour where it matters: retries (the storage
retry policy, retry.py) on transport failures, 5xx, throttling, and the "200 with an error inside"
that CopyObject, UploadPartCopy and CompleteMultipartUpload can answer; path-style or
virtual-hosted addressing; SigV4 with the payload's sha256 signed (or SigV2 with ``v4auth:
false``); rate limit and timeouts. Operations take botocore's parameter names and answer
botocore's field names, so the driver reads like code written against the S3 API reference.

Credentials (credentials.py) are ``accesskey``/``secretkey`` (and ``sessiontoken``), else the
environment's ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``; without either, botocore's
credential chain (profiles, web identity, container and instance roles), refreshed as it needs.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import re
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from fastreg import __version__
from fastreg.storage.base import PathNotFound, StorageError
from fastreg.storage.retry import (
    RETRY_STATUSES,
    THROTTLE_STATUSES,
    TRANSPORT_ERRORS,
    Retry,
    retrying,
)
from fastreg.storage.s3.body import PartBody
from fastreg.storage.s3.credentials import CredentialChain
from fastreg.storage.s3.operations import Operation, Parser, Request, text, xml
from fastreg.storage.s3.params import S3Params
from fastreg.storage.s3.signing import EMPTY_SHA256, SigV2, SigV4, canonical_query, uri_encode

__all__ = ["TRANSPORT_ERRORS", "S3Client", "S3Error", "translate"]

_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchUpload"})
_AUTH_HINTS = {
    "SignatureDoesNotMatch": "the secret key does not match the access key (check secretkey)",
    "InvalidAccessKeyId": "the access key is unknown to the server (check accesskey)",
    "AccessDenied": "access denied (check the credentials and the bucket policy)",
    "403": "access denied (check accesskey, secretkey and the bucket policy)",
    "NoSuchBucket": "the bucket does not exist",
}
#: S3's codes for throttling (botocore's standard retry mode): retried after longer waits.
_THROTTLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
     "BandwidthLimitExceeded", "TooManyRequestsException", "RequestThrottled"}
)  # fmt: skip
#: Answers worth another attempt besides retry.RETRY_STATUSES: transient and throttling.
_RETRY_CODES = _THROTTLE_CODES | {
    "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed",
    "PriorRequestNotComplete",
}  # fmt: skip
#: Bodies larger than this are hashed for the signature on a thread, off the event loop.
_HASH_INLINE = 256 * 1024
#: Socket read buffer of a download: it pauses reading at twice this much unread (per stream).
READ_BUFSIZE = 256 * 1024
_BUCKET_DNS = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


class S3Error(StorageError):
    """S3 answered with an error; ``code`` is S3's error code (``InvalidRange``, ``403``...)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def translate(exc: Exception, op: str, path: str) -> StorageError:
    """A transport exception as the storage error the rest of fastreg understands."""
    if isinstance(exc, StorageError):
        return exc
    return StorageError(f"s3 {op} {path}: {type(exc).__name__}: {exc}")


def _answer_error(op: str, path: str, code: str, message: str) -> StorageError:
    if code in _NOT_FOUND:
        return PathNotFound(path)
    detail = _AUTH_HINTS.get(code) or message or code
    return S3Error(f"s3 {op} {path}: {code}: {detail}", code)


class RateLimiter:
    """Spaces request starts at least ``1/rate`` seconds apart (``maxrequestspersecond``)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


# -- answers ----------------------------------------------------------------------------------


class StreamingBody:
    """The body of a GetObject answer, read as it arrives; ``close`` releases the connection."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def read(self, n: int = -1) -> bytes:
        """``n`` bytes (fewer only at the end): a reader's block size is what it asked for,
        not the few KiB that reached the socket last."""
        content = self._response.content
        if n < 0:
            return await content.read()
        chunks: list[bytes] = []
        need = n
        while need > 0 and (chunk := await content.read(need)):
            chunks.append(chunk)
            need -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def close(self) -> None:
        self._response.release()


# -- the client -------------------------------------------------------------------------------


class S3Client:
    """The driver's connection to one bucket."""

    def __init__(self, params: S3Params) -> None:
        self.params = params
        self._limiter = RateLimiter(params.maxrequestspersecond)
        self._session: aiohttp.ClientSession | None = None
        self._credentials = CredentialChain(params)
        self._v4 = SigV4(params.region)
        self._v2 = SigV2()
        self._agent = f"fastreg/{__version__}"
        endpoint = params.endpoint_url or _aws_endpoint(params)
        parts = urlsplit(endpoint)
        self._scheme, self._netloc, self._base = parts.scheme, parts.netloc, parts.path.rstrip("/")
        host = parts.hostname or ""
        self._path_style = (
            params.forcepathstyle
            or not _BUCKET_DNS.match(params.bucket)
            or _is_ip(host)
            or host == "localhost"
            or ("." in params.bucket and self._scheme == "https")
        )

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            p = self.params
            connector = aiohttp.TCPConnector(
                limit=max(32, min(p.multipartcopymaxconcurrency, 128)),
                ssl=not p.skipverify,
                enable_cleanup_closed=True,
            )
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=p.connecttimeout, sock_read=p.readtimeout
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                auto_decompress=False,
                read_bufsize=READ_BUFSIZE,
            )
        return self._session

    def _where(self, key: str | None) -> tuple[str, str]:
        """The host and the URI-encoded path of ``key`` (None: the bucket)."""
        bucket = self.params.bucket
        tail = "" if key is None else "/" + uri_encode(key, path=True)
        if self._path_style:
            return self._netloc, f"{self._base}/{bucket}{tail}"
        return f"{bucket}.{self._netloc}", (f"{self._base}{tail}" or "/")

    async def call(self, path: str, operation: Operation) -> Any:
        """Run one S3 operation (operations.py) on the bucket; ``path`` names the file in error
        messages. Attempts are spaced by the rate limit and retried by the storage retry policy."""
        op = operation.name
        return await retrying(
            self.params.maxretries + 1,
            lambda: self._attempt(op, path, operation.request, operation.parse),
            before=self._limiter.wait,
            what=f"s3 {op} {path}",
        )

    async def _attempt(
        self,
        op: str,
        path: str,
        request: Request,
        parse: Parser,
    ) -> dict[str, Any]:
        host, urlpath = self._where(request.key)
        headers = {"host": host, **request.headers, "User-Agent": self._agent}
        body = request.body
        if isinstance(body, PartBody):
            body.seek(0)  # a retry sends it again from the start
        await self._sign(request.method, urlpath, request.query, headers, body)
        del headers["host"]  # aiohttp writes Host from the URL
        query = canonical_query(request.query)
        url = URL(
            f"{self._scheme}://{host}{urlpath}" + (f"?{query}" if query else ""), encoded=True
        )
        try:
            response = await self._session_now().request(
                request.method, url, headers=headers, data=body, skip_auto_headers=("Content-Type",)
            )
        except TRANSPORT_ERRORS as exc:
            raise Retry(translate(exc, op, path)) from exc
        try:
            if response.status >= 300 or (request.error_in_200 and not request.stream):
                data = await response.read()
                self._check(op, path, response, data, request.error_in_200)
            else:
                data = b"" if request.stream else await response.read()
        except TRANSPORT_ERRORS as exc:
            response.release()
            raise Retry(translate(exc, op, path)) from exc
        except BaseException:
            response.release()
            raise
        result = parse(response, data)
        if request.stream:
            result["Body"] = StreamingBody(response)
        else:
            response.release()
        return result

    @staticmethod
    def _check(
        op: str, path: str, response: aiohttp.ClientResponse, data: bytes, in_200: bool
    ) -> None:
        status = response.status
        code, message = str(status), response.reason or ""
        if data.lstrip().startswith(b"<"):
            try:
                root = xml(data)
            except ET.ParseError:
                root = None
            if root is not None and root.tag == "Error":
                code, message = text(root, "Code", code), text(root, "Message", message)
            elif status < 300:
                return  # a 200 whose body is the result
        elif status < 300:
            if in_200 and not data.strip():
                raise Retry(S3Error(f"s3 {op} {path}: empty answer", "InternalError"))
            return
        error = _answer_error(op, path, code, message)
        if status in RETRY_STATUSES or code in _RETRY_CODES or status < 300:
            raise Retry(error, throttled=status in THROTTLE_STATUSES or code in _THROTTLE_CODES)
        raise error

    async def _sign(
        self,
        method: str,
        urlpath: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        body: bytes | PartBody | None,
    ) -> None:
        creds = await self._credentials.get()
        if creds is None:
            return
        now = datetime.datetime.now(datetime.UTC)
        if not self.params.v4auth:
            self._v2.sign(method, self._v2_resource(urlpath), query, headers, creds, now)
            return
        self._v4.sign(method, urlpath, query, headers, await _payload_sha256(body), creds, now)

    def _v2_resource(self, urlpath: str) -> str:
        """What a version 2 signature names: ``/bucket/key`` whatever the addressing style."""
        tail = urlpath[len(self._base) :]
        if self._path_style:
            return tail
        return f"/{self.params.bucket}{tail}"

    async def presign(self, method: str, key: str, expires: float) -> str:
        """A URL for ``method`` (GET or HEAD) on ``key``, valid ``expires`` seconds."""
        host, urlpath = self._where(key)
        creds = await self._credentials.get()
        if creds is None:
            return f"{self._scheme}://{host}{urlpath}"
        now = datetime.datetime.now(datetime.UTC)
        if self.params.v4auth:
            query = self._v4.presign(method, host, urlpath, creds, int(expires), now)
        else:
            query = self._v2.presign(method, self._v2_resource(urlpath), creds, int(expires), now)
        return f"{self._scheme}://{host}{urlpath}?{canonical_query(query)}"

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _payload_sha256(body: bytes | PartBody | None) -> str:
    """The hex sha256 the signature covers: S3 checks it against what arrives."""
    if body is None:
        return EMPTY_SHA256
    if isinstance(body, bytes):
        return hashlib.sha256(body).hexdigest()
    if body.size <= _HASH_INLINE:
        return body.sha256()
    return await asyncio.get_running_loop().run_in_executor(None, body.sha256)


def _aws_endpoint(params: S3Params) -> str:
    region = params.region
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{'https' if params.secure else 'http'}://s3.{region}.{suffix}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
