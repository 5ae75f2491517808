"""A small progress bar for the maintenance commands (`garbage-collect`, `migrate`): what the
jobs report through `fastreg.registry.progress.Progress`, drawn.

On a terminal the bar is redrawn in place on stderr; otherwise nothing is drawn and callers' plain
log lines are the progress report. Lines printed through :meth:`Progress.print` go to stdout and
never tear the bar: it is cleared, the line written, the bar drawn again.
"""

from __future__ import annotations

import sys
import time
from typing import Self, TextIO

from fastreg.registry.progress import human_bytes

_WIDTH = 30
_REDRAW_EVERY = 0.1  # seconds: a bar redrawn per item would cost more than the work itself


class ProgressBar:
    """``with ProgressBar(enabled) as p: p.start("marking", total); p.advance(); p.print(line)``."""

    def __init__(
        self, enabled: bool | None = None, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.enabled = self.err.isatty() if enabled is None else enabled
        self.label = ""
        self.total = 0
        self.done = 0
        self.as_bytes = False
        self._drawn = False
        self._last = 0.0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def start(self, label: str, total: int, as_bytes: bool = False) -> None:
        self.finish()
        self.label, self.total, self.done, self.as_bytes = label, total, 0, as_bytes
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def grow(self, n: int) -> None:
        """More work found while working (a walk that discovers as it goes)."""
        self.total += n
        self._draw()

    def print(self, line: str) -> None:
        self._clear()
        print(line, file=self.out, flush=self.enabled)
        self._draw(force=True)

    def finish(self) -> None:
        if self._drawn:
            self._draw(force=True)
            self.err.write("\n")
            self.err.flush()
            self._drawn = False
        self.label = ""

    def _clear(self) -> None:
        if self._drawn:
            self.err.write("\r\033[K")
            self._drawn = False

    def _draw(self, force: bool = False) -> None:
        if not self.enabled or not self.label:
            return
        now = time.monotonic()
        if not force and now - self._last < _REDRAW_EVERY:
            return
        self._last = now
        total = max(self.total, self.done)
        filled = _WIDTH if total == 0 else int(_WIDTH * self.done / total)
        if self.as_bytes:
            count = f"{human_bytes(self.done)} / {human_bytes(total)}"
        else:
            count = f"{self.done}/{total}"
        bar = "#" * filled + "-" * (_WIDTH - filled)
        self.err.write(f"\r\033[K{self.label} [{bar}] {count}")
        self.err.flush()
        self._drawn = True
