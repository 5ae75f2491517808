"""The OSS driver: Distribution's `storage.oss` keys over OSS's S3-compatible API (the S3 driver).

Only the construction is OSS's own: Distribution's keys map to `S3Params`, and the S3 driver does
the rest with the same key layout (`<rootdirectory>/docker/registry/v2/...`, Distribution's
`ossPath`). Endpoint rules: without `endpoint`, the region's OSS endpoint
`oss-<region id>[-internal].aliyuncs.com` (`region` is the OSS region, `oss-cn-hangzhou`;
`internal` picks the VPC endpoint), with virtual-hosted addressing (the only style OSS accepts);
an explicit `endpoint` is used as given, virtual-hosted on `*.aliyuncs.com` and path-style
elsewhere (S3-compatible servers). Requests are signed with signature version 4 for the region
id (`cn-hangzhou`); Alibaba's guide for the AWS SDKs warns that boto3's v4 sends chunked bodies
OSS rejects, which the S3 driver never does (checksums only where the API requires them).

Tested against SeaweedFS's S3 API, not against Alibaba Cloud.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fastreg.config.convert import ConfigError, Section
from fastreg.config.keys import BOOL, INT, STR, struct
from fastreg.storage.s3 import S3Driver, S3Params
from fastreg.storage.s3.params import DEFAULT_CHUNK, MAX_PART, MIN_PART

OSS_DOMAIN = "aliyuncs.com"

#: `storage.oss`: Distribution 2.8's keys, all of which fastreg reads.
KEYS = struct(
    accesskeyid=STR,
    accesskeysecret=STR,
    region=STR,
    internal=BOOL,
    encrypt=BOOL,
    encryptionkeyid=STR,
    secure=BOOL,
    endpoint=STR,
    chunksize=INT,
    rootdirectory=STR,
    bucket=STR,
)


def oss_params(raw: Mapping[str, Any]) -> S3Params:
    """`storage.oss` parameters (Distribution's keys) as the S3 driver's parameters."""
    p = Section(raw, "storage.oss")
    required = {k: p.required(k) for k in ("accesskeyid", "accesskeysecret", "region", "bucket")}
    region_id = required["region"].removeprefix("oss-")
    secure = p.flag("secure", True)
    internal = p.flag("internal")
    endpoint = p.optional("endpoint")
    if endpoint:
        url = endpoint if "://" in endpoint else f"{'https' if secure else 'http'}://{endpoint}"
        host = urlsplit(url).hostname or ""
        if not host:
            raise ConfigError(f"storage.oss.endpoint: no host in {endpoint!r}")
        path_style = not (host == OSS_DOMAIN or host.endswith("." + OSS_DOMAIN))
    else:
        suffix = "-internal" if internal else ""
        url = f"{'https' if secure else 'http'}://oss-{region_id}{suffix}.{OSS_DOMAIN}"
        path_style = False
    keyid = p.optional("encryptionkeyid")
    return S3Params(
        bucket=required["bucket"],
        region=region_id,
        accesskey=required["accesskeyid"],
        secretkey=required["accesskeysecret"],
        regionendpoint=url.rstrip("/"),
        forcepathstyle=path_style,
        rootdirectory=p.text("rootdirectory").strip("/"),
        chunksize=p.integer("chunksize", DEFAULT_CHUNK, MIN_PART, MAX_PART),
        secure=secure,
        v4auth=True,
        storageclass=None,  # OSS's default class (Standard); it names its classes differently
        encrypt=p.flag("encrypt"),
        keyid=keyid,
    )


parse = oss_params  # the factory's hook: the driver's settings from its checked section


class OssDriver(S3Driver):
    name = "oss"
