"""The Google Cloud Storage driver: Distribution's `storage.gcs`, over the JSON API (aiohttp)."""

from fastreg.storage.gcs.driver import GCSDriver
from fastreg.storage.gcs.params import GCSParams

__all__ = ["GCSDriver", "GCSParams"]
