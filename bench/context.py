"""What a scenario is given (`BenchContext`) and how it declines to run (`ScenarioSkipped`).

Kept apart from ``bench.scenarios`` so that scenario modules can import it without a
cycle (``scenarios`` imports every scenario module to register it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec

DEFAULT_SIZES: tuple[int, ...] = (10_000, 100_000)
QUICK_SIZES: tuple[int, ...] = (500,)


class ScenarioSkipped(Exception):
    """Raised by a scenario that cannot produce honest numbers in this run."""


class BenchContext(msgspec.Struct, frozen=True, kw_only=True):
    """Run-wide settings handed to every scenario.

    ``sizes`` are job counts; a scenario runs once per size and tags each result with
    ``n``. ``workdir`` is a scratch directory on a real disk (never tmpfs: commit cost
    is what we measure); each scenario makes its own files under it.
    """

    sizes: tuple[int, ...] = DEFAULT_SIZES
    quick: bool = False
    workdir: str
    stall_timeout: float = 30.0

    def path(self, *parts: str) -> Path:
        """A fresh path under ``workdir`` (parent directories created, file removed)."""
        p = Path(self.workdir).joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(p) + suffix).unlink(missing_ok=True)
        return p

    def fresh_dir(self, *parts: str) -> Path:
        """An empty directory under ``workdir`` (removed first if it existed)."""
        d = Path(self.workdir).joinpath(*parts)
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d
