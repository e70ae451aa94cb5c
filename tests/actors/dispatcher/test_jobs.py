"""The job table, loop-free: refreshed in place, returning what it was."""

from __future__ import annotations

from shepherd.actors.dispatcher.jobs import JobTable
from shepherd.store.models import JobRow, JobSpec

A = JobSpec(name="a", target="t", pool="p")
B = JobSpec(name="b", target="t")


def test_replace_refills_in_place_and_returns_the_old_specs() -> None:
    t = JobTable({1: A})
    same = t
    before = t.replace([JobRow(id=2, spec=B)])
    assert before == {1: A} and same == {2: B}
    assert t.name(2) == "b" and t.name(1) == "#1" and t.pool(2) is None


def test_refresh_updates_and_drops_only_the_ids_asked_for() -> None:
    t = JobTable({1: A, 2: B})
    changed = JobSpec(name="a", target="t", pool="q")
    before = t.refresh([1, 3, 2], {1: JobRow(id=1, spec=changed)})
    assert before == {1: A, 2: B, 3: None}
    assert t == {1: changed} and t.pool(1) == "q"
