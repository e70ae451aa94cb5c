"""Retention ops: the pruner's write ops, each deleting one bounded batch of rows.

Every op deletes at most ``limit`` rows (its own group-commit op through the store
writer) and answers ``Pruned``: how many rows went, and a ``cursor`` when the caller
should send the op again to continue (``None``: nothing left for this rule). The
rules and their defaults are decided in ``actors/pruner.py``; this module only knows
which rows a cutoff selects:

- ``PruneRunsPerJob``: finished runs older than the newest ``keep`` finished runs of
  their job, a few jobs per op (``cursor`` is the last job id examined).
- ``PruneRunsBefore``: finished runs with ``finished_at`` before a cutoff.
- ``PruneDispatches``: ``done`` / ``cancelled`` / ``dead`` dispatches whose
  ``updated_at`` (when they ended) is before a cutoff, and, when they hold a
  producer's key (``producer_key``, bound to its dispatch while the row exists), before
  the key's cutoff too. A dead letter goes with its runs.
- ``PruneMessages`` (by ``created_at``), ``PruneDeliveries`` (by ``updated_at``): one
  status per op.
- ``PruneKeys``: expired idempotency keys (``store.keys``).
- ``PruneApprovals``: resolved approvals (``approved`` / ``rejected`` / ``timed_out``)
  whose ``resolved_at`` is before a cutoff; never a ``pending`` one, never one whose
  dispatch still waits (``awaiting_approval``: the start repair reads its decision).
- ``PruneGroups``: ended task groups (``completed`` / ``failed``) whose
  ``completed_at`` is before a cutoff, with their members; never an ``open`` group.

Never selected: a ``running`` run; a queued or running dispatch; the runs of a dead
letter (they go when it is purged); and the newest row of each table (the highest
``id``, and for dispatches the highest ``seq``). Ids and sequence numbers are
``MAX() + 1``, and the dispatcher reads new dispatches by ``seq`` above a mark, so
deleting the newest row would hand its id or seq to the next insert (approvals and
task groups too: their ids are ``INTEGER PRIMARY KEY``, ``MAX() + 1``).

The SQLite engine indexes what they select (``store.sqlite.prune``).
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "PRUNE_OP_TYPES",
    "PruneApprovals",
    "PruneDeliveries",
    "PruneDispatches",
    "PruneGroups",
    "PruneKeys",
    "PruneMessages",
    "PruneOp",
    "PruneRunsBefore",
    "PruneRunsPerJob",
    "Pruned",
]


class Pruned(msgspec.Struct, frozen=True):
    """``deleted`` rows of the op's table (plus ``runs`` deleted with dead letters; a
    task group's members are not counted);
    ``cursor`` set: send the op again from there."""

    deleted: int
    cursor: int | None = None
    runs: int = 0


class PruneRunsPerJob(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    keep: int  # newest finished runs kept per job (>= 1)
    limit: int
    after_job: int = -1  # the cursor: jobs with a larger id are examined
    max_jobs: int = 64  # jobs examined per op, so one op's cost stays bounded


class PruneRunsBefore(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    before: float
    limit: int


class PruneDispatches(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    status: Literal["done", "cancelled", "dead"]
    before: float
    keyed_before: float  # for a dispatch holding a producer's key: the key's cutoff
    limit: int


class PruneMessages(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    status: Literal["delivered", "read", "expired", "failed"]
    before: float
    limit: int


class PruneDeliveries(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    status: Literal["sent", "failed"]
    before: float
    limit: int


class PruneKeys(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    now: float
    limit: int


class PruneApprovals(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    before: float  # resolved before this
    limit: int


class PruneGroups(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    before: float  # ended before this
    limit: int


PruneOp = (
    PruneRunsPerJob
    | PruneRunsBefore
    | PruneDispatches
    | PruneMessages
    | PruneDeliveries
    | PruneKeys
    | PruneApprovals
    | PruneGroups
)

PRUNE_OP_TYPES: tuple[type, ...] = (
    PruneRunsPerJob,
    PruneRunsBefore,
    PruneDispatches,
    PruneMessages,
    PruneDeliveries,
    PruneKeys,
    PruneApprovals,
    PruneGroups,
)
