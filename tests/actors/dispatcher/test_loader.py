"""The loader, without a dispatcher loop, over a store double: loading jobs and the
queue, and the one reload per pass however many Pokes it held."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest

from shepherd.actors.dispatcher.jobs import JobTable
from shepherd.actors.dispatcher.loader import Loader
from shepherd.actors.dispatcher.ready import ReadyQueue
from shepherd.actors.messages import Entry, Poke
from shepherd.store.models import Dispatch, JobRow, JobSpec
from shepherd.store.protocol import Store

pytestmark = pytest.mark.anyio


def dispatch(dispatch_id: int, seq: int, job_id: int = 1) -> Dispatch:
    return Dispatch(
        id=dispatch_id,
        seq=seq,
        job_id=job_id,
        job_name=f"j{job_id}",
        kind="enqueue",
        status="queued",
        priority="normal",
        not_before=0.0,
        expires_at=None,
        attempt=0,
        max_attempts=3,
        payload=None,
        idempotency_key=None,
        slot=None,
        parent_run_id=None,
        created_at=0.0,
        updated_at=0.0,
    )


class StoreDouble:
    def __init__(self) -> None:
        self.rows = [JobRow(id=1, spec=JobSpec(name="j1", target="t"))]
        self.queued: list[Dispatch] = []
        self.cancels: list[tuple[int, str]] = []
        self.calls: list[tuple[str, Any]] = []

    async def jobs(self) -> list[JobRow]:
        self.calls.append(("jobs", None))
        return list(self.rows)

    async def jobs_by_id(self, ids: Sequence[int]) -> dict[int, JobRow]:
        self.calls.append(("jobs_by_id", list(ids)))
        return {r.id: r for r in self.rows if r.id in ids}

    async def queued_since(
        self, after_seq: int, *, exclude_origin: str | None = None
    ) -> list[Dispatch]:
        self.calls.append(("queued_since", (after_seq, exclude_origin)))
        return [d for d in self.queued if d.seq > after_seq]

    async def cancel_requests(self) -> list[tuple[int, str]]:
        self.calls.append(("cancel_requests", None))
        return list(self.cancels)


class Rig:
    def __init__(self) -> None:
        self.store = StoreDouble()
        self.jobs = JobTable()
        self.added: list[Entry] = []
        self.counters = {"reloads": 0}
        self.loader = Loader(
            store=cast(Store, self.store),
            instance="me",
            jobs=self.jobs,
            queue=ReadyQueue(),
            add=self.added.append,
            counters=self.counters,
        )


async def test_the_queue_is_read_past_the_newest_seq_and_an_unknown_job_is_loaded() -> None:
    rig = Rig()
    await rig.loader.jobs()
    rig.store.queued = [dispatch(10, 5), dispatch(11, 9, job_id=2)]
    rig.store.rows.append(JobRow(id=2, spec=JobSpec(name="j2", target="t")))
    await rig.loader.queued()
    assert [e.id for e in rig.added] == [10, 11] and rig.loader.seq == 9
    assert 2 in rig.jobs  # dispatch 11's job was not known: all jobs read again
    assert rig.store.calls.count(("jobs", None)) == 2


async def test_a_changed_jobs_reload_reads_only_those() -> None:
    rig = Rig()
    await rig.loader.jobs([1])
    assert rig.store.calls == [("jobs_by_id", [1])] and 1 in rig.jobs


async def test_one_reload_covers_every_poke_of_a_pass() -> None:
    rig = Rig()
    await rig.loader.jobs()
    rig.store.calls.clear()
    assert not rig.loader.pending
    rig.loader.note(Poke())  # a bare wake-up: nothing to read
    assert not rig.loader.pending
    rig.loader.note(Poke(dispatches=True))
    rig.loader.note(Poke(cancels=True))
    rig.loader.note(Poke(dispatches=True))
    rig.store.queued = [dispatch(10, 5)]
    rig.store.cancels = [(10, "queued"), (12, "running")]
    assert await rig.loader.reload() == [(12, "operator")]  # only the running ones, here
    assert rig.counters["reloads"] == 1 and not rig.loader.pending
    assert rig.store.calls == [("queued_since", (0, "me")), ("cancel_requests", None)]
    assert [e.id for e in rig.added] == [10]
    rig.store.calls.clear()
    rig.loader.note(Poke(dispatches=True))
    assert await rig.loader.reload() == []
    assert rig.store.calls == [("queued_since", (5, "me"))]  # past the newest seq read
