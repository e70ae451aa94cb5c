"""The SQLite engine: everything that knows ``sqlite3``, aiosqlite or SQL lives here.

- ``engine``: ``SqliteStore``, the ``store.protocol.Store`` implementation;
- ``opening``, ``schema``, ``integrity``: opening a file, migrations, integrity checks;
- ``batch``: the group commit (one transaction, a savepoint per op) and the thread hop;
- ``codes``: driver errors translated by SQLite result code;
- ``claims``, ``dispatches``, ``runs``, ``jobs``, ``prune``, ``messages``,
  ``deliveries``, ``ledger``: the SQL of each write op (``store.ops``) and queries;
- ``queries``: the reader's queries of jobs, dispatches and runs.
"""

from shepherd.store.sqlite.codes import translate
from shepherd.store.sqlite.engine import SqliteStore, Synchronous

__all__ = ["SqliteStore", "Synchronous", "translate"]
