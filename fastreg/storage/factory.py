"""Build the configured storage driver by name; an unknown name fails at start, naming it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastreg.storage.base import StorageDriver
from fastreg.storage.filesystem import FilesystemDriver
from fastreg.storage.inmemory import InMemoryDriver


class UnknownDriver(ValueError):
    pass


def create_driver(name: str, parameters: Mapping[str, Any]) -> StorageDriver:
    if name == "filesystem":
        return FilesystemDriver.from_parameters(parameters)
    if name == "inmemory":
        return InMemoryDriver.from_parameters(parameters)
    raise UnknownDriver(
        f"storage driver {name!r} is not supported by this fastreg version "
        "(supported: filesystem, inmemory)"
    )
