"""Process limits raised at start: the open-descriptor limit.

Every client connection is a descriptor (and a download holds one more, the dup the sender
threads use), so the usual soft limit of 1,024 caps a registry at about a thousand clients while
the hard limit allows far more. At start the soft `RLIMIT_NOFILE` goes up to the hard one, and
the log says what it is; workers inherit it.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("fastreg.limits")

NR_OPEN = "/proc/sys/fs/nr_open"  # Linux's ceiling when the hard limit reads "unlimited"


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard one; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _nr_open(soft)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit",
                        extra={"soft": soft, "hard": hard, "error": str(exc)})  # fmt: skip
            return soft
    log.info("open files limit", extra={"soft": max(soft, target), "was": soft, "hard": hard})
    return max(soft, target)


def _nr_open(fallback: int) -> int:
    try:
        with open(NR_OPEN) as f:
            return int(f.read())
    except (OSError, ValueError):
        return fallback
