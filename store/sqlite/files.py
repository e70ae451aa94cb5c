"""The files a store's connections have open: the database, its WAL and its WAL index
(``-shm``), by (device, inode) as opened, checked before every write transaction.

A connection keeps the inodes it opened. After ``rm shepherd.db-wal``, or another file
renamed over ``shepherd.db``, its commits go where no other process reads and no
restart finds. After ``rm shepherd.db-shm`` it keeps its old, mapped WAL index while
another process (``shepherd jobs add`` writing the file directly) creates a new one: the
two indexes disagree on where the WAL ends, and this connection's next commit writes
its frames over the other process's, which had been reported committed. So
``Files.check`` runs before each of the writer's transactions (``SqliteStore.apply`` on
the writer's thread and ``apply_now`` inline: one ``os.stat`` per file, about 2.5 µs
each), before each checkpoint, and at every health tick, and raises
``DatabaseReplaced`` naming the file.

Once the files changed, closing the last connection must not checkpoint either: SQLite
would copy the frames its stale index knows into the file and delete the WAL, with the
other process's frames in it. ``keep_wal`` turns that off on a connection
(``SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE``); the next open rebuilds the index from the WAL.
"""

from __future__ import annotations

import os
import sqlite3
import sys

from shepherd.store.errors import DatabaseReplaced

__all__ = ["Files", "keep_wal"]

_NO_CKPT_ON_CLOSE = 1006  # SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE (sqlite3.h)


class Files:
    """The (device, inode) of ``path`` (resolved: SQLite resolves symlinks and names the
    WAL and its index after the target), of its ``-wal`` and of its ``-shm``, as first
    seen. A file absent at first (a WAL before the first commit) is taken as the first
    one seen later."""

    def __init__(self, path: str) -> None:
        real = os.path.realpath(path)
        self._seen: dict[str, tuple[int, int] | None] = {
            p: _identity(p) for p in (real, real + "-wal", real + "-shm")
        }

    def check(self) -> None:
        """Raise ``DatabaseReplaced`` when a file is no longer the one first seen."""
        for path, seen in self._seen.items():
            now = _identity(path)
            if seen is None:
                self._seen[path] = now
            elif now != seen:
                raise DatabaseReplaced(_why(path, "removed" if now is None else "replaced"))

    def changed(self) -> bool:
        try:
            self.check()
        except DatabaseReplaced:
            return True
        return False

    def __repr__(self) -> str:
        return f"<Files {next(iter(self._seen))}>"


def _why(path: str, what: str) -> str:
    how = "removed" if what == "removed" else "replaced by another file"
    if path.endswith("-shm"):
        return (
            f"{path} was {how} while the runtime had the database open: its connections"
            " keep the old WAL index, and their commits would overwrite those of other"
            " processes, so it commits nothing more; restart the runtime (SQLite rebuilds"
            " the index from the WAL on the next open; nothing is lost if no one wrote"
            " since)"
        )
    return (
        f"{path} was {how} while the runtime had it open: commits since then are in a"
        " file no one else can read; stop the runtime, put the right file back (or"
        " restore a backup) and restart the runtime"
    )


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of ``path``, None when there is no such file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def keep_wal(conn: sqlite3.Connection) -> bool:
    """Make closing ``conn`` leave the WAL alone: no checkpoint, no deletion (module
    docstring). Python 3.12 has ``setconfig``; on 3.11 the flag is set through
    ``ctypes`` on the connection's ``sqlite3*`` handle. Whether it was set."""
    setconfig = getattr(conn, "setconfig", None)
    if setconfig is not None:
        setconfig(_NO_CKPT_ON_CLOSE, True)
        return True
    if sys.implementation.name != "cpython":
        return False
    try:
        return _keep_wal_ctypes(conn)
    except (OSError, AttributeError, ValueError):
        return False


def _keep_wal_ctypes(conn: sqlite3.Connection) -> bool:
    import _sqlite3
    import ctypes

    lib = ctypes.CDLL(_sqlite3.__file__)  # its symbols and those of the libsqlite3 it links
    # CPython 3.11's pysqlite_Connection: PyObject_HEAD, then ``sqlite3 *db``
    # (Modules/_sqlite/connection.h); 3.12 and later take the setconfig path above
    handle = ctypes.c_void_p.from_address(id(conn) + object.__basicsize__)
    lib.sqlite3_db_filename.restype = ctypes.c_char_p
    lib.sqlite3_db_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    name = lib.sqlite3_db_filename(handle, b"main")  # the handle is this connection's
    if name is None or os.path.realpath(name.decode()) != _main_file(conn):
        return False
    done = ctypes.c_int(-1)
    rc = lib.sqlite3_db_config(
        handle, ctypes.c_int(_NO_CKPT_ON_CLOSE), ctypes.c_int(1), ctypes.byref(done)
    )
    return rc == 0 and done.value == 1


def _main_file(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return os.path.realpath(str(row[2])) if row is not None else ""
