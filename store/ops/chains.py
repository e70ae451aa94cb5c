"""Write ops and results of workflow chains (README "Chains").

Children are fired by ``FinishRuns`` itself, in the transaction that finalizes the
parent's run (so no crash leaves a finished parent with a lost child): its result is a
``Finished`` list (one entry per run, as before) that also carries the chain
dispatches it inserted (``children``), for the dispatcher to queue without a read.
``CancelChain`` is an operator's cascade: the queued chain dispatches descending from
a dispatch's runs are cancelled.
"""

from __future__ import annotations

import msgspec

from shepherd.store.ops.dispatches import NewDispatch

__all__ = ["CancelChain", "ChainOp", "Finished", "FiredChild"]


class FiredChild(msgspec.Struct, frozen=True, kw_only=True):
    """A chain dispatch inserted for a parent's final run (``seq`` 0: held by its job's
    approval gate, ``awaiting_approval``, not for the dispatcher's queue yet)."""

    row: NewDispatch
    id: int
    seq: int


class Finished(list[int | None]):
    """``FinishRuns``' result: per run the new seq of a requeued dispatch, 0 for an
    accepted final outcome, None where fencing rejected it; ``children``: the chain
    dispatches the accepted final outcomes fired."""

    __slots__ = ("children",)

    def __init__(self, items: list[int | None], children: list[FiredChild] | None = None):
        super().__init__(items)
        self.children: list[FiredChild] = children or []


class CancelChain(msgspec.Struct, frozen=True, tag=True):
    """Cancel the queued chain dispatches descending (recursively, through the runs of
    each) from dispatch ``dispatch_id``; running ones are left alone. Returns the ids
    cancelled, parents before their children."""

    dispatch_id: int
    now: float


ChainOp = CancelChain
