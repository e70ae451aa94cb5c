"""The backup actor: scheduled copies of the database, rotated to the newest ``keep``.

Role: every ``[backup] every`` (off when 0) it asks the store for a consistent copy
(``Store.backup``: SQLite's online backup API on a connection of its own, so the
writer keeps committing; the copy appears whole or not at all) named
``<database stem>-<UTC time>.db`` in ``dir`` (on PostgreSQL, ``pg_dump``'s custom
format: ``<database>-<schema>-<UTC time>.dump``, and ``dir`` must be given), then
removes the oldest such files beyond ``keep``. The schedule follows the newest backup
already in ``dir``, so a daemon that restarts more often than ``every`` still backs up
on time; with none there, the first copy is taken a minute after start (or after one
``every``, if that is shorter). A failed backup (a directory that cannot be written, a
full disk, a missing ``pg_dump``) is logged and counted, and the next one is tried an
interval later: it never stops the runtime.

Inbox: none (timer-driven; ``stop()`` is the supervisor's stop hook). Sends: nothing;
calls ``Store.backup``. Restart type: permanent. Timers: the next backup.
The naming, the schedule and the rotation are pure functions below.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import anyio
from anyio.abc import TaskStatus

from shepherd.actors.backup_config import BackupConfig  # re-exported: its old place
from shepherd.store.errors import StoreError, os_error

if TYPE_CHECKING:  # annotations only: the config (BackupConfig) loads without the clock
    from shepherd.actors.primitives.clock import Clock

__all__ = [
    "BackupActor",
    "BackupConfig",
    "backup_files",
    "backup_name",
    "backup_time",
    "next_backup_at",
    "to_remove",
]

log = logging.getLogger("shepherd.backup")

FIRST_AFTER = 60.0  # seconds after start for the first backup when none exists yet


def backup_files(database: str) -> tuple[str, str]:
    """(stem, suffix) of the backups of ``database``: ``("app", ".db")`` for the file
    ``app.db``; ``("shepherd-public", ".dump")`` for a PostgreSQL URL of the database
    ``shepherd``, schema ``public`` (its ``search_path``), dumped by ``pg_dump``."""
    parts = urlsplit(database)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        return Path(database).stem, ".db"
    name = unquote(parts.path.lstrip("/")) or "postgres"
    path = dict(parse_qsl(parts.query)).get("search_path", "public")
    schema = path.split(",")[0].strip().strip('"') or "public"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}-{schema}"), ".dump"


def backup_name(stem: str, wall: float, suffix: str = ".db") -> str:
    """``app-20261201T103000Z.db``: the backup of ``app.db`` taken at ``wall`` (UTC)."""
    return f"{stem}-{datetime.fromtimestamp(wall, UTC):%Y%m%dT%H%M%SZ}{suffix}"


def _pattern(stem: str, suffix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(stem)}-(\d{{8}}T\d{{6}}Z){re.escape(suffix)}$")


def backup_time(stem: str, name: str, suffix: str = ".db") -> float | None:
    """When the backup file ``name`` was taken; None for a file that is not one."""
    m = _pattern(stem, suffix).match(name)
    if m is None:
        return None
    return datetime.strptime(m[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()


def to_remove(stem: str, names: list[str], keep: int, suffix: str = ".db") -> list[str]:
    """The backups among ``names`` beyond the newest ``keep``, oldest first."""
    ours = sorted(n for n in names if backup_time(stem, n, suffix) is not None)
    return ours[: max(0, len(ours) - keep)]


def next_backup_at(newest: float | None, now: float, every: float) -> float:
    """When the next backup is due: one interval after the newest, never in the past;
    with none yet, ``FIRST_AFTER`` after ``now`` (or one interval, if shorter)."""
    if newest is None:
        return now + min(FIRST_AFTER, every)
    return max(now, newest + every)


class Backuper(Protocol):
    async def backup(self, target: str) -> int: ...


class BackupActor:
    def __init__(
        self,
        cfg: BackupConfig,
        *,
        store: Backuper,
        clock: Clock,
        directory: str,
        stem: str,
        suffix: str = ".db",
    ) -> None:
        self._cfg = cfg
        self._store = store
        self._clock = clock
        self._dir = directory
        self._stem = stem
        self._suffix = suffix
        self._stop = anyio.Event()
        self.backups = self.failures = self.removed = 0
        self.last: dict[str, Any] | None = None
        self.last_error: str | None = None
        self.next_at: float | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._stop = anyio.Event()  # a restart begins with a fresh stop signal
        every = float(self._cfg.every)
        if every <= 0:
            task_status.started()
            await self._stop.wait()
            return
        self.next_at = next_backup_at(self._newest(), self._clock.wall(), every)
        task_status.started()
        while not self._stop.is_set():
            with anyio.CancelScope() as wait:
                self._clock.cancel_at(wait, self._clock.now() + self.next_at - self._clock.wall())
                await self._stop.wait()
            if self._stop.is_set():
                return
            await self.backup_now()
            self.next_at = max(self._clock.wall(), self.next_at + every)

    def stop(self) -> None:
        """Graceful stop (the supervisor's stop hook); a backup in progress finishes."""
        self._stop.set()

    async def backup_now(self) -> str | None:
        """Take one backup and rotate; its path (None when it failed, logged)."""
        began, wall = self._clock.now(), self._clock.wall()
        target = os.path.join(self._dir, backup_name(self._stem, wall, self._suffix))
        try:
            try:
                Path(self._dir).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
            except OSError as exc:
                raise os_error(exc, f"backup directory {self._dir}") from None
            size = await self._store.backup(target)
        except StoreError as exc:
            self.failures += 1
            self.last_error = str(exc)
            log.error("backup to %s failed: %s", target, exc)
            return None
        seconds = self._clock.now() - began
        self.backups += 1
        removed = self._rotate()
        self.last = {"path": target, "at": wall, "seconds": round(seconds, 6), "bytes": size}
        log.info(
            "backup %s: %d bytes in %.3fs (kept %d, removed %d)",
            target,
            size,
            seconds,
            self._cfg.keep,
            len(removed),
        )
        return target

    def _names(self) -> list[str]:
        try:
            return os.listdir(self._dir)
        except OSError:
            return []

    def _newest(self) -> float | None:
        times = [
            t for n in self._names() if (t := backup_time(self._stem, n, self._suffix)) is not None
        ]
        return max(times, default=None)

    def _rotate(self) -> list[str]:
        removed: list[str] = []
        for name in to_remove(self._stem, self._names(), self._cfg.keep, self._suffix):
            try:
                os.unlink(os.path.join(self._dir, name))
            except OSError as exc:
                log.warning("could not remove old backup %s: %s", name, exc)
                continue
            removed.append(name)
        self.removed += len(removed)
        return removed

    def statistics(self) -> dict[str, Any]:
        return {
            "every": float(self._cfg.every),
            "keep": self._cfg.keep,
            "dir": self._dir,
            "backups": self.backups,
            "failures": self.failures,
            "removed": self.removed,
            "last": dict(self.last) if self.last else None,
            "next_at": self.next_at,
            "last_error": self.last_error,
        }

    def __repr__(self) -> str:
        return f"<BackupActor every {float(self._cfg.every):g}s backups={self.backups}>"
