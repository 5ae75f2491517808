"""Distribution's `storage.oss` keys mapped onto the S3 driver: OSS endpoint naming and addressing."""

from __future__ import annotations

from typing import Any

import pytest

from fastreg.config import ConfigError
from fastreg.storage.factory import create_driver
from fastreg.storage.oss import OssDriver, oss_params

BASE = {"accesskeyid": "id", "accesskeysecret": "secret", "region": "oss-cn-hangzhou", "bucket": "b"}


@pytest.mark.parametrize(
    ("extra", "endpoint", "path_style"),
    [
        ({}, "https://oss-cn-hangzhou.aliyuncs.com", False),
        ({"internal": True}, "https://oss-cn-hangzhou-internal.aliyuncs.com", False),
        ({"secure": False}, "http://oss-cn-hangzhou.aliyuncs.com", False),
        ({"region": "cn-beijing"}, "https://oss-cn-beijing.aliyuncs.com", False),
        ({"endpoint": "oss-accelerate.aliyuncs.com"}, "https://oss-accelerate.aliyuncs.com", False),
        ({"endpoint": "http://127.0.0.1:8333/"}, "http://127.0.0.1:8333", True),
        ({"endpoint": "minio.local:9000", "secure": "false"}, "http://minio.local:9000", True),
    ],
)
def test_endpoint_naming(extra: dict[str, Any], endpoint: str, path_style: bool) -> None:
    p = oss_params({**BASE, **extra})
    assert (p.endpoint_url, p.forcepathstyle) == (endpoint, path_style)
    assert p.region == extra.get("region", "oss-cn-hangzhou").removeprefix("oss-")


def test_keys_map_onto_the_s3_parameters() -> None:
    p = oss_params({**BASE, "rootdirectory": "/reg/", "chunksize": "6291456", "encrypt": True,
                    "encryptionkeyid": "kms-1"})  # fmt: skip
    assert (p.accesskey, p.secretkey, p.bucket, p.rootdirectory) == ("id", "secret", "b", "reg")
    assert (p.chunksize, p.encrypt, p.keyid, p.storageclass, p.v4auth) == (
        6 * 1024**2, True, "kms-1", None, True)
    assert p.chunksize == oss_params({**BASE, "chunksize": 6291456}).chunksize


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"bucket": ""}, "storage.oss.bucket: required"),
        ({"region": None}, "storage.oss.region: required"),
        ({"chunksize": 1024}, "storage.oss.chunksize"),
        ({"internal": "maybe"}, "storage.oss.internal: expected a boolean"),
    ],
)
def test_bad_parameters_are_named(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        oss_params({**BASE, **extra})


def test_factory_builds_it_by_name() -> None:
    driver = create_driver("oss", BASE)
    assert isinstance(driver, OssDriver) and driver.name == "oss"
    assert driver.key("/docker/registry/v2/x") == "docker/registry/v2/x"
