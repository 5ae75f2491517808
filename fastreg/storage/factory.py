"""Build the configured storage driver by name; an unknown name fails at start, naming it.

The registry maps each name to the module and class of its driver, imported only when that
driver is configured: a filesystem registry never loads aiohttp's S3 client or Google's crypto.
Adding a driver is one row here (and its package).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from fastreg.storage.base import StorageDriver

#: name -> "module:Class"; the class has ``from_parameters(parameters) -> driver``.
DRIVERS: Mapping[str, str] = {
    "filesystem": "fastreg.storage.filesystem:FilesystemDriver",
    "inmemory": "fastreg.storage.inmemory:InMemoryDriver",
    "s3": "fastreg.storage.s3:S3Driver",
    "s3aws": "fastreg.storage.s3:S3Driver",  # Distribution registers its s3 driver under both
    "azure": "fastreg.storage.azure:AzureDriver",
    "gcs": "fastreg.storage.gcs:GCSDriver",
    "swift": "fastreg.storage.swift:SwiftDriver",
    "oss": "fastreg.storage.oss:OssDriver",  # OSS's S3-compatible API: the S3 driver, OSS's keys
}


class UnknownDriver(ValueError):
    pass


def create_driver(name: str, parameters: Mapping[str, Any]) -> StorageDriver:
    target = DRIVERS.get(name)
    if target is None:
        supported = ", ".join(n for n in DRIVERS if n != "s3aws")
        raise UnknownDriver(
            f"storage driver {name!r} is not supported by this fastreg version "
            f"(supported: {supported})"
        )
    module, _, cls = target.partition(":")
    driver: StorageDriver = getattr(importlib.import_module(module), cls).from_parameters(
        parameters
    )
    return driver
