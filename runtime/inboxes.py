"""The tree's mailboxes: ``INBOXES`` (each capacity with its reason) and ``Inboxes``,
which makes them; ``ActorName`` names the tree's children. ``runtime.tree`` re-exports
all three beside the tree they size.

A mailbox is a bound, not an allocation (anyio buffers what is queued, nothing more):
a sender that awaits ``send`` waits for room, one that ``tell``s gets ``MailboxFull``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from shepherd.actors.approvals import ApprovalsMsg
from shepherd.actors.groups import GroupsMsg
from shepherd.actors.messages import DispatcherMsg, SchedulerMsg
from shepherd.actors.primitives.mailbox import Mailbox
from shepherd.actors.pruner import PrunerMsg
from shepherd.actors.router import RouterMsg
from shepherd.actors.writer import StoreMsg

__all__ = ["INBOXES", "ActorName", "Inbox", "Inboxes", "capacity"]

ActorName = Literal[
    "store",
    "cluster",
    "router",
    "dispatcher",
    "scheduler",
    "approvals",
    "health",
    "groups",
    "ingest",
    "spool",
    "producers",
    "pruner",
    "backup",
    "nats",
    "http",
]


class Inbox(msgspec.Struct, frozen=True):
    """A mailbox's capacity: ``capacity``, plus ``concurrency`` when ``per_run``."""

    name: ActorName
    capacity: int
    why: str
    per_run: bool = False


# fmt: off
INBOXES: tuple[Inbox, ...] = (
    Inbox("store", 4_096,
          "one Write per caller, and every caller awaits its reply, so the depth is the"
          " number of concurrent writers; 16 full group commits (max_batch 256) can"
          " queue, past that senders wait (back-pressure, never an error)"),
    Inbox("dispatcher", 4_096, per_run=True, why=(
          "every running run's RunFinished fits (at most one per run; a run tells"
          " first) beside 4,096 other messages: Enqueued, one per enqueue or"
          " enqueue_many call however many rows (awaited), Cancel, JobsChanged, the"
          " health monitor's Tick and Probe, ingest's merged Poke; the dispatcher also"
          " tells itself Poke, which needs that room")),
    Inbox("scheduler", 1_024,
          "JobsChanged (awaited) and Poke from ingest (merged, dropped when full), and"
          " one Outcome per final schedule dispatch (told; when full it is lost and"
          " counted, skipping that slot's error bookkeeping): 1,024 covers that many"
          " jobs' slots ending together"),
    Inbox("router", 16_384,
          "one Routed per finished run, told: a full inbox loses that run's announce"
          " (counted), so it is deep, about 2 s of outcomes at the benchmark's ~8,800"
          " runs/s; Announce, Reload, ForgetJobs and its own Attempted are few"),
    Inbox("groups", 1_024,
          "GroupsChanged from the runtime's group calls (awaited) and ingest's merged"
          " Poke (told, dropped when full: one waiting covers it); its timers are its own"),
    Inbox("approvals", 1_024,
          "Poke(approvals) told by whoever committed a gated dispatch (this runtime's"
          " inserts, ingest for other processes): dropped when full, one waiting covers"
          " it (the actor re-reads the earliest deadline)"),
    Inbox("pruner", 16,
          "operator requests only (PruneNow, Stop); its timers are its own"),
)
# fmt: on


def capacity(name: ActorName, concurrency: int) -> int:
    """The capacity ``INBOXES`` gives ``name``'s mailbox."""
    inbox = next(i for i in INBOXES if i.name == name)
    return inbox.capacity + (concurrency if inbox.per_run else 0)


class Inboxes:
    """Every mailbox of the tree, sized by ``INBOXES`` (health and ingest have none:
    one runs on a timer, the other reads a socket)."""

    def __init__(self, concurrency: int) -> None:
        def make(name: ActorName) -> Mailbox[Any]:
            return Mailbox(name, capacity(name, concurrency))

        self.store: Mailbox[StoreMsg] = make("store")
        self.router: Mailbox[RouterMsg] = make("router")
        self.dispatcher: Mailbox[DispatcherMsg] = make("dispatcher")
        self.scheduler: Mailbox[SchedulerMsg] = make("scheduler")
        self.pruner: Mailbox[PrunerMsg] = make("pruner")
        self.groups: Mailbox[GroupsMsg] = make("groups")
        self.approvals: Mailbox[ApprovalsMsg] = make("approvals")
