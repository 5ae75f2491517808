"""GCS authentication: OAuth2 access tokens from a service account key, and V4 signed URLs.

A token comes from the key's `token_uri` by the JWT bearer grant (RFC 7523), is cached and
renewed five minutes before it expires. Signed URLs follow Google's "V4 signing process"
(GOOG4-RSA-SHA256, the only signed header is `host`). Without a key nothing is signed.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

import aiohttp
import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from yarl import URL

from fastreg.storage.base import StorageError
from fastreg.storage.gcs.params import GCSParams

if TYPE_CHECKING:
    from fastreg.storage.rest import RestClient

SCOPE = "https://www.googleapis.com/auth/devstorage.full_control"
TOKEN_LIFETIME = 3600
RENEW_BEFORE = 300


class GCSAuth:
    def __init__(self, params: GCSParams) -> None:
        self.params = params
        self.account = params.account
        self._key: rsa.RSAPrivateKey | None = None
        if self.account is not None:
            key = serialization.load_pem_private_key(self.account.private_key.encode(), None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise StorageError("gcs: the service account key is not an RSA key")
            self._key = key
        self._token = ""
        self._expires = 0.0
        self._lock: asyncio.Lock | None = None
        self.rest: RestClient | None = None  # set by the driver: the token call shares its pool

    async def sign(self, method: str, url: URL, headers: dict[str, str]) -> None:
        if self.account is not None:
            headers["Authorization"] = f"Bearer {await self.token()}"

    async def token(self) -> str:
        if time.time() < self._expires - RENEW_BEFORE:
            return self._token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if time.time() >= self._expires - RENEW_BEFORE:
                await self._fetch()
        return self._token

    def assertion(self, now: float) -> str:
        assert self.account is not None and self._key is not None
        claims = {"iss": self.account.client_email, "scope": SCOPE,
                  "aud": self.account.token_uri, "iat": int(now),
                  "exp": int(now) + TOKEN_LIFETIME}  # fmt: skip
        return jwt.encode(claims, self._key, algorithm="RS256")

    async def _fetch(self) -> None:
        assert self.account is not None and self.rest is not None
        now = time.time()
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": self.assertion(now)}  # fmt: skip
        timeout = aiohttp.ClientTimeout(
            total=self.params.connecttimeout + self.params.readtimeout
        )
        try:
            async with self.rest.session().post(
                self.account.token_uri, data=form, timeout=timeout
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise StorageError(
                        f"gcs: token request for {self.account.client_email} failed: "
                        f"{resp.status} {body[:300]!r} (check keyfile/credentials)"
                    )
                doc = json.loads(body)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise StorageError(f"gcs: token request failed: {type(exc).__name__}: {exc}") from exc
        self._token = str(doc["access_token"])
        self._expires = now + float(doc.get("expires_in", TOKEN_LIFETIME))

    def signed_url(
        self, key: str, expires_in: float, method: str = "GET",
        now: datetime.datetime | None = None,
    ) -> str | None:  # fmt: skip
        """A V4 signed URL for one object, or None without a service account key."""
        if self.account is None or self._key is None:
            return None
        now = now or datetime.datetime.now(datetime.UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        endpoint = URL(self.params.endpoint)
        host = endpoint.raw_authority
        path = f"/{self.params.bucket}/{quote(key, safe='/~')}"
        scope = f"{day}/auto/storage/goog4_request"
        query = {
            "X-Goog-Algorithm": "GOOG4-RSA-SHA256",
            "X-Goog-Credential": f"{self.account.client_email}/{scope}",
            "X-Goog-Date": stamp,
            "X-Goog-Expires": str(int(expires_in)),
            "X-Goog-SignedHeaders": "host",
        }
        canonical_query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
        )
        request = "\n".join(
            [method, path, canonical_query, f"host:{host}", "", "host", "UNSIGNED-PAYLOAD"]
        )
        to_sign = "\n".join(
            ["GOOG4-RSA-SHA256", stamp, scope, hashlib.sha256(request.encode()).hexdigest()]
        )
        signature = self._key.sign(to_sign.encode(), padding.PKCS1v15(), hashes.SHA256()).hex()
        return f"{endpoint.scheme}://{host}{path}?{canonical_query}&X-Goog-Signature={signature}"


def describe(status: int, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
    """The JSON API's error reason and message."""
    try:
        doc = json.loads(body)
        error = doc.get("error", {}) if isinstance(doc, dict) else {}
    except ValueError:
        error = {}
    if not isinstance(error, dict):
        return str(status), str(error)
    reasons = [e.get("reason", "") for e in error.get("errors", []) if isinstance(e, dict)]
    code = next((r for r in reasons if r), "") or str(status)
    if status == 404 and "bucket does not exist" in str(error.get("message", "")).lower():
        code = "BucketNotFound"
    message = str(error.get("message") or body[:200].decode(errors="replace") or "no message")
    if status in (401, 403):
        message += " (check keyfile/credentials and the bucket's permissions)"
    return code, message
