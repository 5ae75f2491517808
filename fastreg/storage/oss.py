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

from fastreg.configkeys import ConfigError
from fastreg.storage.rest import ParamReader
from fastreg.storage.s3 import S3Driver, S3Params
from fastreg.storage.s3.params import DEFAULT_CHUNK, MAX_PART, MIN_PART

OSS_DOMAIN = "aliyuncs.com"


def oss_params(raw: Mapping[str, Any]) -> S3Params:
    """`storage.oss` parameters (Distribution's keys) as the S3 driver's parameters."""
    p = ParamReader(raw, "storage.oss")
    required = {}
    for key in ("accesskeyid", "accesskeysecret", "region", "bucket"):
        value = p.text(key)
        if not value:
            raise ConfigError(f"storage.oss.{key}: required")
        required[key] = value
    region_id = required["region"].removeprefix("oss-")
    secure = bool(p.flag("secure", True))
    internal = bool(p.flag("internal", False))
    endpoint = p.text("endpoint")
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
    keyid = p.text("encryptionkeyid")
    return S3Params(
        bucket=required["bucket"],
        region=region_id,
        accesskey=required["accesskeyid"],
        secretkey=required["accesskeysecret"],
        regionendpoint=url.rstrip("/"),
        forcepathstyle=path_style,
        rootdirectory=(p.text("rootdirectory") or "").strip("/"),
        chunksize=p.integer("chunksize", DEFAULT_CHUNK, MIN_PART, MAX_PART),
        secure=secure,
        v4auth=True,
        storageclass=None,  # OSS's default class (Standard); it names its classes differently
        encrypt=bool(p.flag("encrypt", False)),
        keyid=keyid,
    )


class OssDriver(S3Driver):
    name = "oss"

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> OssDriver:
        return cls(oss_params(params))
