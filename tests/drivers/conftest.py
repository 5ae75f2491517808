"""One driver suite for every driver: adding a driver means adding one fixture param here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fastreg.storage.base import StorageDriver
from fastreg.storage.filesystem import FilesystemDriver
from fastreg.storage.inmemory import InMemoryDriver


@pytest.fixture(params=["filesystem", "inmemory"])
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageDriver]:
    d: StorageDriver
    if request.param == "filesystem":
        d = FilesystemDriver(str(tmp_path / "root"))
    else:
        d = InMemoryDriver()
    yield d
    await d.close()
