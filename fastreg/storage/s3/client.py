"""One aiobotocore S3 client per driver: built lazily in the running loop, every call rate limited,
retried by botocore (standard mode), bounded by timeouts, and its errors mapped to storage errors.

This module is the only one that touches botocore's exception types.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from fastreg.storage.base import PathNotFound, StorageError
from fastreg.storage.s3.params import S3Params

_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchUpload"})
_AUTH_HINTS = {
    "SignatureDoesNotMatch": "the secret key does not match the access key (check secretkey)",
    "InvalidAccessKeyId": "the access key is unknown to the server (check accesskey)",
    "AccessDenied": "access denied (check the credentials and the bucket policy)",
    "403": "access denied (check accesskey, secretkey and the bucket policy)",
    "NoSuchBucket": "the bucket does not exist",
}
#: Failures of the transport itself; botocore has retried them already when they surface here.
TRANSPORT_ERRORS = (BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


class S3Error(StorageError):
    """S3 answered with an error; ``code`` is S3's error code (``InvalidRange``, ``403``...)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def translate(exc: Exception, op: str, path: str) -> StorageError:
    """A botocore or transport exception as the storage error the rest of fastreg understands."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "unknown")
        if code in _NOT_FOUND:
            return PathNotFound(path)
        detail = _AUTH_HINTS.get(code) or str(error.get("Message") or code)
        return S3Error(f"s3 {op} {path}: {code}: {detail}", code)
    return StorageError(f"s3 {op} {path}: {type(exc).__name__}: {exc}")


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


class S3Client:
    """The driver's connection to one bucket."""

    def __init__(self, params: S3Params) -> None:
        self.params = params
        self._limiter = RateLimiter(params.maxrequestspersecond)
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._lock: asyncio.Lock | None = None

    def _config(self) -> BotoConfig:
        p = self.params
        return BotoConfig(
            region_name=p.region,
            signature_version="s3v4" if p.v4auth else "s3",
            s3={"addressing_style": "path" if p.forcepathstyle else "auto"},
            retries={"mode": "standard", "total_max_attempts": p.maxretries + 1},
            connect_timeout=p.connecttimeout,
            read_timeout=p.readtimeout,
            max_pool_connections=max(32, min(p.multipartcopymaxconcurrency, 128)),
            # S3-compatible stores (older MinIO, Ceph, SeaweedFS) reject or mishandle the newer
            # flexible-checksum trailers; send checksums only where the API requires them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )

    async def client(self) -> Any:
        if self._client is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._client is None:
                    p = self.params
                    stack = AsyncExitStack()
                    self._client = await stack.enter_async_context(
                        get_session().create_client(
                            "s3",
                            region_name=p.region,
                            endpoint_url=p.endpoint_url,
                            use_ssl=p.secure,
                            verify=False if p.skipverify else None,
                            aws_access_key_id=p.accesskey,
                            aws_secret_access_key=p.secretkey,
                            aws_session_token=p.sessiontoken,
                            config=self._config(),
                        )
                    )
                    self._stack = stack
        return self._client

    async def call(self, op: str, path: str, **kwargs: Any) -> Any:
        """Run one S3 operation on the bucket; ``path`` names the file in error messages."""
        client = await self.client()
        await self._limiter.wait()
        try:
            return await getattr(client, op)(Bucket=self.params.bucket, **kwargs)
        except ClientError as exc:
            raise translate(exc, op, path) from exc
        except TRANSPORT_ERRORS as exc:
            raise translate(exc, op, path) from exc

    async def presign(self, op: str, key: str, expires: float) -> str:
        client = await self.client()
        try:
            url: str = await client.generate_presigned_url(
                op, Params={"Bucket": self.params.bucket, "Key": key}, ExpiresIn=int(expires)
            )
        except TRANSPORT_ERRORS as exc:
            raise translate(exc, "presign", key) from exc
        return url

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()
