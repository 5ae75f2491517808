"""Driver calls for which a missing path is an answer, not an error: is it stored, what is
listed under it (nothing), delete it if it is there.

The registry asks these of storage everywhere a concurrent writer, a collection or a
Distribution server on the same storage may have removed a path first; one definition, so that
"missing" means `PathNotFound` and nothing else (any other StorageError still propagates).
"""

from __future__ import annotations

from fastreg.storage.base import PathNotFound, StorageDriver


async def stored(driver: StorageDriver, path: str) -> bool:
    try:
        await driver.stat(path)
    except PathNotFound:
        return False
    return True


async def list_quietly(driver: StorageDriver, path: str) -> list[str]:
    try:
        return await driver.list(path)
    except PathNotFound:
        return []


async def delete_quietly(driver: StorageDriver, path: str) -> None:
    try:
        await driver.delete(path)
    except PathNotFound:
        pass
