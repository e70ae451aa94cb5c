"""The lock file of a served database: one runtime per file.

``lock_database`` takes an exclusive ``flock`` on ``<database>.lock`` for the runtime's
lifetime and writes its pid there (``shepherd status`` / ``doctor`` read it, see
``runtime._cli_store.daemon_pid``).
"""

from __future__ import annotations

import fcntl
import io
import os
from pathlib import Path
from typing import IO

import anyio

from shepherd.store.errors import ConfigError, StoreError, os_error
from shepherd.store.factory import is_postgres

__all__ = ["lock_database"]


async def lock_database(path: str) -> IO[str]:
    """One runtime per database file: an exclusive lock held while the runtime is open.

    A short-lived shared lock (``shepherd status`` probing) is waited out for up to 1 s.
    An OSError on the lock file is the store error it means (``os_error``: a full disk
    is ``DiskFull``, a read-only or forbidden directory ``ReadOnly``). A PostgreSQL
    database takes no lock: its runtimes are nodes, each with a lease (``actors.cluster``)."""
    if is_postgres(path):
        return io.StringIO()
    if Path(path).is_dir():  # noqa: ASYNC240 - one stat at start
        raise ConfigError(f"{path} is a directory, not a database file", field="database")
    lock_path = f"{path}.lock"
    try:
        Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
        # held for the runtime's lifetime; a local lock file, opened once at start
        f = open(lock_path, "a+")  # noqa: SIM115, ASYNC230
    except OSError as exc:
        raise os_error(exc, path) from None
    try:
        for attempt in range(21):
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 20:
                    f.seek(0)
                    owner = f.read().strip() or "another process"
                    raise StoreError(f"{path}: already served by a runtime ({owner})") from None
                await anyio.sleep(0.05)
        # unbuffered, so a failed write leaves nothing for close() to flush again
        os.ftruncate(f.fileno(), 0)
        os.write(f.fileno(), f"pid {os.getpid()}\n".encode())
    except OSError as exc:
        f.close()
        raise os_error(exc, f"{path}: lock file {lock_path}") from None
    except BaseException:
        f.close()
        raise
    return f
