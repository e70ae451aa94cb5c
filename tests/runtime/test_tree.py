"""The tree as data (``runtime/tree.py``), its event routes, the ``Runtime`` façade, and
re-adding a one-shot job (``runtime.jobs.keep_ended``): loop-free where they can be."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from shepherd.actors.messages import ApprovalsHeld, Outcome, OutcomeEvent, Poke, SlotRecord
from shepherd.actors.primitives.mailbox import Mailbox
from shepherd.actors.router import Routed
from shepherd.runtime import Config, JobSpec, Runtime
from shepherd.runtime._jobs_api import JobsApi
from shepherd.runtime._queries_api import QueriesApi
from shepherd.runtime.events import EventHub
from shepherd.runtime.jobs import keep_ended
from shepherd.runtime.messaging import Messaging
from shepherd.runtime.tree import INBOXES, ROUTES, STRATEGY, TREE, Fanout, Inboxes, capacity
from shepherd.store.models import JobRow

NOW = 1_800_000_000.0
PAST = "2027-01-15T07:00:00+00:00"  # an hour before NOW


# -- the tree as data --------------------------------------------------------------------


def test_the_tree_starts_writer_first_router_before_dispatcher_ingest_after_both() -> None:
    names = [c.name for c in TREE]
    assert names == [
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
    assert STRATEGY == "rest_for_one"
    assert all(c.restart == "permanent" and c.why for c in TREE)
    assert [c.name for c in TREE if c.plus_grace] == ["dispatcher", "http"]


def test_every_mailbox_is_sized_for_what_flows_in_with_a_reason() -> None:
    assert {i.name for i in INBOXES} == {
        "store", "router", "dispatcher", "scheduler", "pruner", "groups", "approvals",
    }  # fmt: skip
    assert all(i.why and 0 < i.capacity < 100_000 for i in INBOXES)
    assert capacity("dispatcher", 64) == 4_096 + 64  # room for every running run's outcome
    assert capacity("dispatcher", 1_000) == 4_096 + 1_000
    assert capacity("store", 1_000) == 4_096 and capacity("pruner", 64) == 16
    inboxes = Inboxes(concurrency=10)
    assert inboxes.dispatcher.statistics()["capacity"] == 4_106
    assert inboxes.router.statistics()["capacity"] == 16_384


def _outcome(**kw: Any) -> OutcomeEvent:
    base: dict[str, Any] = dict(
        dispatch_id=7, job="j", run_id=3, attempt=1, outcome="ok", status="done", final=True,
        at=NOW, job_id=2,
    )  # fmt: skip
    return OutcomeEvent(**{**base, **kw})


def test_fanout_follows_the_routes_and_counts_what_a_full_inbox_drops() -> None:
    router: Mailbox[Any] = Mailbox("router", 10)
    scheduler: Mailbox[Any] = Mailbox("scheduler", 1)
    hub = EventHub()
    approvals: Mailbox[Any] = Mailbox("approvals", 10)
    fan = Fanout(
        hub,
        {
            "router": router.address(),
            "scheduler": scheduler.address(),
            "approvals": approvals.address(),
        },
    )
    assert [r.listener for r in ROUTES] == ["router", "approvals", "scheduler"]

    fan.publish(_outcome())  # a run's outcome: the router only
    assert isinstance(router.receive_nowait(), Routed)
    assert scheduler.statistics()["depth"] == 0

    fan.publish(_outcome(run_id=None, status="cancelled", outcome="cancelled"))  # no run
    assert router.statistics()["depth"] == 0
    fan.publish(_outcome(announce=False))  # a run its job does not announce: nobody
    assert router.statistics()["depth"] == 0
    fan.publish(_outcome(announce=False, status="dead", outcome="error"))  # its alert row
    assert isinstance(router.receive_nowait(), Routed)

    fan.publish(_outcome(kind="schedule", slot=NOW))  # both
    assert isinstance(router.receive_nowait(), Routed)
    got = scheduler.receive_nowait()
    assert isinstance(got, Outcome) and (got.dispatch_id, got.slot) == (7, NOW)

    fan.publish(_outcome(kind="schedule", final=False, status="queued"))  # a retry: router
    assert scheduler.statistics()["depth"] == 0
    fan.publish(SlotRecord(job="j", reason="missed"))  # subscribers only
    assert router.statistics()["depth"] == 1

    fan.publish(ApprovalsHeld(dispatch_ids=[4]))  # chain children held: the approvals actor
    assert approvals.receive_nowait() == Poke(approvals=True)
    assert router.statistics()["depth"] == 1 and scheduler.statistics()["depth"] == 0

    fan.publish(_outcome(kind="schedule"))
    fan.publish(_outcome(kind="schedule"))  # the scheduler's one slot is taken
    assert fan.statistics() == {"routes_dropped": {"router": 0, "scheduler": 1, "approvals": 0}}
    assert hub.statistics()["published"] == 10


# -- the façade ------------------------------------------------------------------------

API = {
    JobsApi: "add_job update_job set_enabled enable disable remove_job run_now next_fires "
    "get_job list_jobs enqueue enqueue_many",
    QueriesApi: "wait cancel dispatch dispatches runs run dead_letters retry_dead purge_dead",
    Messaging: "register_delivery_sink deliver deliveries retry_deliveries send_message "
    "inbox messages mark_delivered mark_read",
}


def test_runtime_is_a_facade_without_mixins() -> None:
    assert Runtime.__mro__ == (Runtime, object)


@pytest.mark.anyio
async def test_each_call_is_its_collaborators_method(db_path: str) -> None:
    async with Runtime.open(Config(database=db_path)) as rt:
        for part, names in API.items():
            for name in names.split():
                method = getattr(rt, name)
                assert isinstance(method.__self__, part), name
                assert inspect.signature(method) == inspect.signature(getattr(part, name)).replace(
                    parameters=list(inspect.signature(getattr(part, name)).parameters.values())[1:]
                ), name
        assert (await rt.add_job(JobSpec(name="x", executor="shell", target="true"))).name == "x"
        assert [j.name for j in await rt.list_jobs()] == ["x"]


# -- re-adding a one-shot job ------------------------------------------------------------


def _row(at: str, *, enabled: bool, last_run_at: float | None = None) -> JobRow:
    spec = JobSpec(name="once", executor="shell", target="true", at=at, enabled=enabled)
    return JobRow(id=1, spec=spec, last_run_at=last_run_at)


def _spec(at: str, **kw: Any) -> JobSpec:
    return JobSpec(name="once", executor="shell", target="true", at=at, **kw)


def test_a_one_shot_that_ended_stays_disabled_when_added_again() -> None:
    ended = _row(PAST, enabled=False, last_run_at=NOW - 3600)
    assert keep_ended(_spec(PAST), ended, NOW).enabled is False
    assert keep_ended(_spec("in 10m"), ended, NOW) == _spec(PAST, enabled=False)


def test_a_new_instant_or_a_pending_one_shot_is_left_alone() -> None:
    ended = _row(PAST, enabled=False)
    later = "2027-01-16T08:00:00+00:00"
    assert keep_ended(_spec(later), ended, NOW) == _spec(later)  # moved: it runs again
    assert keep_ended(_spec(PAST), None, NOW) == _spec(PAST)  # new job
    pending = _row(later, enabled=False)  # disabled before its (future) instant
    assert keep_ended(_spec(later), pending, NOW) == _spec(later)
    armed = _row(later, enabled=True)
    assert keep_ended(_spec("in 10m"), armed, NOW) == _spec(later)  # a restart keeps it
    recurring = JobRow(id=1, spec=JobSpec(name="once", target="t", every=60.0))
    assert keep_ended(_spec("in 10m"), recurring, NOW) == _spec("in 10m")
