"""Spool ingest: every file dropped in the spool directory becomes a committed dispatch.

Role: watches ``[spool] dir`` (inotify and its kin, through ``watchfiles``; no polling
of the directory) and ingests what it finds: first the files present at start, then
the files that arrive. Inbox: none (the directory). Sends: ``enqueue_many`` requests
(the runtime's enqueue: one ``InsertDispatches`` transaction, then ``Enqueued`` to the
dispatcher). Restart type: permanent. Timers: none. It starts watching at once but
ingests only once the runtime has added the config's jobs (``Producer.jobs_loaded``),
which the files may name.

One pass (``_drain``, repeated until the directory holds nothing to ingest):

1. list the directory (``SCAN_MAX`` names at most) and read each file; temp files
   (``*.tmp*``) and dot-files are never read (``formats.is_ignored``);
2. parse each (``formats.parse``) and look up the jobs they name; an invalid file or an
   unknown job is **rejected**: ``<name>.error.json`` is written into ``rejected/``,
   then the file is moved beside it;
3. order the valid ones by priority, then oldest, and commit them in chunks of
   ``max_batch``, each chunk one transaction with each file's id as its dispatch's
   producer key (a chunk refused for one bad request is retried file by file);
4. only then remove each committed file (unless it changed since it was read: the next
   pass reads it again).

Crash windows: killed before the commit, the file is still there and is ingested at the
next start; killed after the commit and before the removal, the next start ingests it
again and the producer key returns the dispatch it is bound to (``store.keys``), so the
file is removed without a second dispatch. Killed between the error file and the move,
the file is rejected again. Expiry, retries and dead letters then live in the database
(an expired event becomes a dead letter ``expired`` when the dispatcher admits it).

A directory that cannot be created, read or written fails ``prepare_dirs`` before the
runtime starts (``ConfigError`` naming ``spool.dir``, or the ``StoreError`` of the
``OSError``): nothing is read or moved. ``RustNotify`` (the notifier under
``watchfiles.awatch``) is used directly because the watch must be live before the first
listing, or a file renamed in between would wait for the next arrival; ``awatch`` only
creates it on its first iteration.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

if TYPE_CHECKING:  # imported where used: a runtime without a spool never loads watchfiles
    from watchfiles._rust_notify import RustNotify

from shepherd.actors.ingest_stream import Producer
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.spool import formats
from shepherd.actors.spool.config import SpoolConfig
from shepherd.actors.spool.files import (
    PendingFile,
    move_rejected,
    prepare_dirs,
    read_pending,
    remove_committed,
    spool_counts,
)
from shepherd.actors.spool.formats import Accepted
from shepherd.store.errors import ConfigError, NotFound, os_error
from shepherd.store.protocol import Store

__all__ = ["SCAN_MAX", "Producer", "SpoolIngest", "prepare_dirs", "spool_counts"]

log = logging.getLogger("shepherd.spool")


SCAN_MAX = 4096  # names listed and read per pass; a larger backlog takes more passes
_DELETED = 3  # watchfiles' Change.deleted: our own removals and moves
_WAIT_MS = 60_000  # the notifier's wait before it returns "timeout" (then it waits again)


class SpoolIngest:
    def __init__(
        self,
        cfg: SpoolConfig,
        *,
        producer: Producer,
        store: Store,
        clock: Clock,
    ) -> None:
        self._cfg = cfg
        self._producer = producer
        self._store = store
        self._clock = clock
        self._pending = Path(cfg.dir)
        self._rejected = self._pending / formats.REJECTED_DIR
        self._stop = threading.Event()
        self.counters = {"ingested": 0, "rejected": 0, "passes": 0, "commits": 0, "kept": 0}
        self._last_error: str | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._pending, self._rejected = await anyio.to_thread.run_sync(prepare_dirs, self._cfg.dir)
        self._stop = stop = threading.Event()  # a fresh one per run: an abandoned
        # notifier thread of a cancelled run still sees its own
        from watchfiles._rust_notify import RustNotify

        try:
            notify = RustNotify([str(self._pending)], False, False, 300, False, False)
        except OSError as exc:
            raise os_error(exc, f"spool directory {str(self._pending)!r}") from None
        step = max(1, round(float(self._cfg.debounce) * 1000))  # the longest a batch is held
        task_status.started()
        try:
            await self._producer.jobs_loaded.wait()  # the config's jobs: files name them
            while True:
                await self._drain()
                while not await self._arrived(notify, step, stop):
                    if stop.is_set():
                        return
        finally:
            stop.set()  # the notifier thread returns within one step

    async def _arrived(self, notify: RustNotify, step: int, stop: threading.Event) -> bool:
        """Wait for a change; whether it may be a file to ingest (not our own removal,
        not a temp file)."""
        raw = await anyio.to_thread.run_sync(
            notify.watch, step, max(1, step // 5), _WAIT_MS, stop, abandon_on_cancel=True
        )
        if isinstance(raw, str):  # "stop", "timeout" (or "signal")
            return False
        return any(
            change != _DELETED and not formats.is_ignored(os.path.basename(path))
            for change, path in raw
        )

    def stop(self) -> None:
        self._stop.set()

    async def _drain(self) -> None:
        while True:
            found = await anyio.to_thread.run_sync(read_pending, self._pending, SCAN_MAX)
            if not found:
                return
            self.counters["passes"] += 1
            await self._ingest(found)

    async def _ingest(self, found: list[PendingFile]) -> None:
        by_name = {f.name: f for f in found}
        valid: list[Accepted] = []
        bad: list[tuple[PendingFile, ConfigError]] = []
        for f in found:
            try:
                if f.error is not None:
                    raise ConfigError(f.error, field="file")
                valid.append(
                    formats.parse(
                        f.name,
                        f.data,
                        mtime=f.mtime,
                        default_job=self._cfg.default_job,
                        max_retries=self._cfg.max_retries,
                    )
                )
            except ConfigError as exc:
                bad.append((f, exc))
        unknown = {
            job for job in {a.request.job for a in valid} if await self._store.job(job) is None
        }
        for a in valid:
            if a.request.job in unknown:
                bad.append(
                    (by_name[a.name], ConfigError(f"no job named {a.request.job!r}", field="job"))
                )
        valid = formats.batch_order([a for a in valid if a.request.job not in unknown])
        size = self._cfg.max_batch
        for i in range(0, len(valid), size):
            chunk = valid[i : i + size]
            committed, refused = await self._commit(chunk)
            bad += [(by_name[a.name], error) for a, error in refused]
            done = [by_name[a.name] for a in committed]
            self.counters["ingested"] += len(done)  # committed: counted before the files go
            removed = await anyio.to_thread.run_sync(remove_committed, self._pending, done)
            self.counters["kept"] += len(done) - removed
        if bad:
            for f, error in bad:
                log.warning("spool: rejected %s: %s", f.name, error)
            self._last_error = f"{bad[-1][0].name}: {bad[-1][1]}"
            await anyio.to_thread.run_sync(
                move_rejected, self._pending, self._rejected, bad, self._clock.wall()
            )
            self.counters["rejected"] += len(bad)

    async def _commit(
        self, chunk: list[Accepted]
    ) -> tuple[list[Accepted], list[tuple[Accepted, ConfigError]]]:
        """Enqueue ``chunk`` in one transaction; if a request is refused, each alone."""
        try:
            await self._producer.enqueue_many([a.request for a in chunk])
            self.counters["commits"] += 1
            return chunk, []
        except (ConfigError, NotFound) as exc:
            if len(chunk) == 1:
                error = exc if isinstance(exc, ConfigError) else ConfigError(str(exc), field="job")
                return [], [(chunk[0], _unprefixed(error))]
        committed: list[Accepted] = []
        refused: list[tuple[Accepted, ConfigError]] = []
        for a in chunk:
            ok, no = await self._commit([a])
            committed += ok
            refused += no
        return committed, refused

    def statistics(self) -> dict[str, Any]:
        return {"dir": str(self._pending), **self.counters, "last_error": self._last_error}

    def __repr__(self) -> str:
        return f"<SpoolIngest {self._pending} ingested={self.counters['ingested']}>"


def _unprefixed(exc: ConfigError) -> ConfigError:
    """``requests[0].priority: …`` (the enqueue call's naming) as ``priority: …``."""
    field = exc.field
    if not field or not field.startswith("requests["):
        return exc
    rest = field.split("]", 1)[1].lstrip(".") or None
    text = str(exc).removeprefix(f"{field}: ")
    return ConfigError(text, field=rest)
