"""The `storage.gcs` parameters, parsed and checked once at start; every error names the key.

Distribution's keys: `bucket`, `keyfile` (a service account JSON key file), `credentials` (the
same key inline), `rootdirectory`, `chunksize` (a multiple of 256 KiB, default 5 MiB) and
`maxconcurrency` (connections to GCS, at least 25). fastreg's own: `endpoint` (another
JSON-API server, e.g. fake-gcs-server; default `https://storage.googleapis.com`), `maxretries`,
`presignexpiry`, `connecttimeout`, `readtimeout`. Without a key, and without
GOOGLE_APPLICATION_CREDENTIALS naming one, requests are anonymous (an emulator, a public bucket)
and downloads are proxied, since there is nothing to sign URLs with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastreg.config.convert import ConfigError, Section
from fastreg.config.keys import ANY, INT, STR, mapof, struct
from fastreg.storage.clientparams import (
    CLIENT_KEYS,
    CONNECT_TIMEOUT,
    PRESIGN_EXPIRY,
    READ_TIMEOUT,
    client_fields,
)

KIB = 1024
MIN_CHUNK = 256 * KIB  # resumable upload chunks are multiples of this
DEFAULT_CHUNK = 20 * MIN_CHUNK  # Distribution's default
MAX_CHUNK = 1024 * MIN_CHUNK * 4  # 1 GiB
DEFAULT_ENDPOINT = "https://storage.googleapis.com"
SIGNED_URL_MAX = 7 * 24 * 3600.0  # V4 signed URLs live a week at most

#: `storage.gcs`: Distribution 2.8's keys and fastreg's own.
KEYS = struct(
    bucket=STR,
    keyfile=STR,
    credentials=mapof(ANY),  # a service account key, inline
    rootdirectory=STR,
    chunksize=INT,
    maxconcurrency=INT,
    endpoint=STR,
    **CLIENT_KEYS,
)


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    client_email: str
    private_key: str  # PEM
    token_uri: str

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str) -> ServiceAccount:
        missing = [k for k in ("client_email", "private_key") if not doc.get(k)]
        if missing or doc.get("type", "service_account") != "service_account":
            raise ConfigError(
                f"{where}: not a service account key (type service_account with "
                "client_email and private_key)"
            )
        return cls(
            client_email=str(doc["client_email"]),
            private_key=str(doc["private_key"]),
            token_uri=str(doc.get("token_uri") or "https://oauth2.googleapis.com/token"),
        )


@dataclass(frozen=True, slots=True)
class GCSParams:
    bucket: str
    account: ServiceAccount | None = None
    rootdirectory: str = ""
    chunksize: int = DEFAULT_CHUNK
    maxconcurrency: int = 50
    endpoint: str = DEFAULT_ENDPOINT
    maxretries: int = 5
    presignexpiry: float = PRESIGN_EXPIRY
    connecttimeout: float = CONNECT_TIMEOUT
    readtimeout: float = READ_TIMEOUT

    def key(self, path: str) -> str:
        root = f"{self.rootdirectory}/" if self.rootdirectory else ""
        return root + path.lstrip("/")

    @classmethod
    def parse(cls, raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> GCSParams:
        r = Section(raw, "storage.gcs")
        bucket = r.required("bucket")
        chunksize = r.integer("chunksize", DEFAULT_CHUNK, MIN_CHUNK, MAX_CHUNK)
        if chunksize % MIN_CHUNK:
            raise ConfigError(f"storage.gcs.chunksize: must be a multiple of {MIN_CHUNK}")
        return cls(
            bucket=bucket,
            account=_account(r, raw, os.environ if environ is None else environ),
            rootdirectory=r.text("rootdirectory").strip("/"),
            chunksize=chunksize,
            maxconcurrency=r.integer("maxconcurrency", 50, 25, 10_000),
            endpoint=r.text("endpoint", DEFAULT_ENDPOINT).rstrip("/"),
            **client_fields(r, retries=5, presign_max=SIGNED_URL_MAX),
        )


def _account(
    r: Section, raw: Mapping[str, Any], environ: Mapping[str, str]
) -> ServiceAccount | None:
    keyfile = r.optional("keyfile")
    inline = raw.get("credentials")
    if keyfile and inline:
        raise ConfigError("storage.gcs.credentials: cannot be used together with keyfile")
    if inline is not None:
        if not isinstance(inline, Mapping):
            raise ConfigError("storage.gcs.credentials: expected a mapping (a service account key)")
        return ServiceAccount.from_json(inline, "storage.gcs.credentials")
    where = "storage.gcs.keyfile"
    if not keyfile and environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        keyfile, where = environ["GOOGLE_APPLICATION_CREDENTIALS"], "GOOGLE_APPLICATION_CREDENTIALS"
    if not keyfile:
        return None
    try:
        with open(keyfile, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read {keyfile}: {exc}") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: {keyfile} is not a JSON object")
    return ServiceAccount.from_json(doc, where)


def parse(raw: Mapping[str, Any]) -> GCSParams:
    """The driver's settings from its checked `storage.gcs` section (the factory's hook)."""
    return GCSParams.parse(raw)
