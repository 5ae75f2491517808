"""One driver suite for every driver: adding a driver means adding one fixture param here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fastreg.storage.azure import AzureDriver
from fastreg.storage.base import StorageDriver
from fastreg.storage.filesystem import FilesystemDriver
from fastreg.storage.gcs import GCSDriver
from fastreg.storage.inmemory import InMemoryDriver
from fastreg.storage.oss import OssDriver
from fastreg.storage.s3 import S3Driver
from fastreg.storage.swift import SwiftDriver
from tests.azurite import Azurite
from tests.fakegcs import FakeGCS
from tests.oss import oss_parameters
from tests.seaweed import SeaweedFS
from tests.swiftserver import SwiftServer


@pytest.fixture(
    params=["filesystem", "inmemory", pytest.param("s3", marks=pytest.mark.s3), "swift", "oss",
            "azure", "gcs"]
)
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageDriver]:
    d: StorageDriver
    if request.param == "filesystem":
        d = FilesystemDriver(str(tmp_path / "root"))
    elif request.param == "s3":  # a fresh bucket on the session's SeaweedFS (tests/seaweed.py)
        seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
        bucket = request.getfixturevalue("s3_bucket")
        d = S3Driver.from_parameters(seaweedfs.s3_parameters(bucket, rootdirectory="/suite/"))
    elif request.param == "swift":  # a fresh container on the session's Swift (tests/swiftserver.py)
        swift: SwiftServer = request.getfixturevalue("swift_server")
        container = request.getfixturevalue("swift_container")
        d = SwiftDriver.from_parameters(swift.swift_parameters(container, prefix="/suite/"))
    elif request.param == "oss":  # OSS's S3-compatible API: a fresh bucket on the SeaweedFS
        weed: SeaweedFS = request.getfixturevalue("seaweedfs")
        bucket = request.getfixturevalue("s3_bucket")
        d = OssDriver.from_parameters(oss_parameters(weed, bucket, rootdirectory="/suite/"))
    elif request.param == "azure":  # a fresh container on the session's Azurite (tests/azurite.py)
        azurite: Azurite = request.getfixturevalue("azurite")
        params = azurite.parameters(request.getfixturevalue("azure_container"))
        d = AzureDriver.from_parameters({**params, "rootdirectory": "/suite/"})
    elif request.param == "gcs":  # a fresh bucket on fake-gcs-server, signed in (tests/fakegcs.py)
        fakegcs: FakeGCS = request.getfixturevalue("fakegcs")
        keyfile = request.getfixturevalue("gcs_keyfile")
        bucket = request.getfixturevalue("gcs_bucket")
        d = GCSDriver.from_parameters(
            fakegcs.parameters(bucket, keyfile=str(keyfile), rootdirectory="/suite/")
        )
    else:
        d = InMemoryDriver()
    yield d
    await d.close()
