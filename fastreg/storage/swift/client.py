"""One authenticated connection to a Swift account: token, retries, URLs, /info and temp URLs.

Requests go through the shared `RestClient` (timeouts, retries of transport failures and 5xx,
errors as storage errors); this module adds the token, a new token when Swift answers 401
(expired), and the temp URL key the driver signs redirects with.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from yarl import URL

from fastreg.storage.base import StorageError
from fastreg.storage.rest import TRANSPORT_ERRORS, RestClient, RestError, RestSettings
from fastreg.storage.swift.auth import AuthError, Credentials, auth_request, read_answer
from fastreg.storage.swift.params import SwiftParams

_TAGS = re.compile(r"<[^>]+>")


def describe(status: int, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
    """Swift's errors are short HTML or text pages: keep their text."""
    text = _TAGS.sub(" ", body[:300].decode("utf-8", "replace"))
    return str(status), " ".join(text.split()) or "no detail"


class SwiftClient:
    def __init__(self, params: SwiftParams) -> None:
        self.params = params
        settings = RestSettings("swift", params.retries, params.connecttimeout, params.readtimeout,
                                verify_tls=not params.insecureskipverify)  # fmt: skip
        self.rest = RestClient(settings, self._sign, describe)
        self._credentials: Credentials | None = None
        self._auth_lock: asyncio.Lock | None = None
        self._info: dict[str, Any] | None = None
        self._tempurl_key: str | None = None

    # -- authentication -----------------------------------------------------------------------

    async def credentials(self, stale: Credentials | None = None) -> Credentials:
        """The current token; a new one when ``stale`` (the one Swift refused) is still current."""
        if self._credentials is not None and self._credentials is not stale:
            return self._credentials
        if self._auth_lock is None:
            self._auth_lock = asyncio.Lock()
        async with self._auth_lock:
            if self._credentials is None or self._credentials is stale:
                self._credentials = await self._authenticate()
        return self._credentials

    async def _authenticate(self) -> Credentials:
        p = self.params
        req = auth_request(p)
        data = None if req.body is None else json.dumps(req.body).encode()
        timeout = aiohttp.ClientTimeout(total=p.connecttimeout + p.readtimeout)
        try:
            async with self.rest.session().request(
                req.method, req.url, headers=dict(req.headers), data=data, timeout=timeout
            ) as resp:
                raw = await resp.read()
                body = json.loads(raw) if raw and "json" in resp.content_type else None
                return read_answer(p, resp.status, resp.headers, body)
        except (ValueError, *TRANSPORT_ERRORS) as exc:
            raise AuthError(
                f"swift authentication at {p.authurl}: {type(exc).__name__}: {exc}"
            ) from exc

    async def _sign(self, method: str, url: URL, headers: dict[str, str]) -> None:
        headers["X-Auth-Token"] = (await self.credentials()).token

    # -- requests -----------------------------------------------------------------------------

    def url(self, creds: Credentials, key: str | None = None, container: bool = True) -> URL:
        """The account, the container, or an object of the container."""
        text = creds.storage_url
        if container:
            text += "/" + quote(self.params.container, safe="")
            if key:
                text += "/" + quote(key)
        return URL(text, encoded=True)

    async def request(
        self,
        op: str,
        path: str,
        method: str,
        key: str | None = None,
        *,
        container: bool = True,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        expect: tuple[int, ...] = (200, 201, 202, 204),
        stream: bool = False,
    ) -> aiohttp.ClientResponse:
        """One call on the container (or the account); a refused token is renewed once."""
        creds = await self.credentials()
        for attempt in (1, 2):
            url = self.url(creds, key, container)
            if query:
                url = url.with_query(query)
            try:
                return await self.rest.request(
                    op, path, method, url, headers=headers, body=body, expect=expect, stream=stream
                )
            except RestError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                creds = await self.credentials(stale=creds)
        raise AssertionError("unreachable")

    async def info(self) -> dict[str, Any]:
        """The cluster's /info (capabilities), {} when the cluster does not publish it."""
        if self._info is None:
            creds = await self.credentials()
            parts = urlsplit(creds.storage_url)
            url = URL(urlunsplit((parts.scheme, parts.netloc, "/info", "", "")), encoded=True)
            try:
                resp = await self.rest.request("info", "/info", "GET", url)
                self._info = json.loads(await resp.read())
            except (StorageError, ValueError):
                self._info = {}
        return self._info if isinstance(self._info, dict) else {}

    # -- temp URLs ----------------------------------------------------------------------------

    async def tempurl_methods(self) -> tuple[str, ...]:
        info = await self.info()
        methods = (info.get("tempurl") or {}).get("methods") if info else None
        return tuple(methods) if methods else self.params.tempurlmethods

    async def tempurl_key(self) -> str | None:
        """The container's (Swift >= 2.3) or account's key, set as Distribution does when missing.

        Another worker may set a different key at the same moment: the key read back after
        setting is the one used, so every worker signs with the stored key.
        """
        if self._tempurl_key is None:
            info = await self.info()
            version = str((info.get("swift") or {}).get("version") or "") if info else ""
            on_container = version >= "2.3.0" if version else self.params.tempurlcontainerkey
            scope = "Container" if on_container else "Account"
            header = f"X-{scope}-Meta-Temp-Url-Key"
            current = await self._read_key(on_container, header)
            wanted = self.params.secretkey
            if not current or (wanted and current != wanted):
                await self.request(
                    "tempurl",
                    "/",
                    "POST",
                    container=on_container,
                    headers={header: wanted or secrets.token_hex(32)},
                )
                current = await self._read_key(on_container, header)
            self._tempurl_key = current or None
        return self._tempurl_key

    async def _read_key(self, on_container: bool, header: str) -> str:
        resp = await self.request("tempurl", "/", "HEAD", container=on_container)
        return resp.headers.get(header, "")

    async def temp_url(self, key: str, method: str, expires_in: float) -> str | None:
        secret = await self.tempurl_key()
        if not secret:
            return None
        creds = await self.credentials()
        url = self.url(creds, key)
        expires = int(time.time() + expires_in)
        signed_path = urlsplit(creds.storage_url).path + f"/{self.params.container}/{key}"
        digests = ((await self.info()).get("tempurl") or {}).get("allowed_digests") or ["sha1"]
        algorithm = hashlib.sha256 if "sha256" in digests else hashlib.sha1
        message = f"{method}\n{expires}\n{signed_path}".encode()
        signature = hmac.new(secret.encode(), message, algorithm).hexdigest()
        if self.params.accesskey:  # HP Cloud: tenant_id:access_key:signature
            signature = f"{self.params.tenantid}:{self.params.accesskey}:{signature}"
        query = f"temp_url_sig={quote(signature, safe='')}&temp_url_expires={expires}"
        return f"{url}?{query}"

    async def close(self) -> None:
        await self.rest.close()
