"""Whether a storage root holds a registry, asked before an offline command (`garbage-collect`,
`migrate`) touches it: a wrong root must be an error naming it, never "0 blobs marked".

What "a registry" means, the same for every driver since all of them answer `list` and `stat`
on driver paths below their root:

- **a registry**: `docker/registry/v2` is below the root (a directory on disk, a key prefix on
  an object store). Distribution and fastreg write nothing else, and write it with the first push:
  a root that never saw one holds nothing to collect or copy.
- **nothing there**: the filesystem root directory is missing, or it is empty; on an object store
  (where directories do not exist) a listing of the root prefix finds no object. `lost+found`, the
  root of a freshly made filesystem, counts as nothing.
- **something else**: files at the root but no `docker/registry/v2`: a rootdirectory or prefix
  pointing at the wrong place.

A source (what garbage-collect sweeps, what migrate copies) must be a registry: nothing there is a
missing source, anything else is not a registry. A destination (what migrate writes) may be a
registry or nothing there (an empty bucket prefix is an empty registry, a missing directory is
created); one holding something else is refused, as a wrong path is likelier than a registry meant
to be written among other files.
"""

from __future__ import annotations

import enum

from fastreg.registry import layout
from fastreg.storage.base import PathNotFound, StorageDriver
from fastreg.storage.filesystem import FilesystemDriver
from fastreg.storage.objectstore import BucketDriver

IGNORED = {"lost+found"}
MARK = layout.ROOT.lstrip("/")  # docker/registry/v2


class RootState(enum.Enum):
    MISSING = "does not exist"
    EMPTY = "holds nothing"
    FOREIGN = f"holds files but no registry (no {MARK} below it)"
    REGISTRY = "holds a registry"


class NotARegistry(Exception):
    """The root given to a command is not what the command needs; the message names it."""


async def survey(driver: StorageDriver) -> RootState:
    try:
        if (await driver.stat(layout.ROOT)).is_dir:
            return RootState.REGISTRY
    except PathNotFound:
        pass
    try:
        names = set(await driver.list("/")) - IGNORED
    except PathNotFound:
        return RootState.MISSING
    return RootState.FOREIGN if names else RootState.EMPTY


def place(driver: StorageDriver) -> str:
    """How a message names the root: its directory, or its bucket and key prefix."""
    if isinstance(driver, FilesystemDriver):
        return driver.root
    if isinstance(driver, BucketDriver):
        prefix = driver.key("/").strip("/")
        return f"{driver.objects.bucket}" + (f", prefix {prefix + '/'!r}" if prefix else "")
    return f"the {driver.name} storage"


async def check_source(driver: StorageDriver, role: str = "storage root") -> None:
    """NotARegistry unless the root holds a registry."""
    state = await survey(driver)
    if state is RootState.REGISTRY:
        return
    detail = state.value if state is RootState.FOREIGN else f"{state.value}: not a registry"
    raise NotARegistry(f"{role} {place(driver)} {detail}")


async def check_destination(driver: StorageDriver, role: str = "destination") -> None:
    """NotARegistry when the root holds something other than a registry."""
    if await survey(driver) is RootState.FOREIGN:
        raise NotARegistry(f"{role} {place(driver)} {RootState.FOREIGN.value}")
