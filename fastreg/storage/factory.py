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
    if name in ("s3", "s3aws"):  # Distribution registers its s3 driver under both names
        from fastreg.storage.s3 import S3Driver  # imported only when used

        return S3Driver.from_parameters(parameters)
    if name == "azure":
        from fastreg.storage.azure import AzureDriver

        return AzureDriver.from_parameters(parameters)
    if name == "gcs":
        from fastreg.storage.gcs import GCSDriver

        return GCSDriver.from_parameters(parameters)
    if name == "swift":
        from fastreg.storage.swift import SwiftDriver

        return SwiftDriver.from_parameters(parameters)
    if name == "oss":  # over OSS's S3-compatible API: the S3 driver, built from OSS's keys
        from fastreg.storage.oss import OssDriver

        return OssDriver.from_parameters(parameters)
    raise UnknownDriver(
        f"storage driver {name!r} is not supported by this fastreg version "
        "(supported: filesystem, inmemory, s3, azure, gcs, swift, oss)"
    )
