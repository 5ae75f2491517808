"""Build the configured storage driver by name; an unknown name fails at start, naming it.

Each driver's parameters module declares ``KEYS`` (its part of the configuration key table) and
``parse(raw) -> settings``; `fastreg.config` checks and parses the configured driver's section at
load through ``parameters_module``, so a misspelt or wrongly typed key is found before anything
starts. ``create_driver`` takes either those parsed settings or a raw mapping (tests, tools).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from fastreg.storage.base import StorageDriver
from fastreg.storage.filesystem import FilesystemDriver
from fastreg.storage.inmemory import InMemoryDriver

SUPPORTED = "filesystem, inmemory, s3, azure, gcs, swift, oss"

#: Where each driver's ``KEYS`` and ``parse`` live (imported only when that driver is configured).
_PARAMETERS = {
    "filesystem": "fastreg.storage.filesystem",
    "inmemory": "fastreg.storage.inmemory",
    "s3": "fastreg.storage.s3.params",
    "s3aws": "fastreg.storage.s3.params",  # Distribution registers its s3 driver under both names
    "azure": "fastreg.storage.azure.params",
    "gcs": "fastreg.storage.gcs.params",
    "swift": "fastreg.storage.swift.params",
    "oss": "fastreg.storage.oss",
}


class UnknownDriver(ValueError):
    pass


def parameters_module(name: str) -> ModuleType | None:
    """The module with the driver's ``KEYS`` and ``parse``; None for a driver fastreg lacks."""
    module = _PARAMETERS.get(name)
    return importlib.import_module(module) if module is not None else None


def create_driver(name: str, parameters: Any) -> StorageDriver:
    """The driver ``name`` from its parsed settings (``parameters_module(name).parse``) or raw."""
    module = parameters_module(name)
    if module is None:
        raise UnknownDriver(
            f"storage driver {name!r} is not supported by this fastreg version "
            f"(supported: {SUPPORTED})"
        )
    settings: Any = module.parse(parameters) if isinstance(parameters, Mapping) else parameters
    if name == "filesystem":
        return FilesystemDriver.from_parameters(settings)
    if name == "inmemory":
        return InMemoryDriver()
    if name in ("s3", "s3aws"):
        from fastreg.storage.s3 import S3Driver  # imported only when used

        return S3Driver(settings)
    if name == "azure":
        from fastreg.storage.azure import AzureDriver

        return AzureDriver(settings)
    if name == "gcs":
        from fastreg.storage.gcs import GCSDriver

        return GCSDriver(settings)
    if name == "swift":
        from fastreg.storage.swift import SwiftDriver

        return SwiftDriver(settings)
    from fastreg.storage.oss import OssDriver  # over OSS's S3-compatible API: the S3 driver

    return OssDriver(settings)
