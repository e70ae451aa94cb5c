"""The cluster's records: node leases, what ``nodes()`` reports, what a rescue did, and
the share rule that splits a cluster-wide limit between live nodes. Engine-neutral.

Every runtime joins its database as a node with a heartbeat lease and an epoch. On
PostgreSQL several nodes share the database: a node renews its lease every lease/3; a
node whose lease ran out is rescued by any live one (marked dead, its epoch bumped, its
running runs given their delivery guarantee); a write of claims or outcomes that carries
a stale epoch is refused (fencing). On SQLite the database has one runtime: it is a
cluster of one node, always alive, epoch 0 (no fencing), and a rescue finds nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec

__all__ = ["EndGroups", "NodeInfo", "NodeLease", "NodeStatus", "Rescue", "share"]

NodeStatus = Literal["alive", "expired", "dead", "left"]

# A rescue's hook that ends the process groups its runs left on the rescuer's host:
# given ``(run_id, pgid, start, clock)`` of each, ``{run_id: found}`` as ``runs.process``
# records it (``gone`` / ``killed`` / ``alive``); the store calls it before the
# runs' guarantee applies, while it holds them.
EndGroups = Callable[[list[tuple[int, int, int, str]]], Awaitable[dict[int, str]]]


class NodeLease(msgspec.Struct, frozen=True, kw_only=True):
    """A node's standing after a join or a renew.

    ``epoch``: 0 where there is no fencing (SQLite); on PostgreSQL a cluster-wide
    increasing number, new on every join and bumped when the node is rescued.
    ``rank`` (0-based, by join order) and ``count`` are among the live nodes: they give
    this node's share of every cluster-wide limit (``share``). ``fenced``: the renew
    found the node's epoch bumped (it was declared dead and rescued): its running runs
    belong to no one now, and it must cancel them and join again."""

    node: str
    epoch: int
    rank: int = 0
    count: int = 1
    single: bool = True  # a cluster of one (SQLite): always alive, nothing to rescue
    fenced: bool = False
    lease: float = 15.0


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One node as ``nodes()`` reports it. ``lease_age``: seconds since its last renew
    (the server's clock); ``status`` ``expired``: its lease ran out, no one rescued it
    yet; ``leader``: it holds the scheduler's leadership."""

    name: str
    epoch: int
    status: NodeStatus
    host: str
    pid: int
    joined_at: float
    renewed_at: float
    lease: float
    lease_age: float
    leader: bool = False
    rescued_by: str | None = None
    rescued_at: float | None = None


class Rescue(msgspec.Struct, frozen=True, kw_only=True):
    """What one rescue did to a dead node: its new epoch and, per running run it left,
    ``(run_id, dispatch_id, action)`` as crash recovery says it (``replay`` / ``dead``)."""

    node: str
    epoch: int
    runs: list[tuple[int, int, str]] = msgspec.field(default_factory=list)


def share(limit: int, count: int, rank: int) -> int:
    """The part of a cluster-wide ``limit`` held by the node of ``rank`` among ``count``
    live nodes: ``limit // count``, one more for the ``limit % count`` lowest ranks, so
    the shares add up to ``limit`` exactly."""
    if count <= 1:
        return limit
    base, rest = divmod(limit, count)
    return base + (1 if 0 <= rank < rest else 0)
