"""SQLite driver errors as the store's error classes, chosen by SQLite result code
(``sqlite3.Error.sqlite_errorcode``), never by the words of a message; and which codes
fail a whole group commit rather than one op."""

from __future__ import annotations

import sqlite3

from shepherd.store.errors import DatabaseCorrupt, DatabaseLocked, DiskFull, ReadOnly, StoreError

__all__ = ["fails_batch", "op_error", "translate"]


# Primary result codes (``sqlite_errorcode & 0xFF``) → the class and what it means.
_BY_CODE: dict[int, tuple[type[StoreError], str]] = {
    sqlite3.SQLITE_BUSY: (DatabaseLocked, "database is locked by another writer"),
    sqlite3.SQLITE_LOCKED: (DatabaseLocked, "database is locked by another writer"),
    sqlite3.SQLITE_FULL: (DiskFull, "disk is full"),
    sqlite3.SQLITE_READONLY: (ReadOnly, "cannot write the database or its directory"),
    sqlite3.SQLITE_CANTOPEN: (ReadOnly, "cannot write the database or its directory"),
    sqlite3.SQLITE_PERM: (ReadOnly, "cannot write the database or its directory"),
    sqlite3.SQLITE_CORRUPT: (DatabaseCorrupt, "not a shepherd database or damaged"),
    sqlite3.SQLITE_NOTADB: (DatabaseCorrupt, "not a shepherd database or damaged"),
}

# Extended result codes that say more than their primary code (``SQLITE_IOERR``).
_BY_EXTENDED: dict[int, tuple[type[StoreError], str]] = {
    sqlite3.SQLITE_IOERR_SHMSIZE: (DiskFull, "no room to grow the shared-memory file (-shm)"),
}

# After these SQLite may have rolled the whole transaction back on its own, or the file
# or connection cannot go on (sqlite.org/lang_transaction.html, "Response To Errors
# Within A Transaction"): the batch fails as a whole. Any other error fails one op.
_WHOLE_BATCH = frozenset(
    {
        sqlite3.SQLITE_ABORT,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_PERM,
    }
)


def _primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None and type(exc) is sqlite3.DatabaseError:
        # no code: raised by this module's own checks (a foreign file, a newer schema)
        return sqlite3.SQLITE_NOTADB
    return None if code is None else int(code) & 0xFF


def translate(exc: BaseException, path: str) -> StoreError:
    """Map a sqlite3 exception to the project's error classes, by its SQLite result
    code (``sqlite_errorcode``), never by the words of its message."""
    code = _primary_code(exc)
    kind = _BY_EXTENDED.get(getattr(exc, "sqlite_errorcode", None) or 0)
    if kind is None:
        kind = _BY_CODE.get(code) if code is not None else None
    name = getattr(exc, "sqlite_errorname", None)
    if kind is None:  # named by its code at least (SQLITE_IOERR_WRITE ...)
        return StoreError(f"{path}: {exc}{f' ({name})' if name else ''}")
    cls, what = kind
    return cls(f"{path}: {what} ({exc}{f'; {name}' if name else ''})")


def fails_batch(conn: sqlite3.Connection, exc: BaseException) -> bool:
    """Whether ``exc``, raised by one op, fails its whole batch."""
    if not isinstance(exc, Exception) or not conn.in_transaction:
        return True  # not an error of the op (interrupt, exit), or SQLite rolled back
    code = _primary_code(exc)
    return code is not None and code in _WHOLE_BATCH


def op_error(exc: Exception) -> StoreError:
    """What the caller of a failed op gets (its own reply fails, no one else's)."""
    text = str(exc) if isinstance(exc, sqlite3.IntegrityError) else f"{type(exc).__name__}: {exc}"
    error = StoreError(text)
    error.__cause__ = exc
    return error
