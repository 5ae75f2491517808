"""The Azure Blob storage driver: Distribution's `storage.azure`, over the REST API (aiohttp)."""

from fastreg.storage.azure.driver import AzureDriver
from fastreg.storage.azure.params import AzureParams

__all__ = ["AzureDriver", "AzureParams"]
