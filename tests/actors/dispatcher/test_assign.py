"""Dispatch's score (SEMANTICS D14) as pure functions, and the agent table's indexed
choice checked against the plain scan (``assign.best``)."""

from __future__ import annotations

import random

import pytest

from shepherd.actors.dispatcher import assign
from shepherd.actors.dispatcher.agents import AgentTable
from shepherd.actors.messages import Entry
from shepherd.store.models import Agent, JobSpec


def _score(status: str, policy: str = "always-on", running: int = 0, p: int = 10) -> float:
    return assign.score(
        ["a"], ["a"], status=status, policy=policy, running=running, max_concurrent=3, priority=p
    )


def test_dispatch_values() -> None:
    assert _score("ready") == pytest.approx(1.5)  # always-on ready at priority 10
    assert _score("busy", running=3) == 0.0  # busy at its limit
    assert _score("ready", running=3) == 0.0  # any agent at its limit
    assert _score("degraded") == 0.0
    assert _score("draining") == 0.0
    assert _score("offline") == 0.0
    assert _score("sleeping", p=0) == pytest.approx(0.8)
    assert _score("busy", running=1, p=0) == pytest.approx(0.5)
    assert _score("ready", running=1, p=0) == pytest.approx(0.5)  # a run in flight: busy
    assert _score("ready", "on-demand", p=0) == pytest.approx(0.9)
    assert _score("sleeping", "on-demand", p=10) == pytest.approx(0.8 * 0.6 * 1.5)
    assert _score("busy", "on-demand", running=2, p=5) == pytest.approx(0.5 * 0.9 * 1.25)


def test_capability_match_is_all_or_nothing() -> None:
    assert assign.capability_match([], ["x"]) == 1.0
    assert assign.capability_match(["x", "y"], ["x", "y", "z"]) == 1.0
    assert assign.capability_match(["x", "y"], ["x"]) == 0.0
    assert assign.capability_match(["x"], ["*"]) == 1.0
    assert [assign.priority_weight(p) for p in assign.LEVEL_PRIORITY] == [1.5, 1.4, 1.25, 1.15, 1.0]


def _agent(i: str, caps: list[str], **kw: object) -> Agent:
    base: dict[str, object] = {"status": "ready", "policy": "always-on", "max_concurrent": 3}
    base.update({"rev": 1, **kw})
    return Agent(id=i, name=i, capabilities=caps, **base)  # type: ignore[arg-type]


def _entry(n: int, needs: tuple[str, ...] = (), owner: str | None = None) -> Entry:
    return Entry(
        id=n, seq=n, job_id=1, priority=2, not_before=0, attempt=0, max_attempts=3,
        needs=needs, owner=owner,
    )  # fmt: skip


JOB = JobSpec(name="j")


def test_table_picks_the_best_then_fewest_running_then_name() -> None:
    t = AgentTable()
    t.load([_agent("b", ["x"]), _agent("a", ["x"]), _agent("c", ["x"], policy="on-demand")])
    need = t.need(_entry(1, ("x",)), JOB)
    assert need is not None
    picks = []
    for n in range(1, 10):
        s = t.choose(need)
        if s is None:
            break
        t.hold(_entry(n, ("x",)), s)
        picks.append(s.id)
    # ready a, b (1.0, by name), then the on-demand c (0.9) over busy a/b (0.5), then
    # busy (0.5 over 0.45), fewest running first; 9 slots in all
    assert picks == ["a", "b", "c", "a", "b", "a", "b", "c", "c"]
    assert t.choose(need) is None  # everyone at the limit
    assert t.release(1) == [need.key]  # a's slot is free: the key is handed on
    assert t.choose(need).id == "a"  # type: ignore[union-attr]


def test_degraded_draining_offline_never_chosen_and_wildcard_matches() -> None:
    t = AgentTable()
    t.load([
        _agent("d", ["x"], status="degraded"),
        _agent("r", ["x"], status="draining"),
        _agent("o", ["x"], status="offline"),
    ])  # fmt: skip
    need = t.need(_entry(1, ("x",)), JOB)
    assert need is not None and t.choose(need) is None
    assert need.reason == "unmatched: needs [x]"
    keys, _ = t.load([_agent("star", ["*"], rev=2)])
    assert keys == [need.key] * 3  # three free slots offered to the waiters
    assert t.choose(need).id == "star"  # type: ignore[union-attr]


def test_offline_cancels_held_runs_and_removal_forgets() -> None:
    t = AgentTable()
    t.load([_agent("a", ["x"])])
    need = t.need(_entry(1, ("x",)), JOB)
    assert need is not None
    t.hold(_entry(1), t.choose(need))  # type: ignore[arg-type]
    _, cancel = t.load([_agent("a", ["x"], status="offline", rev=2)])
    assert cancel == [1]
    assert t.choose(need) is None
    gone = Agent(id="a", name="a", capabilities=[], status="ready", policy="always-on",
                 max_concurrent=3, rev=3, removed=True)  # fmt: skip
    _, cancel = t.load([gone])
    assert len(t) == 0 and t.release(1) == []


def test_a_run_a_worker_claimed_counts_on_its_agent() -> None:
    t = AgentTable()
    t.load([_agent("a", ["x"], max_concurrent=1), _agent("b", ["x"], max_concurrent=1)])
    need = t.need(_entry(1, ("x",)), JOB)
    assert need is not None
    assert t.take_over(7, "a") == []  # a's worker claimed dispatch 7's run: a is full
    assert t.choose(need).id == "b"  # type: ignore[union-attr]
    assert t.take_over(7, "b") == [need.key]  # claimed again by b: a's slot is free
    assert t.choose(need).id == "a"  # type: ignore[union-attr]
    assert t.take_over(8, "nobody") == []  # a worker that is no registered agent
    _, cancel = t.load([_agent("b", ["x"], status="offline", rev=2)])
    assert cancel == [7]  # its runs go with an agent that goes offline
    assert t.release(7) == [] and t.release(8) == []
    assert t.take_notes(0.0) is None  # the claims are recorded by the batch


def test_owner_filter_restricts_candidates() -> None:
    t = AgentTable(owners={"bob": ["b"]})
    t.load([_agent("a", ["x"]), _agent("b", ["x"])])
    need = t.need(_entry(1, ("x",), owner="bob"), JOB)
    assert need is not None and t.choose(need).id == "b"  # type: ignore[union-attr]
    need = t.need(_entry(2, ("x",), owner="carol"), JOB)  # owns no agent
    assert need is not None and t.choose(need) is None
    assert need.reason == "unmatched: needs [x] for owner carol"


def test_degraded_after_consecutive_failures() -> None:
    t = AgentTable()
    t.configure({}, 2)
    t.load([_agent("a", ["x"])])
    t.on_outcome("a", "error")
    t.on_outcome("a", "ok")  # a success resets the count
    t.on_outcome("a", "error")
    assert t.get("a").status == "ready"  # type: ignore[union-attr]
    t.on_outcome("a", "timeout")
    assert t.get("a").status == "degraded"  # type: ignore[union-attr]
    notes = t.take_notes(0.0)
    assert notes is not None and notes.states[-1].status == "degraded"


def test_table_agrees_with_the_plain_scan() -> None:
    rng = random.Random(7)
    caps = ["a", "b", "c", "d"]
    statuses = ["ready", "ready", "sleeping", "busy", "degraded", "draining"]
    agents = [
        _agent(
            f"ag{i:02d}",
            rng.sample(caps, rng.randint(1, 3)),
            status=rng.choice(statuses),
            policy=rng.choice(["always-on", "on-demand"]),
            max_concurrent=rng.randint(1, 3),
        )
        for i in range(30)
    ]
    t = AgentTable()
    t.load(agents)
    held: list[int] = []
    for n in range(1, 400):
        if held and rng.random() < 0.4:
            t.release(held.pop(rng.randrange(len(held))))
            continue
        needs = tuple(sorted(rng.sample(caps, rng.randint(1, 2))))
        need = t.need(_entry(n, needs), JOB)
        assert need is not None
        got = t.choose(need)
        slots = [t.get(a.id) for a in agents]
        want = assign.best([s for s in slots if s is not None], needs, 5)
        assert (got.id if got else None) == (want.id if want else None), n
        if got is not None:
            t.hold(_entry(n, needs), got)
            held.append(n)
