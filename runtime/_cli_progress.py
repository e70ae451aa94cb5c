"""A progress bar on stderr for the CLI's long operations (``dlq retry --all``, ``dlq
purge --all``, ``jobs add --file``, ``backup``).

It draws only when stderr is a terminal (so a pipe, a log file or ``--json`` output
never gets control characters); ``SHEPHERD_PROGRESS=1`` forces it on, ``0`` off. It
redraws at most every 0.1 s and clears its line when the block ends.

    with progress(total, "retrying") as bar:
        for chunk in chunks:
            ...
            bar.advance(len(chunk))
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["Progress", "progress"]

_WIDTH = 30
_EVERY = 0.1  # seconds between redraws


class Progress:
    """Counts work done out of ``total`` and draws ``label [####----] 40/100 40%``."""

    def __init__(self, total: int, label: str, stream: TextIO, enabled: bool) -> None:
        self.total = max(0, total)
        self.done = 0
        self.label = label
        self.enabled = enabled
        self._stream = stream
        self._drawn = 0.0

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n) if self.total else self.done + n
        now = time.monotonic()
        if self.enabled and (now - self._drawn >= _EVERY or self.done >= self.total):
            self._drawn = now
            self._draw()

    def _draw(self) -> None:
        if self.total:
            filled = _WIDTH * self.done // self.total
            bar = "#" * filled + "-" * (_WIDTH - filled)
            pct = 100 * self.done // self.total
            text = f"{self.label} [{bar}] {self.done}/{self.total} {pct}%"
        else:
            text = f"{self.label} {self.done}"
        self._stream.write(f"\r{text}\x1b[K")
        self._stream.flush()

    def close(self) -> None:
        if self.enabled and self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def _wanted(stream: TextIO) -> bool:
    forced = os.environ.get("SHEPHERD_PROGRESS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


@contextmanager
def progress(
    total: int, label: str, *, stream: TextIO | None = None, enabled: bool | None = None
) -> Iterator[Progress]:
    """A :class:`Progress` of ``total`` steps on ``stream`` (stderr); ``enabled=None``:
    draw only when the stream is a terminal (or as ``SHEPHERD_PROGRESS`` says)."""
    out = stream or sys.stderr
    bar = Progress(total, label, out, _wanted(out) if enabled is None else enabled)
    try:
        yield bar
    finally:
        bar.close()
