"""The schema level of a SQLite file, read without writing to it (``store.upgrade``)."""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import quote

from shepherd.store.sqlite.codes import translate
from shepherd.store.sqlite.opening import schema_state

__all__ = ["file_schema_version"]


def file_schema_version(path: str) -> int | None:
    """The file's schema version (0: empty or not migrated yet), None when no file."""
    if not os.path.isfile(path):
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            return schema_state(conn)[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise translate(exc, path) from None
