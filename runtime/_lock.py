"""The lock of a served database: one runtime per file, whatever its name.

``lock_database`` takes, for the runtime's lifetime:

- an exclusive ``flock`` on ``<database>.lock``, the lock file beside the database's
  resolved path (``actors.socket_path.lock_path``: a symlink, a relative path and
  ``..`` all name the same lock), where it writes its pid (``shepherd status`` /
  ``doctor`` read it, see ``runtime._cli_store.daemon_pid``);
- on Linux, an exclusive ``flock`` on the database file itself, through a descriptor of
  its own: two hard links are two names of one inode, and so one lock. SQLite locks the
  file with ``fcntl`` byte ranges, which on Linux are independent of ``flock``, so this
  lock never conflicts with SQLite's. It must never be an ``fcntl``/``lockf`` lock, and
  the descriptor is closed only after the runtime's connections are: closing any
  descriptor of a file drops every ``fcntl`` lock this process holds on it, SQLite's
  included. Elsewhere (macOS, the BSDs) ``flock`` and ``fcntl`` locks may be one
  mechanism, and only the lock file is taken (``socket_path.FILE_LOCK``). Who holds
  it is read from ``/proc/locks`` (``socket_path.flock_holder``), never by probing it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import weakref
from pathlib import Path

import anyio

from shepherd.actors.socket_path import FILE_LOCK, flock_holder, lock_path, resolved
from shepherd.store.errors import ConfigError, StoreError, os_error
from shepherd.store.factory import is_postgres

__all__ = ["DatabaseLock", "lock_database"]


class DatabaseLock:
    """What ``lock_database`` holds: the lock file and the database file's descriptor
    (None where there is none). ``close`` releases both.

    A flock belongs to the open file, which a forked child shares (a python target's
    ``multiprocessing`` child, forked without exec: ``O_CLOEXEC`` covers only exec), so a
    child outliving a SIGKILLed runtime would hold its lock and refuse the restart. A
    forked child closes its copies at once (``os.register_at_fork``): the lock stays the
    parent's alone, and ends with it."""

    def __init__(self, lock_file: int | None = None, db_file: int | None = None) -> None:
        self._fds = [fd for fd in (db_file, lock_file) if fd is not None]
        _HELD.add(self)

    def close(self) -> None:
        _HELD.discard(self)
        while self._fds:
            os.close(self._fds.pop())

    def _forked(self) -> None:
        """In a forked child: its copies closed, the parent's lock untouched."""
        while self._fds:
            with contextlib.suppress(OSError):
                os.close(self._fds.pop())

    def __repr__(self) -> str:
        return f"<DatabaseLock fds={self._fds}>"


_HELD: weakref.WeakSet[DatabaseLock] = weakref.WeakSet()


def _close_in_child() -> None:
    for held in list(_HELD):
        held._forked()
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


async def lock_database(path: str, *, create: bool = True) -> DatabaseLock:
    """One runtime per database file: an exclusive lock held while the runtime is open.

    ``create``: a database file that does not exist yet is created empty (SQLite takes an
    empty file as a new database), so that it is locked from the start; without it (a
    restore, which renames its file in place) a missing file is not locked, as no other
    name can link to it. A short-lived shared lock (``shepherd status`` probing) is
    waited out for up to 1 s. An OSError on the lock file is the store error it means
    (``os_error``: a full disk is ``DiskFull``, a read-only or forbidden directory
    ``ReadOnly``). A PostgreSQL database takes no lock: its runtimes are nodes, each with
    a lease (``actors.cluster``)."""
    if is_postgres(path):
        return DatabaseLock()
    if Path(path).is_dir():  # noqa: ASYNC240 - one stat at start
        raise ConfigError(f"{path} is a directory, not a database file", field="database")
    real, lock = resolved(path), lock_path(path)
    try:
        Path(lock).parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise os_error(exc, path) from None
    held = DatabaseLock(lock_fd)
    try:
        db_fd = _open_database(real, create=create) if FILE_LOCK else None
        held = DatabaseLock(lock_fd, db_fd)
        for attempt in range(21):
            fd = lock_fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if db_fd is not None:
                    fd = db_fd
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 20:
                    owner = _owner(lock_fd) if fd == lock_fd else _other_name(real)
                    raise StoreError(f"{path}: already served by a runtime ({owner})") from None
                await anyio.sleep(0.05)
        os.ftruncate(lock_fd, 0)
        os.write(lock_fd, f"pid {os.getpid()}\n".encode())
    except OSError as exc:
        held.close()
        raise os_error(exc, f"{path}: lock file {lock}") from None
    except BaseException:
        held.close()
        raise
    return held


def _open_database(real: str, *, create: bool) -> int | None:
    """A read-only descriptor of the database file, for its flock; None when it does not
    exist and ``create`` is false. Never O_TRUNC: the file may be a live database."""
    flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        return os.open(real, flags, 0o644)
    except FileNotFoundError:
        if create:
            raise
        return None


def _owner(lock_fd: int) -> str:
    """The holder the lock file names (``pid N``)."""
    return os.pread(lock_fd, 64, 0).decode(errors="replace").strip() or "another process"


def _other_name(real: str) -> str:
    """The holder of the database file's flock, whose lock file is not this one: it
    took the file under another name (a hard link), or its lock file was removed."""
    pid = flock_holder(real)
    why = "it holds the file under another name, or its lock file was removed"
    return f"pid {pid}; {why}" if pid else why
