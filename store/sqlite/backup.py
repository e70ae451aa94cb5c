"""Backups and restores of a database file, through SQLite's online backup API.

``copy_to`` copies the database a connection reads into ``target`` in steps of
``pages`` pages (``sqlite3.Connection.backup``), calling ``progress(done, total)`` after
each. It holds one read transaction across every step: in WAL mode that pins one
snapshot, so the copy is consistent (every transaction committed before it began, none
after) and the writer keeps committing meanwhile; without it SQLite restarts the copy
whenever another connection writes. The copy is written to a temporary file beside
``target``, fsynced, then renamed over it, so ``target`` is either the old file or the
whole new copy, never a part. The copy is in rollback-journal mode, so reading it needs
no ``-wal`` / ``-shm`` beside it; a runtime that opens it turns WAL on again.

``restore_file`` puts a backup in place of a database the same way, after a full
integrity check of the backup (``integrity.verify``) and a check that it is a shepherd
file of a schema this version reads. Stale ``-wal`` / ``-shm`` files of the replaced
database are removed before the rename: a WAL belongs to the file it was written for.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from urllib.parse import quote

from shepherd.store.errors import StoreError, os_error
from shepherd.store.shared.backup import fsync_and_rename as _fsync_and_rename
from shepherd.store.shared.backup import temp_beside as _temp_beside
from shepherd.store.shared.backup import writable_target
from shepherd.store.sqlite.codes import translate
from shepherd.store.sqlite.integrity import verify
from shepherd.store.sqlite.opening import _refuse_foreign, schema_state
from shepherd.store.sqlite.schema import SCHEMA_VERSION

__all__ = ["BACKUP_PAGES", "Progress", "copy_to", "restore_file", "writable_target"]

BACKUP_PAGES = 1024  # pages per step (4 MiB at 4 KiB pages): a step is a few ms
Progress = Callable[[int, int], None]  # (pages copied, pages in all)


def copy_to(
    conn: sqlite3.Connection,
    target: str,
    *,
    pages: int = BACKUP_PAGES,
    progress: Progress | None = None,
) -> int:
    """Copy the database ``conn`` reads to ``target`` (atomically); its size in bytes."""
    parent = writable_target(target)
    tmp = _temp_beside(target)
    try:
        open(tmp, "wb").close()
    except OSError as exc:
        raise os_error(exc, f"{target}: cannot write the backup") from None
    try:
        dst = sqlite3.connect(tmp)
        try:
            conn.execute("BEGIN")
            try:
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # pin a snapshot

                def step(status: int, remaining: int, total: int) -> None:
                    if progress is not None:
                        progress(total - remaining, total)

                conn.backup(dst, pages=pages, progress=step)
            finally:
                conn.execute("COMMIT")
            # a standalone file: checking or copying it needs no -wal / -shm beside it
            dst.execute("PRAGMA journal_mode = DELETE").fetchone()
        finally:
            dst.close()
        _fsync_and_rename(tmp, target, parent)
    except sqlite3.Error as exc:
        raise translate(exc, target) from None
    except OSError as exc:
        raise os_error(exc, f"{target}: cannot write the backup") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return os.path.getsize(target)


def check_backup(path: str) -> int:
    """A full integrity check of the backup ``path`` (read-only); its schema version.
    ``DatabaseCorrupt`` when it is damaged or not a shepherd file of a schema this
    version reads."""
    if not os.path.isfile(path):
        raise StoreError(f"{path}: no such backup file")
    try:
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            _refuse_foreign(conn)
            verify(conn, "full", path)
            version, _ = schema_state(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise translate(exc, path) from None
    if version == 0 or version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {version} is not one this version restores"
            f" (1..{SCHEMA_VERSION})"
        )
    return version


def restore_file(backup: str, target: str, *, progress: Progress | None = None) -> int:
    """Check ``backup``, then put a copy of it at ``target`` atomically (temporary file
    beside ``target``, fsync, rename); the schema version restored. The caller holds
    ``target``'s lock, so no runtime serves it meanwhile."""
    version = check_backup(backup)
    parent = writable_target(target)
    tmp = _temp_beside(target)
    try:
        try:
            open(tmp, "wb").close()
        except OSError as exc:
            raise os_error(exc, f"{target}: cannot restore there") from None
        src = sqlite3.connect(f"file:{quote(os.path.abspath(backup))}?mode=ro", uri=True)
        dst = sqlite3.connect(tmp)
        try:

            def step(status: int, remaining: int, total: int) -> None:
                if progress is not None:
                    progress(total - remaining, total)

            src.backup(dst, pages=BACKUP_PAGES, progress=step)
        finally:
            dst.close()
            src.close()
        for stale in (f"{target}-wal", f"{target}-shm"):
            if os.path.exists(stale):
                os.unlink(stale)
        _fsync_and_rename(tmp, target, parent)
    except sqlite3.Error as exc:
        raise translate(exc, target) from None
    except OSError as exc:
        raise os_error(exc, f"{target}: cannot restore there") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return version
