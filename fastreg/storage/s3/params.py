"""The `storage.s3` parameters of Distribution's s3 driver, parsed and checked once at start.

Values arrive raw from YAML or the environment (strings, ints, bools) and are read with the
converters of `fastreg.config.convert` (Distribution's Go rules); every error names the key.
`KEYS` is the driver's part of the key table (checked at load: unknown keys warn, a wrong type
stops the start). Keys are Distribution's (`registry/storage/driver/s3-aws`); `maxbufferedparts`,
`maxrequestspersecond`, `maxretries`, `presignexpiry` and `connecttimeout`/`readtimeout` are
fastreg's own (a bare number of those durations counts seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastreg.config.convert import ConfigError, Section
from fastreg.config.keys import ANY, BOOL, INT, STR, struct, unsupported
from fastreg.storage.clientparams import (
    CLIENT_KEYS,
    CONNECT_TIMEOUT,
    PRESIGN_EXPIRY,
    READ_TIMEOUT,
    client_fields,
)

MIN_PART = 5 * 1024 * 1024
MAX_PART = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000
DEFAULT_CHUNK = 10 * 1024 * 1024
DEFAULT_COPY_CHUNK = 32 * 1024 * 1024
DEFAULT_COPY_THRESHOLD = 32 * 1024 * 1024
DEFAULT_COPY_CONCURRENCY = 100
#: Parts of `chunksize` held in memory at once by the uploads of one process; more uploads wait.
DEFAULT_BUFFERED_PARTS = 4
DEFAULT_RETRIES = 3

_STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "NONE",
)


#: `storage.s3` (and `storage.s3aws`) as Distribution 2.8 knows it, plus fastreg's own keys.
KEYS = struct(
    accesskey=STR,
    secretkey=STR,
    sessiontoken=STR,
    region=STR,
    regionendpoint=STR,
    forcepathstyle=BOOL,
    bucket=STR,
    encrypt=BOOL,
    keyid=STR,
    secure=BOOL,
    skipverify=BOOL,
    v4auth=BOOL,
    chunksize=INT,
    multipartcopychunksize=INT,
    multipartcopymaxconcurrency=INT,
    multipartcopythresholdsize=INT,
    rootdirectory=STR,
    storageclass=STR,
    maxbufferedparts=INT,
    maxrequestspersecond=INT,
    **CLIENT_KEYS,
    useragent=unsupported(STR),
    objectacl=unsupported(STR),
    usedualstack=unsupported(BOOL),
    accelerate=unsupported(BOOL),
    usefipsendpoint=unsupported(BOOL),
    loglevel=unsupported(ANY),
)


def split(size: int, chunk: int, last_min: int = 0) -> list[tuple[int, int]]:
    """Inclusive byte ranges of at most ``chunk`` bytes covering ``size`` bytes.

    A last range shorter than ``last_min`` is merged into the one before (S3 parts other than
    the last must be >= 5 MiB), so ``chunk`` is kept ``last_min`` below the 5 GiB part limit.
    """
    chunk = max(MIN_PART, min(chunk, MAX_PART - last_min))
    ranges = [(start, min(size, start + chunk) - 1) for start in range(0, size, chunk)]
    if len(ranges) > 1 and ranges[-1][1] - ranges[-1][0] + 1 < last_min:
        last = ranges.pop()
        ranges[-1] = (ranges[-1][0], last[1])
    return ranges


@dataclass(frozen=True, slots=True)
class S3Params:
    bucket: str
    region: str = "us-east-1"
    accesskey: str | None = None
    secretkey: str | None = None
    sessiontoken: str | None = None
    regionendpoint: str | None = None
    forcepathstyle: bool = False
    rootdirectory: str = ""
    chunksize: int = DEFAULT_CHUNK
    multipartcopychunksize: int = DEFAULT_COPY_CHUNK
    multipartcopythresholdsize: int = DEFAULT_COPY_THRESHOLD
    multipartcopymaxconcurrency: int = DEFAULT_COPY_CONCURRENCY
    # fastreg only: parts buffered at once by all uploads of one process (see s3/writer.py)
    maxbufferedparts: int = DEFAULT_BUFFERED_PARTS
    secure: bool = True
    skipverify: bool = False
    v4auth: bool = True
    storageclass: str | None = "STANDARD"
    encrypt: bool = False
    keyid: str | None = None
    maxrequestspersecond: float = 0.0  # 0: unlimited
    maxretries: int = DEFAULT_RETRIES
    presignexpiry: float = PRESIGN_EXPIRY
    connecttimeout: float = CONNECT_TIMEOUT
    readtimeout: float = READ_TIMEOUT

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint with a scheme: Distribution accepts a bare host and picks by `secure`."""
        if not self.regionendpoint:
            return None
        if "://" in self.regionendpoint:
            return self.regionendpoint.rstrip("/")
        return f"{'https' if self.secure else 'http'}://{self.regionendpoint.rstrip('/')}"

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> S3Params:
        p = Section(raw, "storage.s3")
        bucket = p.required("bucket")
        endpoint = p.optional("regionendpoint") or None
        region = p.optional("region") or ("us-east-1" if endpoint else None)
        if not region:
            raise ConfigError("storage.s3.region: required (or set regionendpoint)")
        v4auth = p.flag("v4auth", True)
        if not v4auth and (not endpoint or "amazonaws.com" in endpoint):
            raise ConfigError("storage.s3.v4auth: Amazon S3 accepts only v4 authentication")
        storageclass = p.text("storageclass", "STANDARD").upper()
        if storageclass not in _STORAGE_CLASSES:
            known = ", ".join(_STORAGE_CLASSES)
            raise ConfigError(f"storage.s3.storageclass: {storageclass!r} is not one of {known}")
        return cls(
            bucket=bucket,
            region=region,
            accesskey=p.optional("accesskey"),
            secretkey=p.optional("secretkey"),
            sessiontoken=p.optional("sessiontoken"),
            regionendpoint=endpoint,
            # Distribution 2.8 always uses path-style addressing with a custom endpoint
            forcepathstyle=p.flag("forcepathstyle", bool(endpoint)),
            rootdirectory=p.text("rootdirectory").strip("/"),
            chunksize=p.integer("chunksize", DEFAULT_CHUNK, MIN_PART, MAX_PART),
            multipartcopychunksize=p.integer(
                "multipartcopychunksize", DEFAULT_COPY_CHUNK, MIN_PART, MAX_PART
            ),
            multipartcopythresholdsize=p.integer(
                "multipartcopythresholdsize", DEFAULT_COPY_THRESHOLD, 0, MAX_PART
            ),
            multipartcopymaxconcurrency=p.integer(
                "multipartcopymaxconcurrency", DEFAULT_COPY_CONCURRENCY, 1, 1000
            ),
            maxbufferedparts=p.integer("maxbufferedparts", DEFAULT_BUFFERED_PARTS, 1, 10_000),
            secure=p.flag("secure", True),
            skipverify=p.flag("skipverify", False),
            v4auth=v4auth,
            storageclass=None if storageclass == "NONE" else storageclass,
            encrypt=p.flag("encrypt", False),
            keyid=p.optional("keyid") or None,
            maxrequestspersecond=float(p.integer("maxrequestspersecond", 0, 0, 1_000_000)),
            **client_fields(p, retries=DEFAULT_RETRIES),
        )


def parse(raw: Mapping[str, Any]) -> S3Params:
    """The driver's settings from its checked `storage.s3` section (the factory's hook)."""
    return S3Params.parse(raw)
