"""Distribution's `middleware` section: the storage middlewares that say where a pull is
redirected (`redirect`, `cloudfront`), and the refusal of every other name.

In Distribution a storage middleware wraps the driver and answers its `URLFor`; the outermost
(the last listed) decides. Here a middleware is a `Redirector` that `Registry.redirect_url` asks
instead of the driver's presigned URL, once `storage.redirect.disable` allows a redirect at all
(so that setting keeps its meaning: with it, nothing redirects, as in Distribution). Only stored
blobs are redirected; a mirror's blob still being fetched from its upstream is not stored yet.

- `redirect` (`baseurl`): 307 to the baseurl's scheme and host with the blob's storage path
  (`/docker/registry/v2/blobs/sha256/<xx>/<hex>/data`), for a CDN or web server in front of the
  storage. A path in `baseurl` is kept in front of the storage path, as Distribution 3 does
  (2.8 drops it).
- `cloudfront` (`baseurl`, `privatekey`, `keypairid`, `duration`): a CloudFront signed URL with a
  canned policy: the resource is baseurl + the object's key in the store (with its root prefix on
  S3, as Distribution's `S3BucketKey`; other drivers: the storage path without its first slash,
  where Distribution 2.8 falls back to the driver's own URL), `Expires` now + duration (default
  20m), `Signature` RSA-SHA1 over the policy JSON in base64 with CloudFront's replacements
  (`+` `-`, `=` `_`, `/` `~`), `Key-Pair-Id`. The key is a PEM RSA private key (PKCS#1 as
  Distribution reads it, or PKCS#8), read at load: a missing or unusable one stops the start.
  `ipfilteredby: aws | awsregion` (send AWS clients to S3 directly, from AWS's published ranges)
  is refused with a message: fastreg does not fetch those ranges; `none` (the default) works, and
  `awsregion`, `iprangesurl`, `updatefrequency` have no effect then (in Distribution neither).
- An entry with `disabled: true` is skipped (Distribution 2.8 applies it anyway).
- Any other name, under `storage`, `registry` or `repository`, stops the start (exit status 2)
  naming it: Distribution 2.8 panics on an unknown storage or registry middleware, and ships no
  registry or repository middleware at all (an unknown repository middleware fails each request
  there, with 500; refusing at start is kinder).

`cryptography` signs; it is imported only when `cloudfront` is configured (it costs memory in every
worker).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from fastreg.config.convert import ConfigError, Section
from fastreg.storage.base import StorageDriver

#: CloudFront's replacements for the characters base64 uses and URLs do not want.
_CLOUDFRONT_BASE64 = str.maketrans({"+": "-", "=": "_", "/": "~"})
_DEFAULT_DURATION = 20 * 60.0


class Redirector(Protocol):
    """Where a pull of the file at a storage path is sent instead of being served."""

    def url(self, driver: StorageDriver, path: str) -> str: ...


@dataclass(frozen=True, slots=True)
class BaseURLRedirect:
    """The `redirect` middleware."""

    origin: str  # scheme://host[:port]
    base_path: str  # the baseurl's path, without its last slash

    def url(self, driver: StorageDriver, path: str) -> str:
        return f"{self.origin}{quote(self.base_path + path)}"


@dataclass(frozen=True, slots=True)
class CloudFrontRedirect:
    """The `cloudfront` middleware: canned-policy signed URLs."""

    baseurl: str  # ends with "/"
    keypairid: str
    duration: float
    sign: Callable[[bytes], bytes]  # RSA-SHA1 PKCS#1 v1.5 with the private key
    clock: Callable[[], float] = time.time

    def url(self, driver: StorageDriver, path: str) -> str:
        resource = self.baseurl + quote(object_key(driver, path))
        expires = int(self.clock() + self.duration)
        policy = {
            "Statement": [
                {"Resource": resource, "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}
            ]
        }
        raw = json.dumps(policy, separators=(",", ":")).encode()
        signature = base64.b64encode(self.sign(raw)).decode().translate(_CLOUDFRONT_BASE64)
        join = "&" if "?" in resource else "?"
        return (
            f"{resource}{join}Expires={expires}&Signature={signature}&Key-Pair-Id={self.keypairid}"
        )


def object_key(driver: StorageDriver, path: str) -> str:
    """The key of a storage path in the driver's store (bucket drivers: with the root prefix)."""
    key = getattr(driver, "key", None)
    return key(path) if callable(key) else path.lstrip("/")


# --- the `middleware` section --------------------------------------------------------------------


def parse(raw: Any) -> Redirector | None:
    """The `middleware` section: the storage redirector the last enabled entry makes (None
    without one); ConfigError for any name fastreg does not have."""
    middleware = Section(raw, "middleware")
    for kind in ("registry", "repository"):
        for entry in middleware.sections(kind):
            raise ConfigError(
                f"{entry.path}: no {kind} middleware registered with name: "
                f"{entry.text('name')!r} (fastreg has none, nor does Distribution 2.8)"
            )
    chosen: Redirector | None = None
    for entry in middleware.sections("storage"):
        name = entry.text("name")
        make = _STORAGE.get(name)
        if make is None:
            raise ConfigError(
                f"{entry.key('name')}: no storage middleware registered with name: {name!r} "
                f"(fastreg has {', '.join(sorted(_STORAGE))})"
            )
        if not entry.flag("disabled"):
            chosen = make(entry.section("options"))
    return chosen


def _redirect(options: Section) -> Redirector:
    baseurl = options.required("baseurl")
    parts = urlsplit(baseurl)
    if not parts.scheme:
        raise ConfigError(f"{options.key('baseurl')}: no scheme specified for redirect baseurl")
    if not parts.netloc:
        raise ConfigError(f"{options.key('baseurl')}: no host specified for redirect baseurl")
    return BaseURLRedirect(f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/"))


def _cloudfront(options: Section) -> Redirector:
    baseurl = options.required("baseurl")
    if "://" not in baseurl:
        baseurl = "https://" + baseurl  # Distribution's defaults
    if not baseurl.endswith("/"):
        baseurl += "/"
    if not urlsplit(baseurl).netloc:
        raise ConfigError(f"{options.key('baseurl')}: no host in {baseurl!r}")
    keyfile = options.required("privatekey")
    keypairid = options.required("keypairid")
    duration = options.positive_duration("duration", _DEFAULT_DURATION)
    filtered = options.text("ipfilteredby", "none").strip().lower() or "none"
    if filtered in ("aws", "awsregion"):
        raise ConfigError(
            f"{options.key('ipfilteredby')}: {filtered!r} is not supported by fastreg (it does not "
            "fetch AWS's IP ranges to send AWS clients to S3 directly); use 'none'"
        )
    if filtered != "none":
        raise ConfigError(
            f"{options.key('ipfilteredby')}: expected one of none, aws, awsregion, got {filtered!r}"
        )
    for key in ("awsregion", "iprangesurl"):
        options.text(key)  # type-checked; no effect without ipfilteredby, as in Distribution
    options.duration("updatefrequency", 0.0)
    return CloudFrontRedirect(baseurl, keypairid, duration, _rsa_sha1_signer(keyfile, options))


def _rsa_sha1_signer(keyfile: str, options: Section) -> Callable[[bytes], bytes]:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    where = options.key("privatekey")
    try:
        with open(keyfile, "rb") as f:
            pem = f.read()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {keyfile}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {keyfile} is not a PEM private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{where}: {keyfile} is not an RSA key (CloudFront signs with RSA)")

    def sign(data: bytes) -> bytes:
        return key.sign(data, padding.PKCS1v15(), hashes.SHA1())  # CloudFront signs with SHA-1

    return sign


_STORAGE: dict[str, Callable[[Section], Redirector]] = {
    "redirect": _redirect,
    "cloudfront": _cloudfront,
}
