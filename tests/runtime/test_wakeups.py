"""Wake-ups from other processes, through the embedded runtime.

A runtime that is starting picks up what other processes commit before its wake
socket is bound: the dispatcher and the scheduler load the store before the ingest actor binds the
socket; a CLI command that commits in that window finds nobody to wake. The tests put
a commit exactly there (a wrapper around ``Ingest.run`` commits through the CLI's own
path, then binds), so the outcome does not depend on timing.

Many wake-ups waiting at once cost the dispatcher one reload, not one each.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from shepherd.actors.ingest import Ingest, send_wake
from shepherd.actors.messages import Poke
from shepherd.runtime import Config, JobSpec, RunContext, Runtime
from shepherd.runtime._cli_jobs import _remove, save_jobs
from shepherd.runtime._cli_ops import enqueue_one
from shepherd.runtime._cli_schedule import _change
from shepherd.store.errors import ConfigError
from shepherd.store.models import EnqueueRequest
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]


async def noop(ctx: RunContext) -> None:
    return None


def commit_before_bind(
    monkeypatch: pytest.MonkeyPatch, db_path: str, commit: Callable[[], Awaitable[Any]]
) -> list[Any]:
    """Make the ingest actor run ``commit`` (another store connection, as the CLI opens
    one) just before it binds its socket; what ``commit`` returned is appended."""
    original = Ingest.run
    got: list[Any] = []

    async def late_bind(
        self: Ingest, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        got.append(await commit())
        assert not send_wake(db_path), "the wake socket must not be bound yet"
        await original(self, task_status=task_status)

    monkeypatch.setattr(Ingest, "run", late_bind)
    return got


async def test_dispatch_committed_before_the_socket_is_bound_runs(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = Config(database=db_path)
    async with Runtime.open(cfg, targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="noop", target="noop"))

    req = EnqueueRequest(job="noop")
    got = commit_before_bind(monkeypatch, db_path, lambda: enqueue_one(cfg, req, time.time()))
    async with Runtime.open(cfg, targets={"noop": noop}) as rt:
        [(dispatch_id, duplicate)] = got
        assert not duplicate
        final = await rt.wait(dispatch_id, timeout=5)
        assert final.status == "done"


async def test_job_saved_before_the_socket_is_bound_is_scheduled(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = Config(database=db_path)
    async with Runtime.open(cfg, targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="noop", target="noop"))

    hourly = JobSpec(name="hourly", target="noop", every=3600.0)
    got = commit_before_bind(monkeypatch, db_path, lambda: save_jobs(cfg, [hourly], time.time()))
    async with Runtime.open(cfg, targets={"noop": noop}) as rt:
        [[row]] = got
        assert row.next_run_at is not None

        def scheduler_knows() -> bool:
            s = rt.statistics()["scheduler"]  # "jobs": those with a schedule
            return bool(s["jobs"] == 1 and s["next_due"] == row.next_run_at)

        await eventually(scheduler_knows, timeout=5, what="the scheduler to load 'hourly'")


@pytest.mark.engines("sqlite")  # it traces the SQLite reader's statements
async def test_pokes_waiting_together_cost_one_reload(db_path: str) -> None:
    cfg = Config(database=db_path)
    async with Runtime.open(cfg, targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="noop", target="noop"))
        now = time.time()
        # committed by another process whose wake-ups have not been read yet
        ids = [(await enqueue_one(cfg, EnqueueRequest(job="noop"), now))[0] for _ in range(20)]
        reloads: list[str] = []

        def seen(sql: str) -> None:
            if "status = 'queued' AND seq >" in sql:
                reloads.append(sql)

        await rt.store._reader.set_trace_callback(seen)  # the dispatcher's reads
        for _ in range(50):  # all waiting in the mailbox before the dispatcher runs
            rt._dispatcher.tell(Poke(dispatches=True))
        for dispatch_id in ids:
            assert (await rt.wait(dispatch_id, timeout=5)).status == "done"
        # two round trips through the dispatcher: the pokes' batch is over
        await rt.cancel(10**9)
        await rt.cancel(10**9)
        await rt.store._reader.set_trace_callback(None)
        assert len(reloads) == 1, reloads


async def test_job_disabled_by_another_process_is_refused_at_enqueue(db_path: str) -> None:
    """The enqueue path holds the jobs it looked up; a job that another process (the
    CLI, another node) disables is refused by the next enqueue once its wake-up is heard,
    and nothing is stored for it."""
    cfg = Config(database=db_path)
    async with Runtime.open(cfg, targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="noop", target="noop"))
        first = await rt.enqueue("noop")  # the job is now held by the enqueue path
        ingest = rt._actors["ingest"]
        pokes = ingest.pokes
        await _change(cfg, "noop", lambda old: {**old, "enabled": False})  # `jobs disable`
        await eventually(lambda: ingest.pokes > pokes, timeout=5, what="the jobs wake-up")
        with pytest.raises(ConfigError, match="is disabled"):
            await rt.enqueue("noop")
        assert [d.id for d in await rt.store.dispatches(limit=10)] == [first]


async def test_job_removed_and_added_again_by_another_process_is_the_new_one(
    db_path: str,
) -> None:
    """``jobs rm x; jobs add x`` from the CLI while a daemon serves the file: the next
    enqueue is a dispatch of the new job (it runs), not of the removed one."""
    cfg = Config(database=db_path)
    async with Runtime.open(cfg, targets={"noop": noop, "other": noop}) as rt:
        old = await rt.add_job(JobSpec(name="x", target="noop"))
        assert (await rt.wait(await rt.enqueue("x"), timeout=5)).status == "done"
        ingest = rt._actors["ingest"]
        pokes = ingest.pokes
        await _remove(cfg, "x")
        [new] = await save_jobs(cfg, [JobSpec(name="x", target="other")], time.time())
        send_wake(db_path, "jc")  # what `jobs rm` and `jobs add` send (PostgreSQL: NOTIFY)
        await eventually(lambda: ingest.pokes > pokes, timeout=5, what="the jobs wake-up")
        dispatch_id = await rt.enqueue("x")
        final = await rt.wait(dispatch_id, timeout=5)
        assert (final.job_id, final.status) == (new.id, "done") and new.id != old.id
