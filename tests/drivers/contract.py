"""Helpers of the driver contract suite (test_suite*.py): random names and contents in the
manner of Distribution's testsuites, whole reads and writes, and a walk over list and stat."""

from __future__ import annotations

import os
import random
import string

from fastreg.storage.base import StorageDriver

NAME_CHARS = string.ascii_lowercase + string.digits
SEPARATORS = "._-"
MIB = 1024 * 1024


def random_name(length: int = 12) -> str:
    """A file name of plain characters with a separator now and then, never two in a row, never
    first or last (Distribution's randomFilename)."""
    out: list[str] = []
    for i in range(length):
        separator = out and out[-1] not in SEPARATORS and 0 < i < length - 1
        out.append(random.choice(SEPARATORS if separator and random.random() < 0.25 else NAME_CHARS))
    return "".join(out)


def random_path(depth: int = 3) -> str:
    return "".join(f"/{random_name(random.randint(4, 12))}" for _ in range(depth))


async def read_all(driver: StorageDriver, path: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join([c async for c in driver.reader(path, offset, length)])


async def write_stream(driver: StorageDriver, path: str, data: bytes, chunk: int = 64 * 1024,
                       append: bool = False) -> int:  # fmt: skip
    """Write ``data`` through a writer in ``chunk``-sized writes, commit; the size it reports."""
    w = await driver.writer(path, append=append)
    try:
        for start in range(0, len(data), chunk):
            await w.write(data[start : start + chunk])
        await w.commit()
        return w.size
    finally:
        await w.close()


async def walk(driver: StorageDriver, path: str) -> dict[str, int]:
    """Every file below the directory ``path`` with its size, found with list and stat only (how
    the garbage collector and the catalog see a tree)."""
    found: dict[str, int] = {}
    for name in await driver.list(path):
        child = f"{path.rstrip('/')}/{name}"
        info = await driver.stat(child)
        assert info.path == child
        if info.is_dir:
            found.update(await walk(driver, child))
        else:
            found[child] = info.size
    return found


def contents(size: int) -> bytes:
    return os.urandom(size)
