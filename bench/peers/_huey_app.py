"""The huey application the peer benchmark runs: one no-op task on SQLite storage.

The consumer is huey's own CLI in a subprocess (``huey_consumer
bench.peers._huey_app.huey``), which takes only an import path, so the consumer side is
configured through the environment and the ``huey`` attribute is built on first access:

- ``SHEPHERD_BENCH_HUEY_DB``: database file; ``SHEPHERD_BENCH_HUEY_SYNC``: ``full``
  (huey's default: it leaves SQLite's synchronous alone) or ``normal``.
- ``SHEPHERD_BENCH_HUEY_MARKERS`` and ``SHEPHERD_BENCH_HUEY_TARGET``: a directory and a
  completion count. The first worker to start writes ``ready``; every
  `PROGRESS_EVERY` completions ``progress`` is rewritten; the target-th completion
  writes ``done``; a failing task writes ``error``. Each marker holds
  ``time.monotonic()``, which on Linux and macOS is one clock for every process;
  ``cpu_ready`` and ``cpu_done``, written just before ``ready`` and ``done``, hold the
  consumer's ``time.process_time()`` (all its threads, to the nanosecond: the clock
  ticks psutil reads from another process are 10 ms, a whole short run's CPU).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from huey import Huey
from huey.signals import SIGNAL_COMPLETE, SIGNAL_ERROR
from huey.storage import SqliteStorage

PROGRESS_EVERY = 1_000


class _NormalSyncSqliteStorage(SqliteStorage):
    """SqliteStorage with ``PRAGMA synchronous=NORMAL`` (huey's ``fsync`` knob offers only
    FULL or OFF)."""

    def _create_connection(self) -> Any:
        conn = super()._create_connection()
        conn.execute("pragma synchronous=NORMAL")
        return conn


def _noop() -> None:
    return None


def make_huey(db_path: str, sync: str) -> tuple[Huey, Any]:
    """The huey instance and its ``noop`` task, on ``db_path`` in WAL mode."""
    storage = {"full": SqliteStorage, "normal": _NormalSyncSqliteStorage}[sync]
    # a busy timeout of a minute, not huey's 5 s: under the producer's 100,000 commits a
    # worker's write sometimes waited longer, failed ("database is locked") and its
    # task was never counted, which stalled the run one short of its target
    huey = Huey("bench", storage_class=storage, filename=db_path, journal_mode="wal", timeout=60)
    return huey, huey.task(name="noop")(_noop)


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _install_markers(huey: Huey, markers: Path, target: int) -> None:
    lock = threading.Lock()
    state = {"completed": 0, "ready": False}

    @huey.on_startup()
    def _ready() -> None:
        with lock:
            if not state["ready"]:
                state["ready"] = True
                _write(markers / "cpu_ready", repr(time.process_time()))
                _write(markers / "ready", repr(time.monotonic()))

    @huey.signal(SIGNAL_COMPLETE)
    def _completed(signal: str, task: Any, *args: Any, **kwargs: Any) -> None:
        with lock:
            state["completed"] += 1
            done = state["completed"]
        if done == target:
            _write(markers / "cpu_done", repr(time.process_time()))
            _write(markers / "done", repr(time.monotonic()))
        elif done % PROGRESS_EVERY == 0:
            _write(markers / "progress", str(done))

    @huey.signal(SIGNAL_ERROR)
    def _failed(signal: str, task: Any, exc: BaseException | None = None) -> None:
        _write(markers / "error", f"{task!r}: {exc!r}")


_app: Huey | None = None


def __getattr__(name: str) -> Any:
    global _app
    if name != "huey":
        raise AttributeError(name)
    if _app is None:
        env = os.environ
        _app, _ = make_huey(env["SHEPHERD_BENCH_HUEY_DB"], env["SHEPHERD_BENCH_HUEY_SYNC"])
        markers = env.get("SHEPHERD_BENCH_HUEY_MARKERS")
        if markers:
            _install_markers(_app, Path(markers), int(env["SHEPHERD_BENCH_HUEY_TARGET"]))
    return _app
