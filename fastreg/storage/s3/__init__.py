"""The S3 storage driver (its own client on aiohttp): Distribution's `storage.s3` on any S3-compatible store."""

from fastreg.storage.s3.driver import S3Driver
from fastreg.storage.s3.params import S3Params

__all__ = ["S3Driver", "S3Params"]
