"""What fastreg/registry/roots.py calls a registry, on every driver (tests/backends.py): a fresh
space holds nothing (a filesystem root not yet made does not exist), `docker/registry/v2` below
the root makes a registry, anything else at the root is not one. The commands' error exits on real
processes are in tests/integration/test_command_roots.py."""

from __future__ import annotations

import pytest

from fastreg.registry.roots import (
    NotARegistry,
    RootState,
    check_destination,
    check_source,
    place,
    survey,
)
from fastreg.storage.base import StorageDriver


async def test_a_fresh_root_holds_nothing(driver: StorageDriver) -> None:
    expected = RootState.MISSING if driver.name == "filesystem" else RootState.EMPTY
    assert await survey(driver) is expected
    with pytest.raises(NotARegistry) as raised:
        await check_source(driver)
    assert str(raised.value) == f"storage root {place(driver)} {expected.value}: not a registry"
    await check_destination(driver)  # an empty registry to migrate into


async def test_a_blob_below_docker_registry_v2_makes_a_registry(driver: StorageDriver) -> None:
    await driver.put_content("/docker/registry/v2/blobs/sha256/ab/" + "ab" * 32 + "/data", b"x")
    assert await survey(driver) is RootState.REGISTRY
    await check_source(driver)
    await check_destination(driver)


@pytest.mark.parametrize("path", ["/other/file", "/docker/registry/v1/x", "/docker/x"])
async def test_other_files_at_the_root_are_no_registry(driver: StorageDriver, path: str) -> None:
    await driver.put_content(path, b"x")
    assert await survey(driver) is RootState.FOREIGN
    for check in (check_source, check_destination):
        with pytest.raises(NotARegistry) as raised:
            await check(driver)
        assert place(driver) in str(raised.value) and "docker/registry/v2" in str(raised.value)
