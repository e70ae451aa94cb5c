"""``[spool]`` in the config file: the directory the runtime watches and how its files
become dispatches.

    [spool]
    dir = "spool"              # relative to the config file; created when missing
    default_job = "agent"      # runs OpenClaw agentTurn events (unset: they are rejected)
    max_retries = 3            # an OpenClaw event without maxRetries: 4 attempts
    max_batch = 256            # files committed in one transaction at most
    debounce = "5ms"           # the longest the watcher holds a batch of arrivals
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from shepherd.store.bounds import Range, check_bounds
from shepherd.store.errors import ConfigError
from shepherd.store.models import Seconds

# maxRetries + 1 attempts stays within max_attempts' 1-1000 (``formats`` reads it here)
MAX_RETRIES = 999

__all__ = ["SpoolConfig"]


class SpoolConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[spool]``; ``dir`` is required (resolved against the config file's folder)."""

    dir: str
    default_job: str | None = None
    max_retries: Annotated[int, Range(0, MAX_RETRIES)] = 3
    max_batch: Annotated[int, Range(1, 10_000)] = 256
    debounce: Annotated[Seconds, Range(0.001, 10.0, "s")] = Seconds(0.005)

    def __post_init__(self) -> None:
        check_bounds(self, prefix="spool.")
        if not isinstance(self.dir, str) or not self.dir.strip():
            raise ConfigError("must be a non-empty path", field="spool.dir")
        if self.default_job is not None and not self.default_job.strip():
            raise ConfigError("must not be empty (omit it for none)", field="spool.default_job")
