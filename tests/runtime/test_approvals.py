"""Approval gates through the embedded Runtime (README "Approvals"), on real SQLite."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest

from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import (
    ApprovalPolicy,
    Config,
    ConfigError,
    Conflict,
    Delivery,
    JobSpec,
    NotFound,
    RetryPolicy,
    RunContext,
    Runtime,
)
from shepherd.store.models import Seconds
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]

RAN: list[Any] = []


async def record(ctx: RunContext) -> Any:
    RAN.append(ctx.payload.get("n"))
    return ctx.payload.get("n")


async def flaky(ctx: RunContext) -> Any:
    RAN.append(ctx.attempt)
    if ctx.attempt == 1:
        raise ValueError("first attempt fails")
    return "ok"


TARGETS = {"record": record, "flaky": flaky}
SINK = {"delivery": "none", "delivery_channel": "approvals"}


def gated(name: str = "deploy", target: str = "record", **policy: Any) -> JobSpec:
    return JobSpec(
        name=name,
        target=target,
        options=dict(SINK),
        approval=ApprovalPolicy(**policy),
        retry=RetryPolicy(max_attempts=3, base=0.0, max_delay=0.0),
    )


class Sink:
    def __init__(self) -> None:
        self.got: list[Delivery] = []

    async def __call__(self, d: Delivery) -> None:
        self.got.append(d)


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()


async def _runtime(db_path: str, clock: FakeClock | None = None) -> Any:
    cfg = Config(database=db_path, shutdown_grace=0)
    return Runtime.open(cfg, clock=clock, targets=TARGETS)


async def test_a_gated_dispatch_waits_then_runs_once_approved(db_path: str) -> None:
    sink = Sink()
    async with await _runtime(db_path) as rt:
        rt.register_delivery_sink("approvals", sink)
        await rt.add_job(gated())
        dispatch_id = await rt.enqueue("deploy", {"n": 1})
        assert (await rt.dispatch(dispatch_id)).status == "awaiting_approval"
        [a] = await rt.approvals(status="pending")
        assert (a.dispatch_id, a.job_name, a.kind, a.on_timeout) == (
            dispatch_id, "deploy", "enqueue", "reject",
        )  # fmt: skip
        stats = await rt.stats()
        assert stats["dispatches"]["awaiting_approval"] == 1
        assert stats["approvals_pending"] == 1
        await eventually(lambda: sink.got, what="the approval request")
        [req] = sink.got
        assert req.kind == "approval" and req.dispatch_id == dispatch_id
        assert f"shepherd approvals approve {a.id}" in req.body
        assert f"shepherd approvals reject {a.id} --reason" in req.body
        assert RAN == []
        approved = await rt.approve(a.id, by="alice")
        assert (approved.status, approved.resolved_by) == ("approved", "alice")
        final = await rt.wait(dispatch_id, timeout=10)
        assert final.status == "done" and RAN == [1]


async def test_rejected_dispatch_never_runs(db_path: str) -> None:
    async with await _runtime(db_path) as rt:
        await rt.add_job(gated())
        dispatch_id = await rt.enqueue("deploy", {"n": 2})
        [a] = await rt.approvals()
        rejected = await rt.reject(a.id, "not during the freeze", by="bob")
        assert (rejected.status, rejected.reason) == ("rejected", "not during the freeze")
        d = await rt.dispatch(dispatch_id)
        assert d.status == "cancelled"
        assert d.last_error == "rejected by bob: not during the freeze"
        with pytest.raises(Conflict, match=f"approval {a.id} is already rejected by bob"):
            await rt.approve(a.id, by="alice")
    assert RAN == []


async def test_two_approvers_one_run(db_path: str) -> None:
    async with await _runtime(db_path) as rt:
        await rt.add_job(gated())
        dispatch_id = await rt.enqueue("deploy", {"n": 3})
        [a] = await rt.approvals()
        results: list[Any] = []

        async def approve(who: str) -> None:
            try:
                results.append(await rt.approve(a.id, by=who))
            except Conflict as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(approve, "alice")
            tg.start_soon(approve, "carol")
        wins = [r for r in results if not isinstance(r, Conflict)]
        losses = [r for r in results if isinstance(r, Conflict)]
        assert len(wins) == 1 and len(losses) == 1
        assert f"already approved by {wins[0].resolved_by}" in str(losses[0])
        await rt.wait(dispatch_id, timeout=10)
        assert RAN == [3]
        with pytest.raises(NotFound):
            await rt.approve(9999)


async def test_timeout_rejects_by_default(db_path: str) -> None:
    clock = FakeClock()
    async with await _runtime(db_path, clock) as rt:
        await rt.add_job(gated(timeout=Seconds(60)))
        dispatch_id = await rt.enqueue("deploy", {"n": 4})
        await clock.advance_when_blocked(59)
        assert (await rt.dispatch(dispatch_id)).status == "awaiting_approval"
        await clock.advance_when_blocked(2)
        await clock.wait_idle()
        [a] = await rt.approvals()
        assert (a.status, a.resolved_by) == ("timed_out", "timeout")
        d = await rt.dispatch(dispatch_id)
        assert (d.status, d.last_error) == ("cancelled", "approval timed out")
    assert RAN == []


async def test_timeout_approves_when_on_timeout_says_so(db_path: str) -> None:
    clock = FakeClock()
    async with await _runtime(db_path, clock) as rt:
        await rt.add_job(gated(timeout=Seconds(30), on_timeout="approve"))
        first = await rt.enqueue("deploy", {"n": 5})
        await clock.advance_when_blocked(10)
        second = await rt.enqueue("deploy", {"n": 6})  # a later deadline, heard at once
        await clock.advance_when_blocked(21)
        await clock.wait_idle()
        assert (await rt.dispatch(first)).status == "done"
        assert (await rt.dispatch(second)).status == "awaiting_approval"
        await clock.advance_when_blocked(10)
        await clock.wait_idle()
        assert (await rt.dispatch(second)).status == "done"
        assert sorted(a.resolved_by or "" for a in await rt.approvals()) == ["timeout"] * 2
    assert RAN == [5, 6]


async def test_backlog_cancels_the_new_dispatch(db_path: str) -> None:
    async with await _runtime(db_path) as rt:
        await rt.add_job(gated(max_pending=2))
        ids = [await rt.enqueue("deploy", {"n": n}) for n in range(3)]
        states = [(await rt.dispatch(i)).status for i in ids]
        assert states == ["awaiting_approval", "awaiting_approval", "cancelled"]
        assert (await rt.dispatch(ids[2])).last_error == "approval-backlog"
        assert len(await rt.approvals(status="pending")) == 2


async def test_sources_choose_the_gated_kinds(db_path: str) -> None:
    async with await _runtime(db_path) as rt:
        await rt.add_job(gated())
        run_now = await rt.run_now("deploy", {"n": 7})  # default: an operator's run-now
        await rt.wait(run_now, timeout=10)
        await rt.add_job(gated("only-runs", sources=["run_now"]))
        plain = await rt.enqueue("only-runs", {"n": 8})
        await rt.wait(plain, timeout=10)
        held = await rt.run_now("only-runs", {"n": 9})
        assert (await rt.dispatch(held)).status == "awaiting_approval"
        await rt.add_job(JobSpec(name="free", target="record"))  # ungated work
        free = await rt.enqueue("free", {"n": 10})
        await rt.wait(free, timeout=10)
    assert RAN == [7, 8, 10]


async def test_a_retry_of_an_approved_dispatch_is_not_gated_again(db_path: str) -> None:
    async with await _runtime(db_path) as rt:
        await rt.add_job(gated(target="flaky"))
        dispatch_id = await rt.enqueue("deploy", {})
        [a] = await rt.approvals()
        await rt.approve(a.id)
        final = await rt.wait(dispatch_id, timeout=10)
        assert final.status == "done" and final.attempt == 2
        assert len(await rt.approvals()) == 1
    assert RAN == [1, 2]


async def test_cancel_and_job_removal_close_the_approval(db_path: str) -> None:
    async with await _runtime(db_path) as rt:
        await rt.add_job(gated())
        first = await rt.enqueue("deploy", {"n": 1})
        second = await rt.enqueue("deploy", {"n": 2})
        await rt.cancel(first)
        assert (await rt.dispatch(first)).status == "cancelled"
        await rt.remove_job("deploy")
        assert (await rt.dispatch(second)).status == "cancelled"
        assert {a.status for a in await rt.approvals()} == {"rejected"}
        assert await rt.approvals(status="pending") == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (dict(options={}), "options.delivery_to"),
        (dict(approval=ApprovalPolicy(sources=["nightly"])), "approval.sources[0]"),
        (dict(approval=ApprovalPolicy(sources=["retry"])), "approval.sources[0]"),
        (dict(approval=ApprovalPolicy(sources=[])), "approval.sources"),
        (dict(approval=ApprovalPolicy(timeout=Seconds(0.5))), "approval.timeout"),
        (dict(approval=ApprovalPolicy(max_pending=0)), "approval.max_pending"),
    ],
)
async def test_bad_approval_names_the_field_and_stores_nothing(
    db_path: str, spec: dict[str, Any], field: str
) -> None:
    base = dict(name="bad", target="record", options=dict(SINK), approval=ApprovalPolicy())
    async with await _runtime(db_path) as rt:
        with pytest.raises(ConfigError) as err:
            await rt.add_job(JobSpec(**{**base, **spec}))  # type: ignore[arg-type]
        assert err.value.field == field
        with pytest.raises(NotFound):
            await rt.get_job("bad")
        with pytest.raises(ConfigError) as err:
            await rt.reject(1, "  ")
        assert err.value.field == "reason"
        with pytest.raises(ConfigError) as err:
            await rt.approvals(status="maybe")
        assert err.value.field == "status"


async def test_a_gated_schedule_slot_waits_too(db_path: str) -> None:
    clock = FakeClock()
    async with await _runtime(db_path, clock) as rt:
        spec = msgspec.structs.replace(gated("tick"), every=Seconds(60))
        await rt.add_job(spec)
        await clock.advance_when_blocked(61)
        await clock.wait_idle()
        [a] = await rt.approvals()
        assert a.kind == "schedule"
        assert (await rt.dispatch(a.dispatch_id)).status == "awaiting_approval"
        await rt.approve(a.id)
        await clock.wait_idle()
        assert (await rt.dispatch(a.dispatch_id)).status == "done"
        assert len(await rt.runs(status="ok")) == 1


async def test_a_gated_chain_child_is_timed_and_requested_at_once(db_path: str) -> None:
    """A chain child committed by the dispatcher's finalize into a gated job: its request
    goes out and its timeout fires at the deadline, not at some later re-read."""
    clock = FakeClock()
    sink = Sink()
    async with await _runtime(db_path, clock) as rt:
        rt.register_delivery_sink("approvals", sink)
        await rt.add_job(JobSpec(name="build", target="record"))
        child = gated("ship", timeout=Seconds(5), on_timeout="approve", sources=["chain"])
        await rt.add_job(msgspec.structs.replace(child, parent="build", trigger_on="success"))
        parent = await rt.enqueue("build", {"n": 1})
        await rt.wait(parent, timeout=10)
        await clock.wait_idle()
        [a] = await rt.approvals(status="pending")
        assert a.kind == "chain"
        await clock.wait_idle()
        assert [d.kind for d in sink.got] == ["approval"]  # sent without waiting for a sweep
        await clock.advance_when_blocked(4.9)
        assert (await rt.dispatch(a.dispatch_id)).status == "awaiting_approval"
        await clock.advance_when_blocked(0.2)
        await clock.wait_idle()
        assert (await rt.dispatch(a.dispatch_id)).status == "done"
    assert RAN == [1, None]


async def test_a_request_not_yet_delivered_is_not_sent_once_decided(db_path: str) -> None:
    """The sink refused the request; the approval is decided before the retry: the
    retry does not go out (it would ask to decide something already settled), and the
    delivery ends ``failed`` saying why."""
    clock = FakeClock()
    tries: list[int] = []

    async def refusing(d: Delivery) -> None:
        tries.append(d.id)
        raise ConnectionError("the chat is down")

    async with await _runtime(db_path, clock) as rt:
        rt.register_delivery_sink("approvals", refusing)
        await rt.add_job(gated())
        dispatch_id = await rt.enqueue("deploy", {"n": 1})
        await clock.advance_when_blocked(0.1)
        assert len(tries) == 1  # the first send, refused: a retry is planned
        [a] = await rt.approvals(status="pending")
        await rt.reject(a.id, "not today", by="bob")
        await clock.advance_when_blocked(3600)  # past every retry
        assert len(tries) == 1
        [failed] = await rt.deliveries(status="failed")
        assert (failed.kind, failed.dispatch_id) == ("approval", dispatch_id)
        assert failed.last_error == (
            f"not sent: the approval was decided first (dispatch {dispatch_id} is cancelled)"
        )
