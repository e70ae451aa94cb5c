"""Engine-neutral pieces of the retention ops (store/ops/retention.py): which runs may
go, and the ``Pruned`` answer of a one-batch op."""

from __future__ import annotations

from shepherd.store.ops import Pruned

__all__ = ["RUN_MAY_GO", "done"]

# a run that may go: finished, not a dead letter's, not the newest row
RUN_MAY_GO = (
    "status != 'running' AND id < (SELECT MAX(id) FROM runs) AND NOT EXISTS"
    " (SELECT 1 FROM dispatches d WHERE d.id = runs.dispatch_id AND d.status = 'dead')"
)


def done(deleted: int, limit: int, cursor: int = 0) -> Pruned:
    """``deleted`` rows went; a full batch (``limit``) asks to be sent again."""
    return Pruned(deleted, cursor if deleted >= limit else None)
