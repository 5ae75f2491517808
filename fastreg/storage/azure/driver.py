"""The Azure Blob driver: Distribution's `azure` driver layout in one container, over REST.

Files are block blobs named by `AzureParams.blob_name` (2.8's names by default); directories are
name prefixes. Small files are one Put Blob (atomic); appended files are staged blocks committed
with Put Block List (`writer.py`); moves are a server-side Copy Blob, polled until done, then a
delete (`objects.py`). Downloads redirect to a read-only service SAS URL. The container is created
at start when missing, as Distribution does. Everything else is the object-store driver's.
"""

from __future__ import annotations

from fastreg.storage.azure.objects import AzureObjects
from fastreg.storage.azure.params import AzureParams
from fastreg.storage.azure.writer import AzureWriter
from fastreg.storage.objectstore import ObjectStoreDriver


class AzureDriver(ObjectStoreDriver[AzureObjects]):
    name = "azure"

    @classmethod
    def from_settings(cls, settings: AzureParams) -> AzureDriver:
        return cls(AzureObjects(settings), AzureWriter.open)
