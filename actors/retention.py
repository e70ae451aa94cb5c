"""Retention: the ``[retention]`` config and the pruner's decisions. Pure.

The pruner (``actors/pruner.py``) performs passes; what a pass deletes is decided here,
as plain functions of ``(config, now)``; which rows a cutoff selects is the store's
(``store/ops/retention.py``). A pass runs these rules in this order, each as a series of
write ops of at most ``batch_size`` rows:

| rule (``[retention]`` key)      | default | rows                                          |
| --- | --- | --- |
| (always)                        |         | expired idempotency keys                      |
| ``runs_per_job``                | 100     | finished runs past the newest N of their job  |
| ``runs_max_age``                | off     | finished runs, by ``finished_at``             |
| ``dispatches_max_age``          | 7 d     | done / cancelled dispatches, by when they ended |
| ``dead_max_age``                | off     | dead letters, with their runs                 |
| ``messages_max_age``            | 30 d    | read / expired / failed inbox messages        |
| ``messages_delivered_max_age``  | 3 d     | delivered (not yet read) inbox messages       |
| ``deliveries_max_age``          | 30 d    | failed deliveries                             |
| ``deliveries_sent_max_age``     | 3 d     | sent deliveries                               |
| ``approvals_max_age``           | 30 d    | resolved approvals, by ``resolved_at``        |
| ``groups_max_age``              | 30 d    | ended task groups and members, by end time    |

``0`` turns a count or an age rule off (keep forever). The message and delivery ages
are OCS's; so is 100 runs per job. A producer's idempotency key is bound to its
dispatch for as long as the row exists, so the dispatch's age rule is the key's
lifetime: 7 days by default, and never less than ``store.keys.DEFAULT_TTL`` (7 days)
whatever ``dispatches_max_age`` / ``dead_max_age`` say, because enqueueing the key
again must still find its dispatch. Never pruned: queued or running dispatches,
running runs, a dead letter's runs while it is kept, a pending approval or one whose
dispatch still waits for it, an open task group.
"""

from __future__ import annotations

from typing import Literal, assert_never

import msgspec

from shepherd.actors.retention_config import RetentionConfig  # re-exported
from shepherd.store import keys
from shepherd.store.ops import (
    PruneApprovals,
    Pruned,
    PruneDeliveries,
    PruneDispatches,
    PruneGroups,
    PruneKeys,
    PruneMessages,
    PruneOp,
    PruneRunsBefore,
    PruneRunsPerJob,
)

__all__ = [
    "FIRST_PASS_DELAY",
    "KINDS",
    "RetentionConfig",
    "first_pass_at",
    "follow",
    "kind_of",
    "plan",
    "summary",
]

FIRST_PASS_DELAY = 60.0  # after start; a restarted daemon still prunes
KINDS = ("keys", "runs", "dispatches", "dead", "messages", "deliveries", "approvals", "groups")
_Ended = Literal["done", "cancelled", "dead"]
_MessageState = Literal["delivered", "read", "expired", "failed"]
_DeliveryState = Literal["sent", "failed"]


def plan(
    cfg: RetentionConfig, now: float, *, key_lifetime: float = keys.DEFAULT_TTL
) -> list[PruneOp]:
    """The first op of every rule that is on, in pass order."""
    n = cfg.batch_size
    ops: list[PruneOp] = [PruneKeys(now=now, limit=n)]
    if cfg.runs_per_job:
        ops.append(PruneRunsPerJob(keep=cfg.runs_per_job, limit=n))
    if cfg.runs_max_age:
        ops.append(PruneRunsBefore(before=now - cfg.runs_max_age, limit=n))
    keyed = now - key_lifetime  # a producer's key must still find its dispatch
    ended: list[tuple[_Ended, float]] = [
        ("done", cfg.dispatches_max_age),
        ("cancelled", cfg.dispatches_max_age),
        ("dead", cfg.dead_max_age),
    ]
    for status, age in ended:
        if age:
            before = now - age
            ops.append(
                PruneDispatches(
                    status=status, before=before, keyed_before=min(before, keyed), limit=n
                )
            )
    messages: list[tuple[_MessageState, float]] = [
        ("read", cfg.messages_max_age),
        ("expired", cfg.messages_max_age),
        ("failed", cfg.messages_max_age),
        ("delivered", cfg.messages_delivered_max_age),
    ]
    ops += [PruneMessages(status=s, before=now - age, limit=n) for s, age in messages if age]
    deliveries: list[tuple[_DeliveryState, float]] = [
        ("failed", cfg.deliveries_max_age),
        ("sent", cfg.deliveries_sent_max_age),
    ]
    ops += [PruneDeliveries(status=s, before=now - age, limit=n) for s, age in deliveries if age]
    if cfg.approvals_max_age:
        ops.append(PruneApprovals(before=now - cfg.approvals_max_age, limit=n))
    if cfg.groups_max_age:
        ops.append(PruneGroups(before=now - cfg.groups_max_age, limit=n))
    return ops


def follow(op: PruneOp, result: Pruned) -> PruneOp | None:
    """The op that continues ``op``'s rule after ``result``, or None when it is done."""
    if result.cursor is None:
        return None
    if isinstance(op, PruneRunsPerJob):
        return msgspec.structs.replace(op, after_job=result.cursor)
    return op  # the same cutoff: the next batch of rows


def kind_of(op: PruneOp) -> str:
    """The statistics bucket of ``op``'s rows (one of ``KINDS``)."""
    match op:
        case PruneKeys():
            return "keys"
        case PruneRunsPerJob() | PruneRunsBefore():
            return "runs"
        case PruneDispatches():
            return "dead" if op.status == "dead" else "dispatches"
        case PruneMessages():
            return "messages"
        case PruneDeliveries():
            return "deliveries"
        case PruneApprovals():
            return "approvals"
        case PruneGroups():
            return "groups"
        case _:
            assert_never(op)


def first_pass_at(started: float, cfg: RetentionConfig) -> float:
    """A minute after start (one interval if that is shorter), then every interval."""
    return started + min(float(cfg.interval), FIRST_PASS_DELAY)


def summary(counts: dict[str, int]) -> str:
    """``"1000 runs, 20 dispatches"``: the kinds that lost rows."""
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n)
