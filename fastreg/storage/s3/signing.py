"""Request signing for S3: AWS Signature Version 4, and version 2 for stores that want it.

Written to the two specifications (AWS's "Signature Version 4 signing process" for S3 and the
"REST Authentication" of signature version 2) and checked in tests against botocore's signers,
so the driver does not need botocore's machinery (about 1 ms of CPU per request) to talk S3.

Signed headers: ``host``, every ``x-amz-*`` header, ``content-type`` and ``content-md5``; the rest
(``Range``, ``Content-Length``, ``User-Agent``) travel unsigned, as the specification allows.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
#: The sub-resources a version 2 signature covers (S3's list; other query keys are not signed).
_V2_SUBRESOURCES = frozenset(
    {"acl", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy",
     "requestPayment", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning",
     "versions", "website"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


def uri_encode(value: str, path: bool = False) -> str:
    """S3's URI encoding: everything but unreserved characters, and '/' kept in a path."""
    return quote(value, safe="/-_.~" if path else "-_.~")


def canonical_query(query: Sequence[tuple[str, str]]) -> str:
    pairs = sorted((uri_encode(k), uri_encode(v)) for k, v in query)
    return "&".join(f"{k}={v}" for k, v in pairs)


def _signed(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    wanted = [
        (k.lower(), " ".join(str(v).split()))
        for k, v in headers.items()
        if k.lower() in ("host", "content-type", "content-md5") or k.lower().startswith("x-amz-")
    ]
    return sorted(wanted)


class SigV4:
    """Signature version 4 for one region; signing keys are cached per day and secret."""

    def __init__(self, region: str, service: str = "s3") -> None:
        self.region = region
        self.service = service
        self._keys: dict[tuple[str, str], bytes] = {}

    def _key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = ("AWS4" + secret).encode()
            for part in (day, self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day): key}  # one day at a time
        return key

    def _signature(self, creds: Credentials, stamp: str, canonical: str) -> tuple[str, str]:
        day = stamp[:8]
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{digest}"
        signature = hmac.new(self._key(creds.secret_key, day), to_sign.encode(), hashlib.sha256)
        return scope, signature.hexdigest()

    def sign(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: dict[str, str],
        payload_sha256: str,
        creds: Credentials,
        now: datetime.datetime,
    ) -> None:
        """Add ``x-amz-date``, ``x-amz-content-sha256``, the session token and Authorization
        to ``headers`` (which hold ``host``); ``path`` is already URI-encoded."""
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        headers["x-amz-date"] = stamp
        headers["x-amz-content-sha256"] = payload_sha256
        if creds.token:
            headers["x-amz-security-token"] = creds.token
        signed = _signed(headers)
        names = ";".join(k for k, _ in signed)
        canonical = "\n".join(
            [method, path, canonical_query(query), *(f"{k}:{v}" for k, v in signed), "",
             names, payload_sha256]
        )  # fmt: skip
        scope, signature = self._signature(creds, stamp, canonical)
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )

    def presign(
        self,
        method: str,
        host: str,
        path: str,
        creds: Credentials,
        expires: int,
        now: datetime.datetime,
    ) -> list[tuple[str, str]]:
        """The query of a presigned URL (query authentication, host signed only)."""
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        scope = f"{stamp[:8]}/{self.region}/{self.service}/aws4_request"
        query = [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", f"{creds.access_key}/{scope}"),
            ("X-Amz-Date", stamp),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        if creds.token:
            query.append(("X-Amz-Security-Token", creds.token))
        canonical = "\n".join(
            [method, path, canonical_query(query), f"host:{host}", "", "host", UNSIGNED]
        )
        _, signature = self._signature(creds, stamp, canonical)
        return [*query, ("X-Amz-Signature", signature)]


class SigV2:
    """Signature version 2 (``v4auth: false``), for S3-compatible stores that still use it."""

    @staticmethod
    def _string_to_sign(
        method: str,
        resource: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        when: str,
    ) -> str:
        lower = {k.lower(): v for k, v in headers.items()}
        amz = "".join(f"{k}:{v}\n" for k, v in _signed(headers) if k.startswith("x-amz-"))
        subs = sorted((k, v) for k, v in query if k in _V2_SUBRESOURCES)
        if subs:
            resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in subs)
        return (
            f"{method}\n{lower.get('content-md5', '')}\n{lower.get('content-type', '')}\n"
            f"{when}\n{amz}{resource}"
        )

    @staticmethod
    def _hmac(creds: Credentials, text: str) -> str:
        digest = hmac.new(creds.secret_key.encode(), text.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def sign(
        self,
        method: str,
        resource: str,
        query: Sequence[tuple[str, str]],
        headers: dict[str, str],
        creds: Credentials,
        now: datetime.datetime,
    ) -> None:
        """``resource`` is ``/bucket/key`` (URI-encoded) whatever the addressing style."""
        headers["Date"] = formatdate(now.timestamp(), usegmt=True)
        if creds.token:
            headers["x-amz-security-token"] = creds.token
        text = self._string_to_sign(method, resource, query, headers, headers["Date"])
        headers["Authorization"] = f"AWS {creds.access_key}:{self._hmac(creds, text)}"

    def presign(
        self, method: str, resource: str, creds: Credentials, expires: int, now: datetime.datetime
    ) -> list[tuple[str, str]]:
        until = str(int(now.timestamp()) + expires)
        headers = {"x-amz-security-token": creds.token} if creds.token else {}
        text = self._string_to_sign(method, resource, [], headers, until)
        query = [("AWSAccessKeyId", creds.access_key), ("Expires", until)]
        if creds.token:
            query.append(("x-amz-security-token", creds.token))
        return [*query, ("Signature", self._hmac(creds, text))]
