"""Build the configured storage driver by name; an unknown name fails at start, naming it.

``DRIVERS`` maps each name to its parameters module and its driver class, both imported only
when that driver is configured: a filesystem registry never loads aiohttp's S3 client or Google's
crypto. Adding a driver is one row here (and its package). Each parameters module declares
``KEYS`` (its part of the configuration key table) and ``parse(raw) -> settings``;
`fastreg.config` checks and parses the configured driver's section at load through
``parameters_module``, so a misspelt or wrongly typed key is found before anything starts.
``create_driver`` takes either those parsed settings or a raw mapping (tests, tools) and builds
the driver with its class's ``from_settings``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from fastreg.storage.base import StorageDriver

#: name -> (parameters module, "driver module:Class")
DRIVERS: Mapping[str, tuple[str, str]] = {
    "filesystem": ("fastreg.storage.filesystem", "fastreg.storage.filesystem:FilesystemDriver"),
    "inmemory": ("fastreg.storage.inmemory", "fastreg.storage.inmemory:InMemoryDriver"),
    "s3": ("fastreg.storage.s3.params", "fastreg.storage.s3:S3Driver"),
    # Distribution registers its s3 driver under both names
    "s3aws": ("fastreg.storage.s3.params", "fastreg.storage.s3:S3Driver"),
    "azure": ("fastreg.storage.azure.params", "fastreg.storage.azure:AzureDriver"),
    "gcs": ("fastreg.storage.gcs.params", "fastreg.storage.gcs:GCSDriver"),
    "swift": ("fastreg.storage.swift.params", "fastreg.storage.swift:SwiftDriver"),
    # OSS's S3-compatible API: the S3 driver, built from OSS's keys
    "oss": ("fastreg.storage.oss", "fastreg.storage.oss:OssDriver"),
}

SUPPORTED = ", ".join(n for n in DRIVERS if n != "s3aws")


class UnknownDriver(ValueError):
    pass


def parameters_module(name: str) -> ModuleType | None:
    """The module with the driver's ``KEYS`` and ``parse``; None for a driver fastreg lacks."""
    entry = DRIVERS.get(name)
    return importlib.import_module(entry[0]) if entry is not None else None


def create_driver(name: str, parameters: Any) -> StorageDriver:
    """The driver ``name`` from its parsed settings (``parameters_module(name).parse``) or raw."""
    entry = DRIVERS.get(name)
    if entry is None:
        raise UnknownDriver(
            f"storage driver {name!r} is not supported by this fastreg version "
            f"(supported: {SUPPORTED})"
        )
    params_module, target = entry
    if isinstance(parameters, Mapping):
        parameters = importlib.import_module(params_module).parse(parameters)
    module, _, cls = target.partition(":")
    driver: StorageDriver = getattr(importlib.import_module(module), cls).from_settings(parameters)
    return driver
