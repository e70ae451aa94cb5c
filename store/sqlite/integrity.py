"""Integrity checks of a database file, run before anything writes to it.

Read-only: they run in a read transaction (through the WAL) and change nothing. A
failed check raises ``DatabaseCorrupt`` naming the damaged tables.

=========  ==================================================  =========================
mode       what is read                                        cost on a 1 GB file
=========  ==================================================  =========================
full       ``PRAGMA quick_check``: every page of every btree,  1.1-1.7 s warm, 14.8 s
           the free-page list, cell order and bounds           cold: O(file size)
bounded    files up to ``FULL_UP_TO`` (64 MiB): as ``full``;   1-3 ms warm, 20 ms cold:
           above: the header, the free-page list, the schema,  O(jobs + free list)
           ``jobs``, ``instances`` and ``schema_version`` in
           full, and ``PROBES`` rows spread over every other
           table's rowid range (each probe reads its
           root-to-leaf path and decodes the row)
auto       files up to ``AUTO_FULL_UP_TO`` (256 MiB):          ``full`` up to 256 MiB
           ``full``; above: ``bounded``                        (<= 0.45 s warm)
none       nothing
=========  ==================================================  =========================

The runtime checks as its ``start_check`` setting says when it opens a file (daemon
start; default ``auto``), the CLI ``bounded`` on every command: a damaged page the
bounded check does not read is still found by SQLite when a query reaches it
(``DatabaseCorrupt``), and by the next full check. ``shepherd doctor`` always runs
``full`` and reports per table. ``verify`` returns which check ran.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any, Literal, NamedTuple
from urllib.parse import quote

from shepherd.store.errors import DatabaseCorrupt
from shepherd.store.sqlite import queries
from shepherd.store.sqlite.schema import APPLICATION_ID, SCHEMA_VERSION

__all__ = [
    "AUTO_FULL_UP_TO",
    "FULL_UP_TO",
    "PROBES",
    "Check",
    "CheckRan",
    "Ran",
    "damaged_tables",
    "diagnose",
    "quick_check",
    "verify",
    "which_check",
]

Check = Literal["full", "auto", "bounded", "none"]
Ran = Literal["full", "bounded", "none"]

FULL_UP_TO = 64 * 2**20  # bytes; a full quick_check of 64 MiB costs ~80 ms (warm)
# ``auto``: a full check of 256 MiB costs ~0.3-0.45 s warm (~3.7 s cold); above, the
# bounded one (milliseconds at any size)
AUTO_FULL_UP_TO = 256 * 2**20
PROBES = 64  # rows probed per large table in a bounded check
_FREE = "the free-page list"
_SMALL = ("sqlite_schema", "schema_version", "jobs", "instances")


def quick_check(
    conn: sqlite3.Connection, table: str | None = None, *, pragma: str = "quick_check"
) -> list[str]:
    """The problems ``PRAGMA quick_check`` reports (of one table and its indexes, plus the
    header and free-page list, when ``table`` is given); ``[]`` when healthy.
    ``pragma="integrity_check"`` (``doctor``) also compares every index with its table
    and checks UNIQUE constraints: slower, and it finds a file whose pages are sound but
    whose rows and indexes disagree (two files' writes mixed in one)."""
    sql = f"PRAGMA {pragma}" if table is None else f"PRAGMA {pragma}({_quote(table)})"
    lines: list[str] = []
    for (text,) in conn.execute(sql).fetchall():
        lines += [line for line in str(text).splitlines() if line.strip()]
    return [line for line in lines if line != "ok" and not line.startswith("*** in database")]


def tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY rootpage"
    ).fetchall()
    return [str(r[0]) for r in rows]


def damaged_tables(conn: sqlite3.Connection, pragma: str = "quick_check") -> list[str]:
    """Which tables (with their indexes) fail a check of their own (``table <name>``),
    and ``the free-page list`` when the list of unused pages is damaged. One more
    pass over the file, run only after a failure."""
    out: list[str] = []
    for name in ["sqlite_schema", *tables(conn)]:
        try:
            lines = quick_check(conn, name, pragma=pragma)
        except sqlite3.DatabaseError:
            lines = ["unreadable"]
        if any("freelist" in line.lower() for line in lines) and _FREE not in out:
            out.append(_FREE)
        if any("freelist" not in line.lower() for line in lines):
            out.append(f"table {name}")
    return out


class CheckRan(NamedTuple):
    """Which check ``mode`` asked for, which one ran (``bounded`` reads a small file in
    full: ``full``; a new file: ``none``) and how long it took."""

    mode: Check
    ran: Ran
    seconds: float

    def describe(self) -> str:
        """``full 0.012s``, ``full 0.012s (auto)``: the check that ran, then the mode
        asked for when it differs; ``none (off)`` when the check was turned off."""
        if self.ran == "none":
            return "none (off)" if self.mode == "none" else "none (new file)"
        asked = f" ({self.mode})" if self.mode != self.ran else ""
        return f"{self.ran} {self.seconds:.3f}s{asked}"


def which_check(mode: Check, size: int) -> Ran:
    """The check ``mode`` runs on a file of ``size`` bytes."""
    if mode == "none":
        return "none"
    if mode == "full" or size <= FULL_UP_TO or (mode == "auto" and size <= AUTO_FULL_UP_TO):
        return "full"
    return "bounded"


def verify(conn: sqlite3.Connection, mode: Check, path: str) -> Ran:
    """Raise ``DatabaseCorrupt`` naming what is damaged (see the module's table);
    which check ran."""
    ran: Ran = "none"
    try:
        ran = which_check(mode, _size(conn) if mode != "none" else 0)
        if ran == "none":
            return ran
        problems = quick_check(conn) if ran == "full" else _bounded(conn)
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if not problems:
        return ran
    try:
        where = damaged_tables(conn)
    except sqlite3.DatabaseError:
        where = []
    what = f" in {', '.join(where)}" if where else ""
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    raise DatabaseCorrupt(
        f"{path}: the database is damaged{what}: {problems[0]}{more};"
        " nothing was written (`shepherd doctor` shows the details)"
    )


def diagnose(path: str) -> dict[str, Any]:
    """What ``shepherd doctor`` reports about the file itself, read-only: sizes, schema
    versions, a full check (per table when it fails), the latest runtime's row."""
    out: dict[str, Any] = {"database": path, "exists": os.path.isfile(path)}
    if not out["exists"]:
        return {**out, "healthy": False, "problem": "no such database file"}
    wal = f"{path}-wal"
    out["file_bytes"] = os.path.getsize(path)
    out["wal_bytes"] = os.path.getsize(wal) if os.path.exists(wal) else 0
    if (links := os.stat(path).st_nlink) > 1:  # every command refuses it (opening.check_path)
        problem = f"has {links} names (hard links): keep one name (a symlink is safe)"
        return {**out, "healthy": False, "problem": problem}
    conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        out.update(_file_facts(conn))
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY:
            where = os.path.dirname(os.path.abspath(path))
            problem = (
                f"cannot be read here: a WAL database is read through its -shm beside it,"
                f" which cannot be made in {where} (read-only); the file was not checked ({exc})"
            )
            return {**out, "healthy": False, "problem": problem}
        return {**out, "healthy": False, "problem": f"not a readable SQLite database ({exc})"}
    finally:
        conn.close()
    return out


def _file_facts(conn: sqlite3.Connection) -> dict[str, Any]:
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    facts: dict[str, Any] = {
        "page_size": conn.execute("PRAGMA page_size").fetchone()[0],
        "pages": conn.execute("PRAGMA page_count").fetchone()[0],
        "free_pages": conn.execute("PRAGMA freelist_count").fetchone()[0],
        "schema_version": None,
        "runtime_schema_version": SCHEMA_VERSION,
    }
    if app_id != APPLICATION_ID:
        return {**facts, "healthy": False, "problem": "not a shepherd database"}
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        facts["schema_version"] = int(row[0] or 0)
    except sqlite3.DatabaseError:
        pass  # reported by the check below
    started = time.perf_counter()
    try:
        problems = quick_check(conn, pragma="integrity_check")
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    damaged = damaged_tables(conn, "integrity_check") if problems else []
    facts["integrity"] = {
        "ok": not problems,
        "problems": problems[:20],
        "damaged": damaged,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if problems:
        return {**facts, "healthy": False, "problem": f"damaged: {', '.join(damaged) or '?'}"}
    facts["instance"] = queries.latest_instance(conn)
    if (facts["schema_version"] or 0) > SCHEMA_VERSION:
        return {**facts, "healthy": False, "problem": "schema is newer than this runtime"}
    return {**facts, "healthy": True, "problem": None}


def _bounded(conn: sqlite3.Connection) -> list[str]:
    conn.execute("PRAGMA cell_size_check = ON")  # every page a probe loads: cell bounds too
    try:
        return _bounded_checks(conn)
    finally:
        conn.execute("PRAGMA cell_size_check = OFF")


def _bounded_checks(conn: sqlite3.Connection) -> list[str]:
    names = tables(conn)
    for name in _SMALL:
        if name == "sqlite_schema" or name in names:
            problems = quick_check(conn, name)
            if problems:
                return problems
    for name in names:
        if name in _SMALL or name.startswith("sqlite_"):
            continue
        try:
            _probe(conn, name)
        except sqlite3.DatabaseError as exc:
            return [f"table {name}: {exc}"]
    return []


def _probe(conn: sqlite3.Connection, table: str) -> None:
    """Read ``PROBES`` rows spread evenly over the table's rowid range."""
    t = _quote(table)
    # two statements: SQLite reads one end of the btree for a lone min() or max() only
    (lo,) = conn.execute(f"SELECT min(rowid) FROM {t}").fetchone()
    (hi,) = conn.execute(f"SELECT max(rowid) FROM {t}").fetchone()
    if lo is None or hi is None:
        return
    step = max(1, (hi - lo) // PROBES)
    for rowid in range(lo, hi + 1, step):
        conn.execute(f"SELECT * FROM {t} WHERE rowid >= ? LIMIT 1", (rowid,)).fetchall()


def _size(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int(pages) * int(size)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
