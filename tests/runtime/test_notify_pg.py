"""Wake-ups on PostgreSQL for every change a node must learn of, not only dispatches:
what another node (a second ``PgStore``: the CLI, another node's REST API) or plain SQL
commits reaches a running runtime by NOTIFY, with no wake-up datagram.

- each table a node reads on a wake-up notifies its flag on commit (jobs ``j``,
  approvals ``a``, agents ``A``, task groups and their members ``g``, pauses ``p``);
  the scheduler's own bookkeeping of a job (next fire time, last run) and a statement
  that changed no row notify nothing;
- a job saved through another store reaches the running runtime's scheduler, which
  fires it within a deadline;
- a pause set from another store holds the job's queued dispatch on the running node,
  and its removal there starts it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import anyio
import asyncpg
import pytest

from shepherd.runtime import Config, JobSpec, RunContext, Runtime
from shepherd.runtime._cli_ops import enqueue_one
from shepherd.runtime.jobs import save_op
from shepherd.store.factory import open_store
from shepherd.store.models import EnqueueRequest
from shepherd.store.ops import ClearPauses, SetPause
from shepherd.store.protocol import Store
from tests.helpers import eventually

pytestmark = pytest.mark.anyio


class Seen:
    def __init__(self) -> None:
        self.names: list[str] = []

    async def __call__(self, ctx: RunContext) -> None:
        self.names.append(ctx.job.name)


async def _flags_until(store: Store, flag: str) -> set[str]:
    """Every flag the store's wake-ups yield up to and including the pass with ``flag``."""
    seen: set[str] = set()
    with anyio.fail_after(10):
        async for flags in store.wakeups():
            seen.update(flags)
            if flag in flags:
                return seen
    raise AssertionError("the wake-ups ended")


async def test_each_table_a_node_reads_on_a_wake_up_notifies_its_flag(pg_url: str) -> None:
    store = await open_store(pg_url)
    sql = await asyncpg.connect(pg_url)
    try:
        await store.newest_seq()  # LISTENs before its read: every later commit is heard
        [job_id] = await store.apply([save_op(JobSpec(name="j1", target="t"), time.time())])
        assert await _flags_until(store, "j") == {"j"}
        # the scheduler's bookkeeping and statements that changed nothing: silent, so
        # the pause notified after them is all the next pass holds
        await sql.execute(
            "UPDATE jobs SET next_run_at = 1, last_run_at = 2, last_status = 'ok',"
            " consecutive_errors = 0, updated_at = 3 WHERE id = $1",
            job_id,
        )
        await sql.execute("DELETE FROM pauses WHERE scope = 'job'")
        await sql.execute("UPDATE agents SET failures = 1")
        await sql.execute("INSERT INTO pauses (scope, name, paused_at) VALUES ('runtime', '', 0)")
        assert await _flags_until(store, "p") == {"p"}
        writes = [
            ("UPDATE jobs SET enabled = 0", "j"),
            ("DELETE FROM jobs WHERE name = 'j1'", "j"),
            (
                "INSERT INTO approvals (dispatch_id, job_id, job_name, status, on_timeout,"
                " requested_at, deadline) VALUES (1, 1, 'j1', 'pending', 'reject', 0, 9)",
                "a",
            ),
            ("UPDATE approvals SET status = 'approved'", "a"),
            (
                "INSERT INTO agents (id, name, rev, created_at, updated_at)"
                " VALUES ('a1', 'a1', nextval('agent_rev'), 0, 0)",
                "A",
            ),
            ("DELETE FROM agents", "A"),
            (
                "INSERT INTO task_groups (name, timeout, heartbeat_window, created_at,"
                " updated_at) VALUES ('g', 60, 30, 0, 0)",
                "g",
            ),
            (
                "INSERT INTO task_group_members (group_id, pos, label)"
                " SELECT id, 0, 'm' FROM task_groups",
                "g",
            ),
            ("UPDATE task_group_members SET status = 'done'", "g"),
            ("UPDATE pauses SET reason = 'why'", "p"),
            ("DELETE FROM pauses", "p"),
        ]
        for statement, flag in writes:
            await sql.execute(statement)
            assert await _flags_until(store, flag) == {flag}, statement
    finally:
        await sql.close()
        await store.close()


async def test_a_job_saved_through_another_store_fires_on_the_running_node(
    pg_url: str,
) -> None:
    seen = Seen()
    cfg = Config(database=pg_url, shutdown_grace=0)
    async with Runtime.open(cfg, targets={"seen": seen}) as rt:
        await eventually(lambda: rt.statistics()["scheduler"]["loops"] >= 1, what="a loop")
        other = await open_store(pg_url)  # another node, or the CLI
        try:
            at = datetime.fromtimestamp(time.time() + 0.5, UTC).isoformat()
            remote = JobSpec(name="remote", target="seen", at=at)
            await other.apply_one(save_op(remote, time.time()))
        finally:
            await other.close()
        await eventually(lambda: seen.names == ["remote"], timeout=10, what="'remote' fired")


async def test_a_pause_set_from_another_store_is_honoured_and_its_removal_starts_the_job(
    pg_url: str,
) -> None:
    seen = Seen()
    cfg = Config(database=pg_url, shutdown_grace=0)
    async with Runtime.open(cfg, targets={"seen": seen}) as rt:
        await rt.add_job(JobSpec(name="ship", target="seen"))
        other = await open_store(pg_url)
        try:
            await other.apply_one(SetPause(scope="job", name="ship", at=time.time(), by="other"))

            def waiting() -> int:
                pause = rt.statistics()["dispatcher"]["pauses"].get("job:ship")
                return -1 if pause is None else int(pause["waiting"])

            await eventually(lambda: waiting() == 0, what="the node to hold the pause")
            dispatch_id, _ = await enqueue_one(cfg, EnqueueRequest(job="ship"), time.time())
            await eventually(lambda: waiting() == 1, what="the dispatch parked behind it")
            assert seen.names == []
            d = await rt.store.dispatch(dispatch_id)
            assert d is not None and d.status == "queued"
            await other.apply_one(ClearPauses(scope="job", name="ship"))
            assert (await rt.wait(dispatch_id, timeout=10)).status == "done"
            assert seen.names == ["ship"]
        finally:
            await other.close()
