"""Verified credentials, remembered so a hot client costs one signature check per token.

Entries are keyed by xxhash of the raw credential (an internal cache key, never a digest of
content) and hold the credential itself, compared on every hit, so a hash collision can never
hand one client's access to another. Each entry lives until its own deadline (a token's `exp`
plus leeway) and the cache is bounded both in entries and in bytes of credentials held.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import xxhash

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    credential: bytes
    value: V
    deadline: float


class CredentialCache(Generic[V]):
    def __init__(
        self,
        maxsize: int = 10_000,
        maxbytes: int = 32 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.maxsize = maxsize
        self.maxbytes = maxbytes
        self._clock = clock
        self._entries: OrderedDict[int, _Entry[V]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, credential: bytes) -> V | None:
        key = xxhash.xxh3_64_intdigest(credential)
        entry = self._entries.get(key)
        if entry is None or not hmac.compare_digest(entry.credential, credential):
            self.misses += 1
            return None
        if self._clock() > entry.deadline:
            self._drop(key)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.value

    def put(self, credential: bytes, value: V, deadline: float) -> None:
        if len(credential) > self.maxbytes // 16:
            return  # one huge credential must not flush everyone else's
        key = xxhash.xxh3_64_intdigest(credential)
        self._drop(key)
        self._entries[key] = _Entry(credential, value, deadline)
        self._bytes += len(credential)
        while len(self._entries) > self.maxsize or self._bytes > self.maxbytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.credential)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.credential)

    def __len__(self) -> int:
        return len(self._entries)
