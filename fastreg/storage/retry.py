"""The one retry policy of the storage client (rest.py, for azure, gcs, swift and s3).

What is worth another attempt: a failure of the transport itself, 408, 429 and 5xx answers, and
whatever a client's service calls transient (S3's ``SlowDown`` or an error inside a 200). How long
to wait: jittered exponential backoff, from ``BASE`` seconds for a transient failure and from
``THROTTLED_BASE`` for a throttling answer (the service asks for less load: botocore's standard
mode waits that long), never more than ``CAP``. A client raises ``Retry`` from one attempt; the
last attempt's error is what the caller sees.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from fastreg.storage.base import StorageError

log = logging.getLogger("fastreg.storage")

#: Failures of the transport itself: worth another attempt.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
THROTTLE_STATUSES = frozenset({429})
BASE = 0.1
THROTTLED_BASE = 1.0
CAP = 20.0

T = TypeVar("T")


class Retry(Exception):
    """An attempt failed in a way worth another; ``error`` is what to raise when none is left."""

    def __init__(self, error: StorageError, throttled: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.throttled = throttled


def delay(attempt: int, throttled: bool) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0 for the first)."""
    ceiling = min(CAP, (THROTTLED_BASE if throttled else BASE) * 2.0**attempt)
    return ceiling / 2 + random.random() * ceiling / 2


async def retrying(
    attempts: int,
    attempt: Callable[[], Awaitable[T]],
    before: Callable[[], Awaitable[None]] | None = None,
    what: str = "",
) -> T:
    """Run ``attempt`` until it returns, at most ``attempts`` times; ``before`` runs ahead of
    each try (a rate limiter)."""
    for number in range(attempts):
        if before is not None:
            await before()
        try:
            return await attempt()
        except Retry as retry:
            if number + 1 >= attempts:
                raise retry.error from None
            wait = delay(number, retry.throttled)
            log.debug("%s: %s; retrying in %.2fs", what, retry.error, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")
