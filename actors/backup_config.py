"""``[backup]``, the backup actor's configuration (``actors.backup``), apart from the
actor so that loading the configuration (every CLI command) imports no event loop."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shepherd.store.bounds import DAY, Range, check_bounds
from shepherd.store.durations import Seconds
from shepherd.store.errors import ConfigError

__all__ = ["BackupConfig"]


class BackupConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[backup]`` in the config file."""

    every: Annotated[Seconds, Range(0, 365 * DAY, "s")] = Seconds(0.0)  # 0: off
    keep: Annotated[int, Range(1, 100_000)] = 24
    dir: str = ""  # "" : "<database>.backups"; relative: to the config file

    def __post_init__(self) -> None:
        check_bounds(self, prefix="backup.")
        if 0 < float(self.every) < 1:
            raise ConfigError("must be 0 (off) or at least 1s", field="backup.every")
        if not isinstance(self.dir, str):
            raise ConfigError("expected a string (a directory)", field="backup.dir")
