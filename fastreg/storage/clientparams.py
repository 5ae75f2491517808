"""The keys of the object stores' HTTP client (rest.py), read the same way by every driver.

fastreg's own keys, beside each driver's (Distribution has none of them): `maxretries` (attempts
after the first, by the policy of retry.py), `connecttimeout` and `readtimeout` (a bare number
counts seconds) and `presignexpiry` (how long a signed download URL lives). azure, gcs and s3
have all four; swift has the timeouts (its retries are Distribution's `retries`). One table for
the key table and one reader, so that a key means the same, and is bounded the same, on every
backend. No aiohttp here: the parameters are read at load, before any driver is imported.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Protocol

from fastreg.config.convert import SECONDS, Section
from fastreg.config.keys import DURATION_S, INT

TIMEOUT_KEYS = MappingProxyType({"connecttimeout": DURATION_S, "readtimeout": DURATION_S})
CLIENT_KEYS = MappingProxyType(
    {"maxretries": INT, "presignexpiry": DURATION_S, **TIMEOUT_KEYS}
)
PRESIGN_EXPIRY = 20 * 60.0  # Distribution's signed URLs live 20 minutes
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0


class ClientParams(Protocol):
    """What a driver's parameters carry for its client (rest.RestSettings.of)."""

    @property
    def maxretries(self) -> int: ...
    @property
    def connecttimeout(self) -> float: ...
    @property
    def readtimeout(self) -> float: ...


def timeouts(r: Section, connect: float = CONNECT_TIMEOUT) -> dict[str, float]:
    return {
        "connecttimeout": r.positive_duration("connecttimeout", connect, SECONDS),
        "readtimeout": r.positive_duration("readtimeout", READ_TIMEOUT, SECONDS),
    }


def client_fields(r: Section, retries: int, presign_max: float | None = None) -> dict[str, Any]:
    """The four keys of ``CLIENT_KEYS`` as a driver's parameters name them; ``presign_max``
    caps the life of a signed URL where the service does (GCS: a week)."""
    expiry = r.positive_duration("presignexpiry", PRESIGN_EXPIRY, SECONDS)
    return {
        "maxretries": r.integer("maxretries", retries, 0, 100),
        "presignexpiry": expiry if presign_max is None else min(expiry, presign_max),
        **timeouts(r),
    }
