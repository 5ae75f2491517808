"""The hash lane: batches hashed in order, off the caller's path, with bounded look-ahead."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading

import pytest

from fastreg.registry.hashlane import HashLane


class GatedHasher:
    """sha256 whose updates wait for a gate, so a test controls when hashing progresses."""

    name = "sha256"

    def __init__(self) -> None:
        self.inner = hashlib.sha256()
        self.gate = threading.Event()
        self.updates = 0

    def update(self, data: bytes) -> None:
        if not self.gate.wait(10):
            raise TimeoutError("gate never opened")
        self.inner.update(data)
        self.updates += 1

    def hexdigest(self) -> str:
        return self.inner.hexdigest()


async def test_settle_covers_every_batch_in_order() -> None:
    lane = HashLane(hashlib.sha256(), 2)
    parts = [os.urandom(100_000) for _ in range(9)]
    for part in parts:
        await lane.feed(part)
    hasher = await lane.settle()
    assert hasher.hexdigest() == hashlib.sha256(b"".join(parts)).hexdigest()


async def test_feed_returns_before_hashing_and_blocks_at_depth() -> None:
    hasher = GatedHasher()
    lane = HashLane(hasher, 2)
    # one batch taken by the lane (blocked in update) plus two waiting: three feeds return at once
    for i in range(3):
        await asyncio.wait_for(lane.feed(bytes([i]) * 10), 1)
    fourth = asyncio.ensure_future(lane.feed(b"\x03" * 10))
    await asyncio.sleep(0.05)
    assert not fourth.done(), "the lane must not hold more than depth batches waiting"
    assert hasher.updates == 0
    hasher.gate.set()
    await asyncio.wait_for(fourth, 5)
    await asyncio.wait_for(lane.settle(), 5)
    assert hasher.updates == 4
    expected = hashlib.sha256(b"".join(bytes([i]) * 10 for i in range(4))).hexdigest()
    assert hasher.hexdigest() == expected


async def test_lane_restarts_after_going_idle() -> None:
    lane = HashLane(hashlib.sha256(), 2)
    await lane.feed(b"abc")
    await lane.settle()
    await lane.feed(b"def")  # the lane's task ended when idle; feeding starts it again
    assert (await lane.settle()).hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


async def test_cancelled_settle_leaves_the_lane_hashing() -> None:
    hasher = GatedHasher()
    lane = HashLane(hasher, 2)
    await lane.feed(b"x")
    waiter = asyncio.ensure_future(lane.settle())
    await asyncio.sleep(0.02)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    hasher.gate.set()
    await asyncio.wait_for(lane.settle(), 5)
    assert hasher.hexdigest() == hashlib.sha256(b"x").hexdigest()


async def test_a_failed_update_is_raised_by_settle() -> None:
    class Broken:
        name = "sha256"

        def update(self, data: bytes) -> None:
            raise MemoryError("no room")

    lane = HashLane(Broken(), 2)
    await lane.feed(b"x")
    with pytest.raises(MemoryError):
        await lane.settle()
