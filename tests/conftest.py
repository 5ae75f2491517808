"""Fixtures shared by every test directory: the session's SeaweedFS and a bucket per test."""

from tests.azurite import azure_container, azurite
from tests.fakegcs import fakegcs, gcs_bucket, gcs_keyfile, gcs_token_server
from tests.seaweed import s3_bucket, s3_shared_bucket, seaweedfs
from tests.swiftserver import swift_container, swift_server

__all__ = [
    "azure_container", "azurite", "fakegcs", "gcs_bucket", "gcs_keyfile", "gcs_token_server",
    "s3_bucket", "s3_shared_bucket", "seaweedfs", "swift_container", "swift_server"]
