"""A file parsed once and parsed again when it changes (htpasswd users, the issuer's ACL).

The file is looked at (mtime, size, inode) at most once per `interval`, on a thread; when it is
missing or unreadable the last good contents stay in force and a warning is logged, so a file
being replaced by an editor or a config-management tool never locks everyone out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("fastreg.auth")

Stamp = tuple[int, int, int]


def stamp_of(path: str) -> Stamp:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class WatchedFile(Generic[T]):
    def __init__(
        self,
        path: str,
        parse: Callable[[bytes], T],
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._parse = parse
        self._interval = interval
        self._clock = clock
        self._value: T | None = None
        self._stamp: Stamp | None = None
        self._checked = float("-inf")
        self._lock = asyncio.Lock()
        self.generation = 0  # bumped on every successful (re)load

    def load(self) -> T:
        """Read and parse now, blocking (start-up: a bad file stops the start)."""
        stamp = stamp_of(self.path)
        with open(self.path, "rb") as f:
            value = self._parse(f.read())
        self._value, self._stamp, self._checked = value, stamp, self._clock()
        self.generation += 1
        return value

    async def current(self) -> T:
        if self._value is None or self._clock() - self._checked >= self._interval:
            await self._refresh()
        assert self._value is not None, f"{self.path} was never loaded"
        return self._value

    async def _refresh(self) -> None:
        async with self._lock:
            if self._value is not None and self._clock() - self._checked < self._interval:
                return
            loop = asyncio.get_running_loop()
            try:
                stamp = await loop.run_in_executor(None, stamp_of, self.path)
                if stamp != self._stamp or self._value is None:
                    await loop.run_in_executor(None, self.load)
                    log.info("file reloaded", extra={"path": self.path})
            except (OSError, ValueError) as exc:
                log.warning("file unreadable, keeping the last good contents",
                            extra={"path": self.path, "error": str(exc)})
            finally:
                self._checked = self._clock()
