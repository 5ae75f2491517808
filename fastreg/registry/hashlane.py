"""The running digest of one upload, allowed to lag behind the bytes already written.

Hashing is the largest single cost of a push (OpenSSL's sha256, ~0.6 s per GiB here) and it runs
on one thread. A chunked push is a train of PATCHes, each answered only when its bytes are on
storage; if each PATCH also waited for its last batches to be hashed, the hash thread would stand
idle between PATCHes while the client reads the answer and sends the next one. So the lane is not
drained at the end of a PATCH: it goes on hashing the tail while the next PATCH arrives, and only
the digest check at the end of the upload waits for it (``settle``).

A lane is only a cache of work: the bytes it has been given are on storage before any client is
told so, and a lost lane (another worker, a restart) is rebuilt by hashing the stored bytes.
Memory stays bounded: ``feed`` waits while ``depth`` batches wait to be hashed.
"""

from __future__ import annotations

import asyncio
from typing import Any


class HashLane:
    """Feed batches in order; ``settle`` returns the hasher once all of them are hashed."""

    def __init__(self, hasher: Any, depth: int) -> None:
        self.hasher = hasher
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(depth)
        self._task: asyncio.Task[None] | None = None

    @property
    def algorithm(self) -> str:
        return str(self.hasher.name)

    async def feed(self, batch: bytes) -> None:
        await self._queue.put(batch)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def settle(self) -> Any:
        """Wait until every batch fed so far is hashed; the hasher then covers all of them."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)  # a cancelled caller leaves the lane running
        if self._task is not None:
            self._task.result()  # a failed update must not pass as a digest
        return self.hasher

    async def _run(self) -> None:
        """Hash what waits, then end; the next ``feed`` starts the lane again."""
        loop = asyncio.get_running_loop()
        while not self._queue.empty():
            batch = self._queue.get_nowait()
            await loop.run_in_executor(None, self.hasher.update, batch)
