"""The Swift storage driver (aiohttp): Distribution's `storage.swift` on OpenStack Swift."""

from fastreg.storage.swift.driver import SwiftDriver
from fastreg.storage.swift.params import SwiftParams

__all__ = ["SwiftDriver", "SwiftParams"]
