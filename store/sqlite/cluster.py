"""The cluster on SQLite: one runtime serves the file (its lock), so the database is a
cluster of one node, always alive, with epoch 0 (no fencing) and nothing to rescue.
``list_nodes`` reports the runtimes of ``instances`` that did not stop, the newest as
the leader (``store.cluster``)."""

from __future__ import annotations

import sqlite3
import time

from shepherd.store.cluster import NodeInfo

__all__ = ["list_nodes"]


def list_nodes(conn: sqlite3.Connection) -> list[NodeInfo]:
    rows = conn.execute(
        "SELECT instance, pid, started_at, updated_at FROM instances"
        " WHERE stopped_at IS NULL ORDER BY updated_at DESC"
    ).fetchall()
    now = time.time()
    return [
        NodeInfo(
            name=str(r[0]),
            epoch=0,
            status="alive",
            host=str(r[0]).split(":", 1)[0],
            pid=int(r[1]),
            joined_at=float(r[2]),
            renewed_at=float(r[3]),
            lease=0.0,
            lease_age=max(0.0, now - float(r[3])),
            leader=i == 0,
        )
        for i, r in enumerate(rows)
    ]
