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

What glibc keeps it does not give back by itself, tuned or not: it only ever trims the top of
the heap, and a burst of uploads leaves its freed buffers between small long-lived objects
allocated meanwhile. Measured (issue 12), after 200 PATCHes stalled mid-body and reset, with
nothing referenced any more: 124 MiB resident with the tuning, 113 MiB without, 49 MiB after one
`malloc_trim(0)` (44 MiB at start). ``return_freed_memory`` trims once a burst is over: after a
second in which no upload request came, went or was in flight, as soon as more than
``IDLE_TRIM_THRESHOLD`` lies free (the next push re-faults what it needs once, not per buffer);
while uploads go on, only past ``TRIM_THRESHOLD`` free and at most every ``BUSY_TRIM_INTERVAL``
(a server that is never idle, or a client that keeps one PATCH stalled for ever, still returns
what the others left, re-faulting at most its working set twice a minute). A trim costs about
17 ms per 100 MiB released (200 ms for 900 MiB) and runs on a thread; none is attempted unless
the process has grown by the threshold since the last one (so an idle process is left alone).
With it, 5 rounds of 200 stalled-then-reset PATCHes end at +5 MiB (one worker) where they
ended at +1,296 MiB; 6 GiB of 1 GiB pushes (monolithic and chunked) saw no trim at all.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from collections.abc import Callable

log = logging.getLogger("fastreg.allocator")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 64 * 1024 * 1024
IDLE_TRIM_THRESHOLD = 16 * 1024 * 1024  # per worker: --workers 2 kept 2 x 50 MiB under 64
TRIM_CHECK_INTERVAL = 1.0  # seconds between looks at the heap (a look costs ~30 us)
BUSY_TRIM_INTERVAL = 30.0  # the longest freed memory waits for a moment without uploads
_PAGE = os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost",
    )]


def _libc() -> ctypes.CDLL | None:
    """The process's own symbols, libc's among them: `find_library("c")` would fork
    `ldconfig -p` at every start (1.3 ms, and once per app in the test suite)."""
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def tune_malloc() -> bool:
    """Keep freed blob-sized buffers for reuse. True when glibc took the settings."""
    try:
        mallopt = _libc().mallopt  # type: ignore[union-attr]
    except AttributeError:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not ok:
        log.debug("mallopt refused the settings; the allocator keeps its defaults")
    return ok


def _resident() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


async def return_freed_memory(upload_activity: Callable[[], tuple[int, float]]) -> None:
    """Hand memory glibc holds free back to the kernel after each burst; runs until cancelled.

    ``upload_activity()`` is (upload requests in flight, upload requests answered so far). Looks
    every ``TRIM_CHECK_INTERVAL`` and runs ``malloc_trim(0)`` on a thread when more than the
    threshold (see the module docstring) lies free and the process has grown by as much since
    the last trim. Returns at once on a libc without ``mallinfo2``/``malloc_trim`` (musl, macOS,
    glibc before 2.33).
    """
    libc = _libc()
    try:
        mallinfo2, malloc_trim = libc.mallinfo2, libc.malloc_trim  # type: ignore[union-attr]
    except AttributeError:
        return
    mallinfo2.restype = _MallInfo2
    malloc_trim.argtypes = (ctypes.c_size_t,)
    loop = asyncio.get_running_loop()
    trimmed_at, trimmed_rss = loop.time(), _resident()
    seen = upload_activity()
    while True:
        await asyncio.sleep(TRIM_CHECK_INTERVAL)
        now = upload_activity()
        quiet, seen = now[0] == 0 and now == seen, now
        if not quiet and loop.time() - trimmed_at < BUSY_TRIM_INTERVAL:
            continue
        threshold = IDLE_TRIM_THRESHOLD if quiet else TRIM_THRESHOLD
        if mallinfo2().fordblks <= threshold or _resident() - trimmed_rss <= threshold:
            continue
        await loop.run_in_executor(None, malloc_trim, 0)
        trimmed_at, trimmed_rss = loop.time(), _resident()
        log.debug("returned freed memory", extra={"rss": trimmed_rss})
