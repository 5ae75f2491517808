"""The catalog: every repository, found as a directory holding `_manifests` (Distribution's rule).

Directories whose name starts with `_` are never descended into, so upload and layer folders of a
repository are not mistaken for nested repositories.
"""

from __future__ import annotations

from fastreg.registry import layout
from fastreg.storage.base import PathNotFound, StorageDriver


async def list_repositories(driver: StorageDriver) -> list[str]:
    found: list[str] = []
    pending = [""]
    while pending:
        prefix = pending.pop()
        base = layout.REPOSITORIES + ("/" + prefix if prefix else "")
        try:
            children = await driver.list(base)
        except PathNotFound:
            continue
        if "_manifests" in children and prefix:
            found.append(prefix)
        for child in children:
            if child.startswith((".", "_")):
                continue
            try:
                is_dir = (await driver.stat(f"{base}/{child}")).is_dir
            except PathNotFound:
                continue
            if is_dir:
                pending.append(f"{prefix}/{child}" if prefix else child)
    return sorted(found)
