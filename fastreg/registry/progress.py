"""How a long registry job (garbage collection, migration) tells how far it is.

A job calls a :class:`Progress`: a phase starts with its amount of work, advances, and the job
finishes. The command line fills it in with its progress bar (`fastreg.cli.progress`); an online
collection inside the server, or a test, passes nothing and gets :data:`SILENT`. The registry
never imports the command line: what a job reports is the registry's, how it is drawn is not.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, label: str, total: int, as_bytes: bool = False) -> None:
        """A phase begins: ``total`` items (or bytes, with ``as_bytes``) to go."""

    def advance(self, n: int = 1) -> None:
        """``n`` more of the phase's items (or bytes) done."""

    def finish(self) -> None:
        """The job is over (or stops): nothing more will be reported."""


class _Silent:
    def start(self, label: str, total: int, as_bytes: bool = False) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


SILENT: Progress = _Silent()  # no state: shared safely


def human_bytes(n: float) -> str:
    """A size as the jobs' summaries write it: ``512 B``, ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
