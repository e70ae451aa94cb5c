"""Reading a foreign SQLite database read-only (the openclaw-scheduler importer's source).

- ``holder_pid(path)``: the pid of another process that holds the database open, or
  None. SQLite's unix VFS keeps a shared POSIX lock on the "DMS" byte (offset 128) of
  ``<db>-shm`` for as long as a connection has a WAL database open, and a writer of a
  rollback-journal database locks the bytes from 0x40000000 on the main file. Asking
  the kernel (``F_GETLK``) who would block an exclusive lock there is a pure probe: it
  takes no lock and never disturbs the other process. (Locks of this process are not
  reported: POSIX locks are per process.)
- ``read_source(path, select)``: opens ``file:<path>?mode=ro`` (nothing is ever written
  to it, and no journal is created), lists every table with its columns and row count,
  and reads the rows each entry of ``select`` names (table → WHERE clause, ``""``:
  every row) as dicts, in one read transaction (one snapshot).

A file that is not SQLite (or is damaged) is a ConfigError naming the path.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import struct
import sys
import urllib.parse
from collections.abc import Mapping
from typing import Any

import msgspec

from shepherd.store.errors import ConfigError
from shepherd.store.sqlite.schema import APPLICATION_ID

__all__ = ["SourceDb", "SourceTable", "holder_pid", "read_source"]

_SHM_DMS = 128  # (22 + SQLITE_SHM_NLOCK) * 4 + SQLITE_SHM_NLOCK
_PENDING_BYTE = 0x40000000
_LOCK_SPAN = 512  # pending, reserved and the shared range
_HEADER = b"SQLite format 3\x00"


class SourceTable(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    columns: list[str]
    count: int
    rows: list[dict[str, Any]] = msgspec.field(default_factory=list)


class SourceDb(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    tables: dict[str, SourceTable]
    shepherd: bool = False  # the file is a shepherd database (its application id)


def _flock(kind: int, start: int, length: int) -> bytes:
    if sys.platform == "darwin":  # off_t start, off_t len, pid_t pid, short type, short whence
        return struct.pack("qqihh", start, length, 0, kind, os.SEEK_SET)
    return struct.pack("hhqqi", kind, os.SEEK_SET, start, length, 0)


def _holder(path: str, start: int, length: int) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        arg = _flock(fcntl.F_WRLCK, start, length)
        out = fcntl.fcntl(fd, fcntl.F_GETLK, arg)
    except OSError:
        return None
    finally:
        os.close(fd)
    if sys.platform == "darwin":
        _, _, pid, kind, _ = struct.unpack("qqihh", out)
    else:
        kind, _, _, _, pid = struct.unpack("hhqqi", out)
    return int(pid) if kind != fcntl.F_UNLCK else None


def holder_pid(path: str) -> int | None:
    """The pid of another process holding ``path`` (a SQLite database) open, or None."""
    shm = f"{path}-shm"
    if os.path.exists(shm):
        pid = _holder(shm, _SHM_DMS, 1)
        if pid is not None:
            return pid
    return _holder(path, _PENDING_BYTE, _LOCK_SPAN)


def read_source(path: str, select: Mapping[str, str]) -> SourceDb:
    """Every table of ``path`` (columns, row count) and the rows ``select`` asks for."""
    try:
        with open(path, "rb") as f:
            header = f.read(len(_HEADER))
    except OSError as exc:
        raise ConfigError(f"cannot read it ({exc.strerror})", field=path) from None
    if header != _HEADER:
        raise ConfigError("not an SQLite database", field=path)
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open it read-only ({exc})", field=path) from None
    try:
        conn.execute("PRAGMA query_only = 1")
        conn.execute("BEGIN")  # one snapshot for every read below
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        names = [
            str(r[0])
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        tables: dict[str, SourceTable] = {}
        for name in names:
            quoted = '"' + name.replace('"', '""') + '"'
            columns = [str(r[1]) for r in conn.execute(f"PRAGMA table_info({quoted})")]
            (count,) = conn.execute(f"SELECT COUNT(*) FROM {quoted}").fetchone()
            rows: list[dict[str, Any]] = []
            if name in select:
                where = f" WHERE {select[name]}" if select[name] else ""
                cur = conn.execute(f"SELECT * FROM {quoted}{where}")
                keys = [d[0] for d in cur.description]
                rows = [dict(zip(keys, r, strict=True)) for r in cur]
            tables[name] = SourceTable(name=name, columns=columns, count=int(count), rows=rows)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot read it as a database ({exc})", field=path) from None
    finally:
        conn.close()
    return SourceDb(path=path, tables=tables, shepherd=app_id == APPLICATION_ID)
