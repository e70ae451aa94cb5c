"""What the CLI's store-backed commands share: opening the store, waking the daemon,
telling whether a daemon serves a database, and argparse value types.

The CLI never goes through a ``Runtime``: it opens the database directly
(``SqliteStore.open``), applies one write op, and sends the daemon a wake-up datagram
(``actors.ingest.send_wake``) so that it reads what changed within milliseconds.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio

from actors.executors.base import Executor
from actors.executors.python import PythonExecutor
from actors.executors.shell import ShellExecutor
from runtime.config import Config
from store.errors import ConfigError
from store.models import parse_duration
from store.sqlite import SqliteStore

__all__ = [
    "builtin_executors",
    "daemon_pid",
    "duration",
    "instant",
    "json_object",
    "open_store",
    "origin",
    "positive_int",
    "wall",
]


def wall() -> float:
    return time.time()


def origin() -> str:
    """The ``origin`` of rows this process writes; never the daemon's own instance id."""
    return f"cli:{os.getpid()}"


def builtin_executors() -> dict[str, Executor]:
    """The executor table of a standalone daemon, built as ``Runtime.open`` builds it.
    A python target need not be registered here: it only has to exist where it runs."""
    return {"python": PythonExecutor(), "shell": ShellExecutor()}


@asynccontextmanager
async def open_store(cfg: Config, *, create: bool = True) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(
        cfg.database,
        synchronous=cfg.synchronous,
        busy_timeout=float(cfg.busy_timeout),
        create=create,
    )
    try:
        yield store
    finally:
        with anyio.CancelScope(shield=True):
            await store.close(checkpoint=False)


def daemon_pid(database: str) -> int | None:
    """The pid of the runtime serving ``database``, or None.

    A runtime holds an exclusive flock on ``<database>.lock`` and writes its pid there.
    The lock is probed (shared, non-blocking) only when that pid is alive: probing a
    lock file whose owner is gone could make a daemon that starts at that very moment
    fail to take its lock.
    """
    try:
        f = open(f"{database}.lock")  # noqa: SIM115 - closed below
    except OSError:
        return None
    with f:
        words = f.read().split()
        pid = int(words[1]) if len(words) >= 2 and words[0] == "pid" and words[1].isdigit() else 0
        if pid <= 0 or not _alive(pid):
            return None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return pid
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- argparse value types: a bad value exits 2 with "argument --flag: <why>" -----------


def duration(text: str) -> float:
    """``30``, ``500ms``, ``5m``, ``1.5h``, ``7d`` → seconds."""
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("duration: ")) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def instant(text: str) -> float:
    """An ISO 8601 instant with a time zone (``2025-01-31T09:00:00Z``) → epoch seconds."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid instant {text!r}; use ISO 8601, e.g. 2025-01-31T09:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no time zone; add Z or an offset such as +02:00"
        )
    return when.timestamp()
