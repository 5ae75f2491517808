"""The HTTP client of one upstream registry: its auth challenge, and its answers as outcomes.

Below the registry in spirit (like storage's REST client): it knows the distribution API's paths
and nothing of stores or caches. Authentication follows the upstream's challenge, learnt on the
first 401 and then sent up front: ``Bearer realm=...,service=...`` (Docker Hub's token service:
a token per scope, from the realm with the configured credentials or anonymously, kept until it
expires), ``Basic`` (the configured credentials), or none. Tokens are kept in an LRU of
`TOKEN_CACHE_SIZE` scopes (one scope per repository: a mirror of Docker Hub sees an unbounded
number of them); a token evicted early is simply asked for again.

Names: the client is given the mirror's stored names and asks the upstream for ``remote(name)``
(`routing.py` maps `docker.io/library/alpine` to `library/alpine` for the `docker.io` upstream);
paths, token scopes and pagination all use the upstream's name.

Failures are split the way a mirror needs them: ``UpstreamMissing`` (404: the upstream is up and
says no), ``UpstreamThrottled`` (429, with its Retry-After), ``UpstreamUnavailable`` (transport
failure, timeout, 5xx, or an answer that makes no sense). There is no retry loop here (unlike
storage/retry.py): a mirror whose upstream fails serves what it has cached at once, and a client
retries a pull anyway.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import aiohttp
import orjson
from yarl import URL

from fastreg.registry.cache.lru import LRU
from fastreg.registry.mediatypes import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA1,
    SCHEMA1_SIGNED,
)
from fastreg.registry.proxy.settings import Upstream
from fastreg.storage.retry import TRANSPORT_ERRORS  # the storage clients' own list

log = logging.getLogger("fastreg.proxy")

#: what a mirror asks for: every manifest type, so that it stores what the upstream has and
#: content negotiation happens on the mirror's side
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST, SCHEMA1_SIGNED, SCHEMA1)
MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES)
TOKEN_MARGIN = 10.0  # seconds before its expiry a token is no longer used
DEFAULT_TOKEN_LIFETIME = 60.0  # the Docker token spec's default `expires_in`
TOKEN_CACHE_SIZE = 512  # scopes per upstream; a Docker Hub token is ~1-4 KiB: at most ~2 MiB
# bytes of a response aiohttp buffers before it pauses the socket (its default, 64 KiB, pauses
# and resumes the upstream's stream every few batches: a cold 1 GiB pull went at 144-218 MiB/s
# with 4.1-4.5 CPU s, at 303-331 MiB/s with 2.8-2.9 CPU s with 4 MiB; 16 MiB gained no more)
READ_BUFFER = 4 * 1024 * 1024
_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


class UpstreamError(Exception):
    """The upstream did not serve what was asked; ``url`` names the request."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(f"{message} ({url})")
        self.url = url


class UpstreamMissing(UpstreamError):
    """404 (or the upstream's NAME_UNKNOWN, MANIFEST_UNKNOWN, BLOB_UNKNOWN)."""


class UpstreamUnavailable(UpstreamError):
    """Unreachable, timed out, 5xx, refused our credentials, or answered nonsense."""


class UpstreamThrottled(UpstreamError):
    def __init__(self, message: str, url: str, retry_after: str | None) -> None:
        super().__init__(message, url)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "bearer" or "basic"
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header (registries send one)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() not in ("bearer", "basic"):
        return None
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _PARAM_RE.finditer(rest)}  # fmt: skip
    return Challenge(scheme.lower(), params)


@dataclass(frozen=True, slots=True)
class ManifestHead:
    digest: str  # the upstream's Docker-Content-Digest ("" when it sent none)
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    read: float = 30.0


class UpstreamClient:
    """One upstream: a session, its challenge once learnt, and tokens per scope."""

    def __init__(
        self,
        upstream: Upstream,
        timeouts: Timeouts | None = None,
        remote: Callable[[str], str] | None = None,
    ) -> None:
        """``remote``: the upstream's name for a name the mirror stores (identity by default)."""
        self.upstream = upstream
        self.remote = remote or (lambda name: name)
        self.base = URL(upstream.remoteurl)
        self.timeouts = timeouts or Timeouts()
        self._session: aiohttp.ClientSession | None = None
        self._challenge: Challenge | None = None
        # scope -> (token, monotonic expiry)
        self._tokens: LRU[str, tuple[str, float]] = LRU(TOKEN_CACHE_SIZE)

    @property
    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeouts.connect, sock_read=self.timeouts.read
        )

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=60),
                auto_decompress=False,  # blob bytes go through exactly as the upstream has them
                trust_env=False,
                read_bufsize=READ_BUFFER,
            )
        return self._session

    # -- the distribution API ---------------------------------------------------------------

    async def head_manifest(self, name: str, reference: str) -> ManifestHead:
        name = self.remote(name)
        resp = await self.request(
            "HEAD", f"/v2/{name}/manifests/{reference}", name, {"Accept": MANIFEST_ACCEPT}
        )
        resp.release()
        return ManifestHead(
            resp.headers.get("Docker-Content-Digest", ""),
            resp.headers.get("Content-Type", ""),
            resp.content_length or 0,
        )

    async def get_manifest(self, name: str, reference: str, limit: int) -> tuple[str, bytes]:
        """(media type, raw bytes) of a manifest, at most ``limit`` bytes."""
        name = self.remote(name)
        path = f"/v2/{name}/manifests/{reference}"
        resp = await self.request("GET", path, name, {"Accept": MANIFEST_ACCEPT})
        try:
            if (resp.content_length or 0) > limit:
                raise UpstreamUnavailable("manifest too large", str(resp.url))
            raw = await resp.content.read(limit + 1)
        except TRANSPORT_ERRORS as exc:
            raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}", str(resp.url)) from exc
        finally:
            resp.release()
        if len(raw) > limit:
            raise UpstreamUnavailable("manifest too large", str(resp.url))
        return resp.headers.get("Content-Type", ""), raw

    async def head_blob(self, name: str, digest: str) -> int:
        name = self.remote(name)
        resp = await self.request("HEAD", f"/v2/{name}/blobs/{digest}", name)
        resp.release()
        return resp.content_length or 0

    async def open_blob(self, name: str, digest: str) -> aiohttp.ClientResponse:
        """A 200 whose body the caller reads with `body` and releases (redirects to a CDN
        followed)."""
        name = self.remote(name)
        resp = await self.request("GET", f"/v2/{name}/blobs/{digest}", name, redirects=True)
        if resp.connection is not None and resp.connection.protocol is not None:
            resp.connection.protocol.read_timeout = None  # the body is watched by `body` instead
        return resp

    async def body(self, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The chunks of an `open_blob` body; `UpstreamUnavailable` once the upstream has sent
        nothing for ``timeouts.read`` seconds while we waited for it.

        Not aiohttp's ``sock_read``: it cancels a timer handle and schedules another on every
        socket read, a tenth of a cold pull's Python time (py-spy on a 1 GiB pull). This
        watchdog looks four times per period at the bytes received; time we spend elsewhere
        between two chunks (a slow disk, its clients: the socket is paused) never counts.
        """
        loop = asyncio.get_running_loop()
        content, idle = resp.content, self.timeouts.read
        waiting, timed_out = False, False

        async def watch() -> None:
            nonlocal timed_out
            seen, since = content.total_bytes, loop.time()
            while True:
                await asyncio.sleep(idle / 4)
                now = loop.time()
                if content.total_bytes != seen or not waiting:
                    seen, since = content.total_bytes, now
                elif now - since >= idle:
                    timed_out = True
                    resp.close()  # the waiting read raises
                    return

        watchdog = asyncio.ensure_future(watch())
        try:
            while True:
                waiting = True
                try:
                    chunk = await content.readany()
                except aiohttp.ClientError as exc:
                    if timed_out:
                        raise UpstreamUnavailable(
                            f"no byte of the body for {idle:g} s", str(resp.url)
                        ) from exc
                    raise
                waiting = False
                if not chunk:
                    return
                yield chunk
        finally:
            watchdog.cancel()

    async def tags(self, name: str) -> list[str]:
        """Every tag of ``name``, following the upstream's `Link` pages."""
        name = self.remote(name)
        tags: list[str] = []
        path: str | None = f"/v2/{name}/tags/list"
        while path is not None:
            resp = await self.request("GET", path, name)
            try:
                body = orjson.loads(await resp.read())
                link = resp.headers.get("Link", "")
            except (orjson.JSONDecodeError, *TRANSPORT_ERRORS) as exc:
                raise UpstreamUnavailable(f"tags list: {exc}", str(resp.url)) from exc
            finally:
                resp.release()
            found = body.get("tags") if isinstance(body, dict) else None
            tags.extend(t for t in found or () if isinstance(t, str))
            match = re.match(r"\s*<([^>]+)>", link)
            path = URL(match.group(1)).path_qs if match else None
        return tags

    async def ping(self) -> None:
        """Whether the upstream answers its API root: 200 or 401 (a challenge) is reachable;
        a transport error, a timeout, 5xx or 429 raise UpstreamUnavailable/Throttled (for the
        debug health check, which never gates the mirror's own `/v2/`)."""
        url = self.base.join(URL("/v2/"))
        try:
            async with self.session().get(
                url, timeout=self._timeout, allow_redirects=False
            ) as resp:
                if resp.status in (200, 401):
                    return
                raise _failure(resp, str(url))
        except TRANSPORT_ERRORS as exc:
            raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}", str(url)) from exc

    # -- one request, authenticated as the upstream asks -------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        name: str,
        headers: Mapping[str, str] | None = None,
        redirects: bool = False,
    ) -> aiohttp.ClientResponse:
        """A 200 response (the caller releases it), or one of the Upstream* errors."""
        url = self.base.join(URL(path))
        scope = f"repository:{name}:pull"
        for attempt in range(2):
            send = dict(headers or {})
            authorization = await self._authorization(scope)
            if authorization:
                send["Authorization"] = authorization
            try:
                resp = await self.session().request(
                    method, url, headers=send, timeout=self._timeout, allow_redirects=redirects
                )
            except TRANSPORT_ERRORS as exc:
                raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}", str(url)) from exc
            if resp.status == 200:
                return resp
            resp.release()
            if resp.status == 401 and attempt == 0:
                challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                if challenge is not None:
                    self._challenge = challenge
                    self._tokens.pop(scope)
                    continue
            raise _failure(resp, str(url))
        raise AssertionError("unreachable")

    async def _authorization(self, scope: str) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            if self.upstream.credentials is None:
                return None
            return basic(*self.upstream.credentials)
        return f"Bearer {await self._token(challenge, scope)}"

    async def _token(self, challenge: Challenge, scope: str) -> str:
        cached = self._tokens.get(scope)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("http://", "https://")):
            raise UpstreamUnavailable("Bearer challenge without a usable realm", realm)
        query = {"scope": scope}
        if challenge.params.get("service"):
            query["service"] = challenge.params["service"]
        url = URL(realm).update_query(query)
        send = {"Authorization": basic(*self.upstream.credentials)} if self.upstream.credentials else {}
        try:
            async with self.session().get(url, headers=send, timeout=self._timeout) as resp:
                if resp.status != 200:
                    raise _failure(resp, str(url))
                body = orjson.loads(await resp.read())
        except (orjson.JSONDecodeError, *TRANSPORT_ERRORS) as exc:
            raise UpstreamUnavailable(f"token: {type(exc).__name__}: {exc}", str(url)) from exc
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise UpstreamUnavailable("token endpoint answered no token", str(url))
        lifetime = body.get("expires_in")
        if not isinstance(lifetime, (int, float)) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        self._tokens.put(scope, (token, time.monotonic() + max(lifetime - TOKEN_MARGIN, 1.0)))
        return token

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _failure(resp: aiohttp.ClientResponse, url: str) -> UpstreamError:
    status = resp.status
    if status == 404:
        return UpstreamMissing("not found upstream", url)
    if status == 429:
        return UpstreamThrottled("upstream answered 429", url, resp.headers.get("Retry-After"))
    return UpstreamUnavailable(f"upstream answered {status}", url)
