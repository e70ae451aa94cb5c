"""The SQLite engine: everything that knows ``sqlite3``, aiosqlite or SQL lives here.

- ``engine``: ``SqliteStore``, the ``store.protocol.Store`` implementation;
- ``opening``, ``schema``, ``integrity``: opening a file, migrations, integrity checks;
- ``batch``: the group commit (one transaction, a savepoint per op) and the thread hop;
- ``codes``: driver errors translated by SQLite result code;
- ``claims``, ``dispatches``, ``runs``, ``jobs``, ``prune``, ``messages``,
  ``deliveries``, ``ledger``: the SQL of each write op (``store.ops``) and queries;
- ``queries``: the reader's queries of jobs, dispatches and runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shepherd.store.sqlite.codes import translate
    from shepherd.store.sqlite.engine import SqliteStore, Synchronous

__all__ = ["SqliteStore", "Synchronous", "translate"]


def __getattr__(name: str) -> Any:
    """The engine on first use (PEP 562): a module that needs only ``integrity`` or
    ``backup`` (a config's ``start_check``, ``shepherd doctor``) does not load aiosqlite."""
    if name == "translate":
        from shepherd.store.sqlite.codes import translate

        return translate
    if name in ("SqliteStore", "Synchronous"):
        from shepherd.store.sqlite import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
