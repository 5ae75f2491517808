"""A registry client that speaks like docker: challenge-driven auth, HEAD before upload, mounts.

Owns the protocol side of the load tests, independent of locust: every call goes through a
``Sender`` (locust's HttpSession with ``catch_response`` inside a user, a plain ``requests``
session when seeding), and every answer is checked (status, digest, length); a wrong answer is a
failure in locust's stats, or an exception for the plain sender.

Auth is discovered, not configured: ``GET /v2/`` (or any request) answering 401 with
``WWW-Authenticate: Bearer realm=..,service=..[,scope=..]`` makes the client fetch a token from the
realm (with basic credentials when it has some) for the scopes the operation needs, cache it until
it expires, and retry; ``Basic`` challenges are answered with the credentials. So the same users
run against an open registry, htpasswd, fastreg's token server, GitLab or docker_auth.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import requests

MANIFEST_ACCEPT = (
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json"
)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
TIMEOUT = 120.0
TOKEN_MARGIN = 10.0  # renew a token this long before it expires


class RegistryFailure(AssertionError):
    """A registry answer that a docker client would reject."""


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# A validator looks at a response and returns why it is wrong, or None.
Validator = Callable[[requests.Response], str | None]


class Sender(Protocol):
    def __call__(self, method: str, url: str, *, name: str, headers: dict[str, str],
                 data: bytes | None, validate: Validator,
                 allow_redirects: bool) -> requests.Response: ...


def plain_sender(session: requests.Session) -> Sender:
    """For seeding outside locust: a wrong answer raises."""

    def send(method: str, url: str, *, name: str, headers: dict[str, str], data: bytes | None,
             validate: Validator, allow_redirects: bool) -> requests.Response:
        resp = session.request(method, url, headers=headers, data=data, timeout=TIMEOUT,
                               allow_redirects=allow_redirects)
        why = validate(resp)
        if why is not None:
            raise RegistryFailure(f"{name}: {why}")
        return resp

    return send


def locust_sender(client: Any) -> Sender:
    """Inside a locust user: each call is one entry in the stats, failed when wrong."""

    def send(method: str, url: str, *, name: str, headers: dict[str, str], data: bytes | None,
             validate: Validator, allow_redirects: bool) -> requests.Response:
        with client.request(method, url, headers=headers, data=data, name=name,
                            catch_response=True, timeout=TIMEOUT,
                            allow_redirects=allow_redirects) as resp:
            why = validate(resp)
            if why is None:
                resp.success()
            else:
                resp.failure(why)
        return resp  # type: ignore[no-any-return]

    return send


def expect(*statuses: int, extra: Validator | None = None) -> Validator:
    def check(resp: requests.Response) -> str | None:
        if resp.status_code not in statuses:
            return f"HTTP {resp.status_code} (wanted {statuses}): {resp.text[:200]}"
        return extra(resp) if extra is not None else None

    return check


# --------------------------------------------------------------------------- auth


_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Auth:
    """What the registry asked for, and the tokens it gave, per scope set."""

    username: str = ""
    password: str = ""
    scheme: str = ""  # "", "basic" or "bearer"
    realm: str = ""
    service: str = ""
    tokens: dict[tuple[str, ...], tuple[str, float]] = field(default_factory=dict)

    def learn(self, challenge: str) -> tuple[str, ...]:
        """Take in a WWW-Authenticate value; returns the scopes it names."""
        scheme, _, rest = challenge.strip().partition(" ")
        params = dict(_PARAM.findall(rest))
        self.scheme = scheme.lower()
        if self.scheme == "bearer":
            self.realm = params.get("realm", self.realm)
            self.service = params.get("service", self.service)
        return tuple(params["scope"].split(" ")) if params.get("scope") else ()

    def headers(self, scopes: tuple[str, ...], send: Sender) -> dict[str, str]:
        if self.scheme == "basic":
            return {"Authorization": _basic(self.username, self.password)}
        if self.scheme != "bearer":
            return {}
        key = tuple(sorted(scopes))
        token, expires = self.tokens.get(key, ("", 0.0))
        if time.monotonic() > expires - TOKEN_MARGIN:
            token, expires = self._fetch(key, send)
            self.tokens[key] = (token, expires)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _fetch(self, scopes: tuple[str, ...], send: Sender) -> tuple[str, float]:
        query = urlencode([("service", self.service), *(("scope", s) for s in scopes)])
        headers = {"Authorization": _basic(self.username, self.password)} if self.username else {}

        def has_token(resp: requests.Response) -> str | None:
            try:
                body = resp.json()
            except ValueError:
                return "token answer is not JSON"
            return None if body.get("token") or body.get("access_token") else "no token"

        resp = send("GET", f"{self.realm}?{query}", name="GET [token realm]", headers=headers,
                    data=None, validate=expect(200, extra=has_token), allow_redirects=True)
        if resp.status_code != 200:
            return "", 0.0
        body = resp.json()
        lifetime = float(body.get("expires_in") or 60)
        return str(body.get("token") or body.get("access_token")), time.monotonic() + lifetime


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --------------------------------------------------------------------------- the client


def pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


@dataclass
class Image:
    config: bytes
    layers: list[bytes]
    manifest: bytes = b""

    def __post_init__(self) -> None:
        if not self.manifest:
            self.manifest = json.dumps({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": digest_of(self.config),
                           "size": len(self.config)},
                "layers": [{"mediaType": OCI_LAYER, "digest": digest_of(b), "size": len(b)}
                           for b in self.layers],
            }, separators=(",", ":")).encode()

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def make_image(layers: Iterable[bytes], label: str) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Labels": {"loadtest": label}},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    return Image(config, list(layers))


class Client:
    """Docker's sequences of requests against one registry (``base`` = http://host:port)."""

    def __init__(self, base: str, send: Sender, auth: Auth) -> None:
        self.base = base.rstrip("/")
        self.send = send
        self.auth = auth

    def call(self, method: str, path: str, *, name: str, scopes: tuple[str, ...],
             validate: Validator, headers: dict[str, str] | None = None,
             data: bytes | None = None, allow_redirects: bool = True) -> requests.Response:
        url = path if path.startswith("http") else self.base + path
        for attempt in range(2):
            h = {**(headers or {}), **self.auth.headers(scopes, self.send)}
            challenged: list[tuple[str, ...]] = []

            def check(resp: requests.Response, first: bool = attempt == 0,
                      seen: list[tuple[str, ...]] = challenged) -> str | None:
                www = resp.headers.get("WWW-Authenticate", "")
                if resp.status_code == 401 and www and first:
                    # the challenge docker expects the first time: answer it and ask again
                    seen.append(self.auth.learn(www))
                    return None
                return validate(resp)

            resp = self.send(method, url, name=name, headers=h, data=data, validate=check,
                             allow_redirects=allow_redirects)
            if not challenged:
                return resp
            scopes = tuple(sorted(set(scopes) | set(challenged[0])))
        return resp

    # -- reads --------------------------------------------------------------------------

    def ping(self) -> None:
        self.call("GET", "/v2/", name="GET /v2/", scopes=(), validate=expect(200))

    def blob_exists(self, repo: str, digest: str, size: int) -> bool:
        def length(resp: requests.Response) -> str | None:
            if resp.status_code == 200 and resp.headers.get("Content-Length") != str(size):
                return f"HEAD blob: Content-Length {resp.headers.get('Content-Length')}"
            if resp.status_code == 200 and resp.headers.get("Docker-Content-Digest") != digest:
                return f"HEAD blob: digest {resp.headers.get('Docker-Content-Digest')}"
            return None

        resp = self.call("HEAD", f"/v2/{repo}/blobs/{digest}", name="HEAD /v2/[repo]/blobs/[digest]",
                         scopes=(push_scope(repo),), validate=expect(200, 404, extra=length))
        return resp.status_code == 200

    def get_blob(self, repo: str, digest: str) -> bytes:
        def content(resp: requests.Response) -> str | None:
            got = digest_of(resp.content)
            return None if got == digest else f"blob content is {got}, wanted {digest}"

        resp = self.call("GET", f"/v2/{repo}/blobs/{digest}", name="GET /v2/[repo]/blobs/[digest]",
                         scopes=(pull_scope(repo),), validate=expect(200, extra=content))
        return resp.content

    def get_manifest(self, repo: str, ref: str, want: str | None = None) -> bytes:
        def content(resp: requests.Response) -> str | None:
            got = digest_of(resp.content)
            header = resp.headers.get("Docker-Content-Digest")
            if header != got:
                return f"manifest digest header {header}, body is {got}"
            if want is not None and got != want:
                return f"manifest {ref} is {got}, pushed {want}"
            return None

        kind = "[digest]" if ref.startswith("sha256:") else "[tag]"
        resp = self.call("GET", f"/v2/{repo}/manifests/{ref}",
                         name=f"GET /v2/[repo]/manifests/{kind}", scopes=(pull_scope(repo),),
                         headers={"Accept": MANIFEST_ACCEPT}, validate=expect(200, extra=content))
        return resp.content

    def pull(self, repo: str, tag: str, want: str | None = None) -> None:
        """docker pull: the manifest by tag, then the config and every layer, all verified."""
        manifest = json.loads(self.get_manifest(repo, tag, want))
        for desc in [manifest["config"], *manifest["layers"]]:
            data = self.get_blob(repo, desc["digest"])
            if len(data) != desc["size"]:
                raise RegistryFailure(f"blob {desc['digest']}: {len(data)} bytes, manifest "
                                      f"says {desc['size']}")

    def tags(self, repo: str, must_have: str) -> list[str]:
        def has(resp: requests.Response) -> str | None:
            try:
                tags = resp.json().get("tags") or []
            except ValueError:
                return "tags list is not JSON"
            return None if must_have in tags else f"tag {must_have} missing from the list"

        resp = self.call("GET", f"/v2/{repo}/tags/list", name="GET /v2/[repo]/tags/list",
                         scopes=(pull_scope(repo),), validate=expect(200, extra=has))
        return list(resp.json().get("tags") or []) if resp.status_code == 200 else []

    # -- writes -------------------------------------------------------------------------

    def _committed(self, digest: str) -> Validator:
        def check(resp: requests.Response) -> str | None:
            got = resp.headers.get("Docker-Content-Digest")
            return None if got == digest else f"committed as {got}, pushed {digest}"

        return expect(201, extra=check)

    def start_upload(self, repo: str, mount_from: str = "", digest: str = "") -> tuple[str, bool]:
        """POST an upload (or a mount); returns (Location, mounted)."""
        query = f"?mount={digest}&from={mount_from}" if mount_from else ""
        scopes = (push_scope(repo),) + ((pull_scope(mount_from),) if mount_from else ())
        name = "POST /v2/[repo]/blobs/uploads/?mount" if mount_from else \
            "POST /v2/[repo]/blobs/uploads/"
        ok = (201, 202) if mount_from else (202,)

        def location(resp: requests.Response) -> str | None:
            return None if resp.headers.get("Location") else "no Location header"

        resp = self.call("POST", f"/v2/{repo}/blobs/uploads/{query}", name=name, scopes=scopes,
                         validate=expect(*ok, extra=location),
                         headers={"Content-Length": "0"}, data=b"")
        loc = resp.headers.get("Location", "")
        if not loc.startswith("http"):
            loc = self.base + loc
        return loc, resp.status_code == 201

    def upload(self, repo: str, data: bytes, mode: str, chunk: int = 65536,
               location: str = "") -> None:
        """Upload one blob: ``monolithic`` (PUT with the body), ``streamed`` (one PATCH, as
        docker does) or ``chunked`` (PATCHes with Content-Range)."""
        digest = digest_of(data)
        scopes = (push_scope(repo),)
        loc = location or self.start_upload(repo)[0]
        octet = {"Content-Type": "application/octet-stream"}
        if mode == "monolithic":
            self.call("PUT", _with_digest(loc, digest), name="PUT [upload]?digest (monolithic)",
                      scopes=scopes, headers=octet, data=data, validate=self._committed(digest))
            return
        pieces = [(0, data)] if mode == "streamed" else \
            [(i, data[i:i + chunk]) for i in range(0, len(data), chunk)]
        for start, piece in pieces:
            end = start + len(piece) - 1
            h = dict(octet)
            if mode == "chunked":
                h["Content-Range"] = f"{start}-{end}"

            def ranged(resp: requests.Response, end: int = end) -> str | None:
                got = resp.headers.get("Range")
                return None if got == f"0-{end}" else f"PATCH answered Range {got}, wanted 0-{end}"

            resp = self.call("PATCH", loc, name=f"PATCH [upload] ({mode})", scopes=scopes,
                             headers=h, data=piece, validate=expect(202, extra=ranged))
            loc = resp.headers.get("Location") or loc
            if not loc.startswith("http"):
                loc = self.base + loc
        self.call("PUT", _with_digest(loc, digest), name="PUT [upload]?digest", scopes=scopes,
                  headers={"Content-Length": "0"}, data=b"", validate=self._committed(digest))

    def put_manifest(self, repo: str, tag: str, image: Image) -> None:
        self.call("PUT", f"/v2/{repo}/manifests/{tag}", name="PUT /v2/[repo]/manifests/[tag]",
                  scopes=(push_scope(repo),), headers={"Content-Type": OCI_MANIFEST},
                  data=image.manifest, validate=self._committed(image.digest))

    def push(self, repo: str, tag: str, image: Image, mode: str, chunk: int = 65536,
             mounts: dict[str, str] | None = None) -> None:
        """docker push: HEAD each blob, mount what another repository has, upload the rest."""
        for blob in [*image.layers, image.config]:
            digest = digest_of(blob)
            if self.blob_exists(repo, digest, len(blob)):
                continue
            source = (mounts or {}).get(digest, "")
            location = ""
            if source:
                location, mounted = self.start_upload(repo, source, digest)
                if mounted:
                    continue
            self.upload(repo, blob, mode, chunk, location)
        self.put_manifest(repo, tag, image)


def _with_digest(location: str, digest: str) -> str:
    return location + ("&" if urlsplit(location).query else "?") + f"digest={digest}"
