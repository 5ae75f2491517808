"""The driver's S3 client: the S3 operations the driver uses (operations.py), sent through the
object stores' one HTTP client (`storage/rest.RestClient`: pool, timeouts, rate limit, the storage
retry policy of retry.py).

botocore spent about 1.25 ms of CPU on every request here (measured: a HEAD loop against
SeaweedFS; cProfile shows model-driven parsing, a user-agent string rebuilt per request, endpoint
rules, hooks and dateutil), several times the request itself, and its S3 client costs each worker
some 22 MiB. This client builds each request directly, signs each attempt (signing.py), parses
the few fields the driver reads, and keeps botocore's behaviour where it matters: retries on
transport failures, 5xx, throttling codes, and the "200 with an error inside" that CopyObject,
UploadPartCopy and CompleteMultipartUpload can answer; path-style or virtual-hosted addressing;
SigV4 with the payload's sha256 signed (hashed once per call, on a thread when large) or SigV2
with ``v4auth: false``; rate limit and timeouts. What is S3's own is what this module declares to
the shared client: the signer, the reader of S3's ``<Error>`` document (with hints for the
credential errors), S3's transient and throttling codes, no default Content-Type (SigV2 signs it).
Operations take botocore's parameter names and answer botocore's field names, so the driver reads
like code written against the S3 API reference.

Credentials (credentials.py) are ``accesskey``/``secretkey`` (and ``sessiontoken``), else the
environment's ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``; without either, botocore's
credential chain (profiles, web identity, container and instance roles), refreshed as it needs,
asked on every attempt.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from fastreg.storage.base import StorageError
from fastreg.storage.rest import TRANSPORT_ERRORS, RestClient, RestError, RestSettings
from fastreg.storage.s3.body import PartBody
from fastreg.storage.s3.credentials import CredentialChain
from fastreg.storage.s3.operations import Operation, text, xml
from fastreg.storage.s3.params import S3Params
from fastreg.storage.s3.signing import EMPTY_SHA256, SigV2, SigV4, canonical_query, uri_encode

__all__ = ["TRANSPORT_ERRORS", "RestError", "S3Client", "translate"]

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
#: Every status S3 answers a success with (206: a ranged GetObject, 204: a DeleteObject).
_SUCCESS = tuple(range(200, 300))
#: Bodies larger than this are hashed for the signature on a thread, off the event loop.
_HASH_INLINE = 256 * 1024
#: Socket read buffer of a download: it pauses reading at twice this much unread (per stream).
READ_BUFSIZE = 256 * 1024
_BUCKET_DNS = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def translate(exc: Exception, op: str, path: str) -> StorageError:
    """A transport exception as the storage error the rest of fastreg understands."""
    if isinstance(exc, StorageError):
        return exc
    return StorageError(f"s3 {op} {path}: {type(exc).__name__}: {exc}")


def _error_document(data: bytes) -> tuple[str, str] | None:
    """The code and message of S3's ``<Error>`` document, None for any other body."""
    if not data.lstrip().startswith(b"<"):
        return None
    try:
        root = xml(data)
    except ET.ParseError:
        return None
    if root.tag != "Error":
        return None
    return text(root, "Code"), text(root, "Message")


def describe(status: int, _: Mapping[str, str], data: bytes) -> tuple[str, str]:
    """An error answer's code (the status itself without an error document) and message."""
    code, message = _error_document(data) or ("", "")
    code = code or str(status)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return code, _AUTH_HINTS.get(code) or message or phrase or code


def _inside(data: bytes) -> tuple[str, str] | None:
    """The error a 2xx answer of a copy or a completion carries (an empty one is an error)."""
    if not data.strip():
        return "InternalError", "empty answer"
    return _error_document(data)


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
        self._credentials = CredentialChain(params)
        self._v4 = SigV4(params.region)
        self._v2 = SigV2()
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
        settings = RestSettings.of(
            "s3", params, connections=max(32, min(params.multipartcopymaxconcurrency, 128)),
            verify_tls=not params.skipverify, read_bufsize=READ_BUFSIZE, content_type=None,
            retry_codes=_RETRY_CODES, throttle_codes=_THROTTLE_CODES,
        )  # fmt: skip
        self.rest = RestClient(settings, self._sign, describe,
                               before=RateLimiter(params.maxrequestspersecond).wait)  # fmt: skip

    def _where(self, key: str | None) -> tuple[str, str]:
        """The host and the URI-encoded path of ``key`` (None: the bucket)."""
        bucket = self.params.bucket
        tail = "" if key is None else "/" + uri_encode(key, path=True)
        if self._path_style:
            return self._netloc, f"{self._base}/{bucket}{tail}"
        return f"{bucket}.{self._netloc}", (f"{self._base}{tail}" or "/")

    async def call(self, path: str, operation: Operation) -> Any:
        """Run one S3 operation (operations.py) on the bucket; ``path`` names the file in error
        messages."""
        request = operation.request
        host, urlpath = self._where(request.key)
        query = canonical_query(request.query)
        url = URL(
            f"{self._scheme}://{host}{urlpath}" + (f"?{query}" if query else ""), encoded=True
        )
        headers = dict(request.headers)
        if self.params.v4auth:  # signed; hashed once, whatever the attempts
            headers["x-amz-content-sha256"] = await _payload_sha256(request.body)
        response = await self.rest.request(
            operation.name, path, request.method, url, headers=headers, body=request.body,
            expect=_SUCCESS, stream=request.stream,
            inspect=_inside if request.error_in_200 else None,
        )  # fmt: skip
        try:
            result = operation.parse(response, b"" if request.stream else await response.read())
        except BaseException:
            response.release()
            raise
        if request.stream:
            result["Body"] = StreamingBody(response)
        else:
            response.release()
        return result

    async def _sign(self, method: str, url: URL, headers: dict[str, str]) -> None:
        """The shared client's signer: one attempt's signature (it carries the time)."""
        creds = await self._credentials.get()
        if creds is None:
            headers.pop("x-amz-content-sha256", None)  # anonymous: nothing signed
            return
        now = datetime.datetime.now(datetime.UTC)
        query = list(url.query.items())
        headers["host"] = url.raw_authority  # signed; aiohttp writes Host from the URL
        if self.params.v4auth:
            payload = headers["x-amz-content-sha256"]
            self._v4.sign(method, url.raw_path, query, headers, payload, creds, now)
        else:
            self._v2.sign(method, self._v2_resource(url.raw_path), query, headers, creds, now)
        del headers["host"]

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
        await self.rest.close()


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
