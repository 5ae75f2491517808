"""Azure Blob REST: Shared Key request signing, service SAS URLs, blob URLs and error documents.

Only this module knows how Azure authenticates. Requests are signed per attempt (the signature
covers `x-ms-date`); SAS URLs are read-only service SAS for one blob (`sr=b`, `sp=r`).
References: "Authorize with Shared Key" and "Create a service SAS" in the Azure Storage REST docs.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import re
from collections.abc import Mapping
from email.utils import formatdate
from urllib.parse import quote, urlencode

from yarl import URL

from fastreg.storage.azure.params import AzureParams

API_VERSION = "2021-08-06"
SAS_VERSION = "2018-11-09"  # the service SAS string-to-sign of 2018-11-09 .. 2020-10-02

_SIGNED_HEADERS = (
    "content-encoding", "content-language", "content-length", "content-md5", "content-type",
    "date", "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range",
)  # fmt: skip
_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>", re.DOTALL)
_HINTS = {
    "AuthenticationFailed": "check accountname and accountkey",
    "AuthorizationFailure": "check accountname and accountkey, and the account's access rules",
    "ContainerNotFound": "the container does not exist",
    "InvalidBlobType": "the blob is not a block blob (written by another tool?)",
}


class AzureAuth:
    def __init__(self, params: AzureParams) -> None:
        self.params = params
        self._base = URL(params.service_url)

    # -- URLs -------------------------------------------------------------------------------

    def container_url(self, query: Mapping[str, str] | None = None) -> URL:
        return self._url(quote(self.params.container), query)

    def blob_url(self, name: str, query: Mapping[str, str] | None = None) -> URL:
        return self._url(f"{quote(self.params.container)}/{quote(name, safe='/~')}", query)

    def _url(self, rest: str, query: Mapping[str, str] | None) -> URL:
        base = str(self._base).rstrip("/")
        text = f"{base}/{rest}"
        if query:
            text += "?" + urlencode(query, quote_via=quote)
        return URL(text, encoded=True)  # keep '//' of a legacy blob name as it is

    # -- Shared Key ---------------------------------------------------------------------------

    async def sign(self, method: str, url: URL, headers: dict[str, str]) -> None:
        self.authorize(method, url, headers)

    def authorize(self, method: str, url: URL, headers: dict[str, str]) -> None:
        """Add `x-ms-date`, `x-ms-version` and the Shared Key `Authorization` to ``headers``."""
        headers["x-ms-date"] = formatdate(usegmt=True)
        headers["x-ms-version"] = API_VERSION
        lower = {k.lower(): v for k, v in headers.items()}
        if lower.get("content-length") == "0":
            lower["content-length"] = ""  # versions since 2015-02-21 sign an empty length
        parts = [method.upper(), *(lower.get(h, "") for h in _SIGNED_HEADERS)]
        canonical_headers = "".join(
            f"{k}:{' '.join(lower[k].split())}\n" for k in sorted(lower) if k.startswith("x-ms-")
        )
        resource = f"/{self.params.accountname}{url.raw_path}"
        query: dict[str, list[str]] = {}
        for key, value in url.query.items():
            query.setdefault(key.lower(), []).append(value)
        for key in sorted(query):
            resource += f"\n{key}:{','.join(sorted(query[key]))}"
        to_sign = "\n".join(parts) + "\n" + canonical_headers + resource
        headers["Authorization"] = f"SharedKey {self.params.accountname}:{self._hmac(to_sign)}"

    def _hmac(self, text: str) -> str:
        digest = hmac.new(self.params.accountkey, text.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    # -- SAS ----------------------------------------------------------------------------------

    def sas_url(self, name: str, expires_in: float, now: datetime.datetime | None = None) -> str:
        """A read-only URL for one blob, valid ``expires_in`` seconds."""
        now = now or datetime.datetime.now(datetime.UTC)
        expiry = (now + datetime.timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
        resource = f"/blob/{self.params.accountname}/{self.params.container}/{name}"
        fields = ["r", "", expiry, resource, "", "", "", SAS_VERSION, "b", "", "", "", "", "", ""]
        query = {"sv": SAS_VERSION, "sr": "b", "sp": "r", "se": expiry,
                 "sig": self._hmac("\n".join(fields))}  # fmt: skip
        return str(self.blob_url(name, query))


def describe(status: int, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
    """Azure's error code (header or XML body) and a message with a hint for common mistakes."""
    code = headers.get("x-ms-error-code", "")
    found = _CODE.search(body)
    if not code and found:
        code = found.group(1).decode(errors="replace")
    code = code or str(status)
    message = _MESSAGE.search(body)
    text = message.group(1).decode(errors="replace").split("\n")[0] if message else ""
    hint = _HINTS.get(code)
    return code, f"{text} ({hint})" if hint else text or "no message"
