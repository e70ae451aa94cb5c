"""Supervisor: restart counts per strategy and restart type, intensity escalation."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.primitives.supervisor import ActorEvent, ChildSpec, Supervisor, add_restart
from shepherd.store.errors import ConfigError, DatabaseReplaced, StoreError, SupervisorEscalation

pytestmark = pytest.mark.anyio


class Child:
    """A test actor: counts starts, crashes on demand, records stop order."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.starts = 0
        self._crash: anyio.Event | None = None
        self._finish: anyio.Event | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.starts += 1
        self._crash = anyio.Event()
        self._finish = anyio.Event()
        self.log.append(f"start {self.name}")
        task_status.started()
        try:
            with anyio.CancelScope() as _:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._wait_finish, tg)
                    await self._crash.wait()
                    raise RuntimeError(f"{self.name} crashed")
        finally:
            self.log.append(f"stop {self.name}")

    async def _wait_finish(self, tg: Any) -> None:
        assert self._finish is not None
        await self._finish.wait()
        tg.cancel_scope.cancel()

    def crash(self) -> None:
        assert self._crash is not None
        self._crash.set()

    def finish(self) -> None:
        assert self._finish is not None
        self._finish.set()


async def _settle(clock: FakeClock) -> None:
    await clock.wait_idle()


def _sup(
    children: list[Child], clock: FakeClock, events: list[ActorEvent], **kw: Any
) -> Supervisor:
    specs = [
        ChildSpec(name=c.name, start=c.run, restart=kw.pop(f"restart_{c.name}", "permanent"))
        for c in children
    ]
    return Supervisor("sup", specs, clock=clock, on_event=events.append, **kw)


async def test_one_for_one_restarts_only_the_crashed_child() -> None:
    log: list[str] = []
    a, b, c = Child("a", log), Child("b", log), Child("c", log)
    events: list[ActorEvent] = []
    clock = FakeClock()
    sup = _sup([a, b, c], clock, events, strategy="one_for_one")
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        b.crash()
        await _settle(clock)
        assert (a.starts, b.starts, c.starts) == (1, 2, 1)
        assert sup.statistics()["restarts"] == 1
        assert any(e.kind == "exited" and e.reason == "crash" and e.child == "b" for e in events)
        sup.request_stop()
    assert log[-3:] == ["stop c", "stop b", "stop a"]  # stopped last-first


async def test_rest_for_one_restarts_the_crashed_child_and_those_after_it() -> None:
    log: list[str] = []
    a, b, c = Child("a", log), Child("b", log), Child("c", log)
    clock = FakeClock()
    sup = _sup([a, b, c], clock, [], strategy="rest_for_one")
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        b.crash()
        await _settle(clock)
        assert (a.starts, b.starts, c.starts) == (1, 2, 2)
        # c was stopped before b and c were started again, in order
        i = log.index("stop c")
        assert log[i : i + 3] == ["stop c", "start b", "start c"]
        sup.request_stop()


async def test_one_for_all_restarts_every_child() -> None:
    log: list[str] = []
    a, b = Child("a", log), Child("b", log)
    clock = FakeClock()
    sup = _sup([a, b], clock, [], strategy="one_for_all")
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        b.crash()
        await _settle(clock)
        assert (a.starts, b.starts) == (2, 2)
        sup.request_stop()


async def test_restart_types() -> None:
    log: list[str] = []
    perm, trans, temp = Child("perm", log), Child("trans", log), Child("temp", log)
    clock = FakeClock()
    sup = _sup(
        [perm, trans, temp],
        clock,
        [],
        strategy="one_for_one",
        restart_trans="transient",
        restart_temp="temporary",
        intensity=10,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        trans.finish()  # normal exit of a transient child: not restarted
        temp.crash()  # a temporary child is never restarted
        perm.finish()  # a permanent child is restarted even after a normal exit
        await _settle(clock)
        assert (perm.starts, trans.starts, temp.starts) == (2, 1, 1)
        trans_crash = Child("x", log)
        assert trans_crash.starts == 0
        sup.request_stop()


async def test_intensity_exceeded_escalates_and_stops_children_in_reverse() -> None:
    clock = FakeClock()
    log: list[str] = []
    a, b = Child("a", log), Child("b", log)
    events: list[ActorEvent] = []
    sup = _sup([a, b], clock, events, strategy="one_for_one", intensity=2, period=10.0)
    with pytest.raises(BaseExceptionGroup) as info:
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            for _ in range(3):
                b.crash()
                await clock.advance_when_blocked(1.0)
    (exc,) = info.value.exceptions  # the supervisor raises the escalation itself, unwrapped
    assert isinstance(exc, SupervisorEscalation)
    assert exc.child == "b" and "b crashed" in str(exc)
    assert b.starts == 3  # two restarts allowed, the third crash escalates
    assert log[-1] == "stop a"  # the survivors are stopped before escalating
    kinds = [e.kind for e in events]
    assert kinds.count("escalated") == 1
    assert kinds.index("escalated") < len(kinds) - 1 and kinds[-1] == "exited"


async def test_restarts_outside_the_window_do_not_count() -> None:
    clock = FakeClock()
    log: list[str] = []
    a = Child("a", log)
    sup = _sup([a], clock, [], intensity=1, period=5.0)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        for _ in range(4):
            a.crash()
            await clock.advance_when_blocked(6.0)  # each crash falls outside the last window
        assert a.starts == 5
        assert sup.statistics()["restarts_in_window"] == 0
        sup.request_stop()


def test_add_restart_window_is_sliding() -> None:
    window: tuple[float, ...] = ()
    window, exceeded = add_restart(window, 0.0, 2, 10.0)
    window, exceeded = add_restart(window, 5.0, 2, 10.0)
    assert not exceeded
    window, exceeded = add_restart(window, 9.0, 2, 10.0)
    assert exceeded
    window, exceeded = add_restart((0.0, 5.0), 10.5, 2, 10.0)
    assert window == (5.0, 10.5) and not exceeded


def test_specs_are_validated() -> None:
    async def start(*, task_status: Any) -> None: ...

    with pytest.raises(ConfigError, match="restart"):
        ChildSpec(name="x", start=start, restart="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="shutdown"):
        ChildSpec(name="x", start=start, shutdown=-1)
    with pytest.raises(ConfigError, match="strategy"):
        Supervisor("s", [], strategy="all_for_none")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unique"):
        Supervisor("s", [ChildSpec(name="x", start=start), ChildSpec(name="x", start=start)])


async def test_repr_and_statistics() -> None:
    log: list[str] = []
    a = Child("a", log)
    sup = _sup([a], FakeClock(), [])
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        assert repr(sup) == "<Supervisor sup one_for_one 1/1 up restarts=0>"
        assert sup.statistics()["children"]["a"] == {"running": True, "starts": 1}
        sup.request_stop()


async def test_a_full_exit_stream_delays_exits_and_never_drops_one() -> None:
    """More children crash at once than the exit stream holds while the supervisor is
    busy restarting another child: every exit still arrives, every crash is restarted."""
    n = 1100  # more than the stream's room (EXIT_BUFFER = 1000)
    starts: dict[str, int] = {}
    gate_crash, gate_hold, crash_all = anyio.Event(), anyio.Event(), anyio.Event()

    async def gate(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        starts["gate"] = starts.get("gate", 0) + 1
        if starts["gate"] == 2:
            await gate_hold.wait()  # the supervisor waits in this restart
        task_status.started()
        if starts["gate"] == 1:
            await gate_crash.wait()
            raise RuntimeError("gate crashed")
        await anyio.sleep_forever()

    def crasher(name: str) -> Any:
        async def run(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            starts[name] = starts.get(name, 0) + 1
            task_status.started()
            if starts[name] == 1:
                await crash_all.wait()
                raise RuntimeError(f"{name} crashed")
            await anyio.sleep_forever()

        return run

    specs = [ChildSpec(name="gate", start=gate)]
    specs += [ChildSpec(name=f"c{i}", start=crasher(f"c{i}")) for i in range(n)]
    clock = FakeClock()
    sup = Supervisor("sup", specs, intensity=10 * n, period=3600.0, clock=clock)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        gate_crash.set()
        await _settle(clock)
        assert starts["gate"] == 2  # stuck in its restart
        crash_all.set()
        await _settle(clock)  # every crasher has exited; the stream is full
        assert not any(sup.statistics()["children"][f"c{i}"]["running"] for i in range(n))
        gate_hold.set()
        await _settle(clock)
        stats = sup.statistics()
        assert [starts[f"c{i}"] for i in range(n)] == [2] * n
        assert stats["restarts"] == n + 1 and stats["crashes"] == n + 1
        assert stats["exits_waited"] == n - 1000
        sup.request_stop()


async def test_a_store_fault_is_logged_without_a_traceback_a_bug_with_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A crash from a ``StoreError`` (a full disk, a read-only file) is a fault of the
    machine, said in one line; any other exception is a bug and keeps its traceback."""

    class Faulty(Child):
        async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            raise StoreError("db: disk is full")

    async def crash_once(child: Child) -> dict[str, Any]:
        clock = FakeClock()
        caplog.clear()
        sup = _sup([child], clock, [], strategy="one_for_one", intensity=0, period=10.0)
        with (
            caplog.at_level("ERROR", logger="shepherd.supervisor"),
            pytest.raises(BaseExceptionGroup),
        ):
            async with anyio.create_task_group() as tg:
                await tg.start(sup.run)
                if not isinstance(child, Faulty):
                    child.crash()
                await clock.advance_when_blocked(1.0)
        [record] = [r for r in caplog.records if "crashed" in r.getMessage()]
        return {"exc_info": record.exc_info, "message": record.getMessage()}

    fault = await crash_once(Faulty("fault", []))
    assert fault["exc_info"] is None and "disk is full" in fault["message"]
    bug = await crash_once(Child("bug", []))
    assert bug["exc_info"] is not None and "bug crashed" in bug["message"]


@pytest.mark.parametrize(
    ("cause", "waited"), [(DatabaseReplaced("x.db-wal was removed"), 1.0), (OSError("bug"), 30.0)]
)
async def test_a_store_that_cannot_commit_again_stops_the_tree_without_the_grace(
    cause: BaseException, waited: float
) -> None:
    """Escalated for a file replaced or damaged under the store, the children are not
    given their shutdown grace (nothing they finish could be committed): each is
    cancelled after ``HASTY_STOP``. Any other escalation waits the grace out."""
    clock = FakeClock()
    asked: list[str] = []

    async def slow(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()  # asked to stop, it never finishes on its own

    async def broken(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        raise cause

    specs = [
        ChildSpec(name="slow", start=slow, shutdown=30.0, stop=lambda: asked.append("slow")),
        ChildSpec(name="broken", start=broken),
    ]
    sup = Supervisor("root", specs, clock=clock, intensity=1, period=60.0)
    began = clock.now()
    with pytest.raises(BaseExceptionGroup) as info:
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            while True:
                await clock.advance_when_blocked(0.5)
    (exc,) = info.value.exceptions
    assert isinstance(exc, SupervisorEscalation) and exc.cause is cause
    assert asked == ["slow"]  # asked to stop all the same
    assert clock.now() - began == pytest.approx(waited, abs=0.6)
