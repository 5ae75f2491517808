"""glibc malloc tuning for a process that moves blobs through memory.

A blob upload passes through buffers of 64 KiB to a few MiB: socket reads, 1 MiB batches for the
hash and write lanes, `chunksize` parts for object storage. glibc's defaults hand such a buffer
back to the kernel as soon as it is freed (a large block is mmap'd and unmapped; the top of the
heap is trimmed past 128 KiB), so the next buffer of the same size page-faults in all its pages
again. Measured here, joining two 512 KiB halves into a fresh 1 MiB bytes costs 1.2 s per GiB
with the defaults and 0.05 s per GiB once freed memory is kept for reuse: the page faults, not the
copying, were most of the event loop's time in a push.

Keeping freed memory costs nothing in peak RSS (the peak is the working set either way); it only
means the process does not shrink between bursts by less than ``TRIM_THRESHOLD``. Blocks larger
than ``MMAP_THRESHOLD`` (an unusually large `chunksize`) are still mmap'd and returned at once.
On a libc without `mallopt` (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("fastreg.allocator")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 64 * 1024 * 1024


def tune_malloc() -> bool:
    """Keep freed blob-sized buffers for reuse. True when glibc took the settings."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not ok:
        log.debug("mallopt refused the settings; the allocator keeps its defaults")
    return ok
