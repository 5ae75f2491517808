"""The `storage.azure` parameters, parsed and checked once at start; every error names the key.

Distribution 2.8 knows `accountname`, `accountkey`, `container` and `realm`; `rootdirectory`,
`serviceurl` (an endpoint such as Azurite's `http://127.0.0.1:10000/devstoreaccount1`) and the
`copy_status_poll_*` keys come from Distribution 3, `legacyrootprefix`/`trimlegacyrootprefix`
from GitLab's fork. `chunksize`, `maxretries`, `presignexpiry`, `connecttimeout` and `readtimeout`
are fastreg's own.

Blob names: Distribution 2.8 named a blob after the driver path itself, leading slash included
(`/docker/registry/v2/...`); Distribution 3 drops the slash. fastreg keeps 2.8's names unless
`legacyrootprefix: false` (or `trimlegacyrootprefix: true`) asks for 3's.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastreg.config.convert import SECONDS, ConfigError, Section
from fastreg.config.keys import ANY, BOOL, DURATION_S, INT, STR, struct, unsupported
from fastreg.storage.clientparams import (
    CLIENT_KEYS,
    CONNECT_TIMEOUT,
    PRESIGN_EXPIRY,
    READ_TIMEOUT,
    client_fields,
)

MIB = 1024 * 1024
DEFAULT_CHUNK = 4 * MIB  # Distribution's block size
MAX_CHUNK = 100 * MIB
MIN_CHUNK = 64 * 1024

#: `storage.azure`: Distribution 2.8's keys, Distribution 3's and GitLab's that fastreg reads,
#: fastreg's own, and Distribution 3's that it does not implement (warned as not supported).
KEYS = struct(
    accountname=STR,
    accountkey=STR,
    container=STR,
    realm=STR,
    serviceurl=STR,
    rootdirectory=STR,
    legacyrootprefix=BOOL,
    trimlegacyrootprefix=BOOL,
    copy_status_poll_max_retry=INT,
    copy_status_poll_delay=DURATION_S,
    chunksize=INT,
    **CLIENT_KEYS,
    credentials=unsupported(ANY),
    max_retries=unsupported(INT),
    retry_try_timeout=unsupported(ANY),
    retry_delay=unsupported(ANY),
    max_retry_delay=unsupported(ANY),
)


@dataclass(frozen=True, slots=True)
class AzureParams:
    accountname: str
    accountkey: bytes
    container: str
    realm: str = "core.windows.net"
    serviceurl: str = ""
    rootdirectory: str = ""
    legacyrootprefix: bool = True
    chunksize: int = DEFAULT_CHUNK
    maxretries: int = 3
    presignexpiry: float = PRESIGN_EXPIRY
    connecttimeout: float = CONNECT_TIMEOUT
    readtimeout: float = READ_TIMEOUT
    copypollretries: int = 60
    copypolldelay: float = 0.1

    @property
    def service_url(self) -> str:
        return (self.serviceurl or f"https://{self.accountname}.blob.{self.realm}").rstrip("/")

    def blob_name(self, path: str) -> str:
        """The blob name of a driver path ("/" names the root directory: "" or "/")."""
        lead = "/" if self.legacyrootprefix else ""
        root = f"{self.rootdirectory}/" if self.rootdirectory else ""
        return lead + root + path.lstrip("/")

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> AzureParams:
        r = Section(raw, "storage.azure")
        name, key = r.required("accountname"), r.required("accountkey")
        container = r.required("container")
        try:
            secret = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("storage.azure.accountkey: not a base64 account key") from None
        legacy, trim = r.maybe_flag("legacyrootprefix"), r.maybe_flag("trimlegacyrootprefix")
        if legacy and trim:
            raise ConfigError(
                "storage.azure.trimlegacyrootprefix: cannot be used with legacyrootprefix"
            )
        return cls(
            accountname=name,
            accountkey=secret,
            container=container,
            realm=r.text("realm", "core.windows.net"),
            serviceurl=r.text("serviceurl"),
            rootdirectory=r.text("rootdirectory").strip("/"),
            legacyrootprefix=legacy if legacy is not None else not trim,
            chunksize=r.integer("chunksize", DEFAULT_CHUNK, MIN_CHUNK, MAX_CHUNK),
            **client_fields(r, retries=3),
            copypollretries=r.integer("copy_status_poll_max_retry", 60, 1, 100_000),
            copypolldelay=r.positive_duration("copy_status_poll_delay", 0.1, SECONDS),
        )


def parse(raw: Mapping[str, Any]) -> AzureParams:
    """The driver's settings from its checked `storage.azure` section (the factory's hook)."""
    return AzureParams.parse(raw)
