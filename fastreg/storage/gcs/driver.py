"""The GCS driver: Distribution's `gcs` layout in one bucket, over the JSON API (aiohttp).

Directories are name prefixes. Small files are one media upload; appended files go through
resumable uploads and compose (`writer.py`); moves are server-side rewrites, then a delete
(`objects.py`). Downloads redirect to V4 signed URLs when a service account key is configured.
Everything else is the object-store driver's.
"""

from __future__ import annotations

from fastreg.storage.gcs.objects import GCSObjects
from fastreg.storage.gcs.params import GCSParams
from fastreg.storage.gcs.writer import GCSWriter
from fastreg.storage.objectstore import ObjectStoreDriver


class GCSDriver(ObjectStoreDriver[GCSObjects]):
    name = "gcs"

    @classmethod
    def from_settings(cls, settings: GCSParams) -> GCSDriver:
        return cls(GCSObjects(settings), GCSWriter.open)
