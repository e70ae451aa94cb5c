"""Crash recovery ends the process groups orphaned runs recorded, before the delivery
guarantee applies (actors/dispatcher/recovery.py), on real process groups and a real database:

- a live group whose leader's start time matches is killed and waited for; the run says
  ``process: killed`` (``rt.run``), and the at-least-once replay starts only after;
- a live group recorded with another start time (its pid was reused) is left alone;
- a group that is gone already is ``gone``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from shepherd.actors.executors import procs
from shepherd.runtime import Config, JobSpec, RunContext, Runtime
from shepherd.store.factory import open_store
from shepherd.store.ops import RecordProcess
from tests.helpers import eventually
from tests.runtime.test_reliability import _claim_without_running

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs"),
    pytest.mark.engines("sqlite", "postgresql"),
]


def _live(pgid: int) -> list[int]:
    return [p.pid for p in procs.process_table() if p.pgrp == pgid and p.state not in ("Z", "X")]


def _group(made: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """A leader and a grandchild in one new process group (both ``sleep``)."""
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30; wait"], start_new_session=True)
    made.append(proc)
    return proc


def _ended() -> int:
    """The pid of a group that has come and gone."""
    proc = subprocess.Popen(["true"], start_new_session=True)
    proc.wait()
    return proc.pid


async def test_recovery_kills_the_recorded_group_first_and_never_a_reused_pid(
    db_path: str, groups: list[subprocess.Popen[bytes]]
) -> None:
    seen: list[list[int]] = []
    victim = _group(groups)
    bystander = _group(groups)

    async def replay(ctx: RunContext) -> None:
        seen.append(_live(victim.pid))  # what is left of the old group when it runs

    async with Runtime.open(Config(database=db_path), targets={"t": replay}) as rt:
        alo = await rt.add_job(JobSpec(name="alo", target="t", delivery_guarantee="at-least-once"))
        amo = await rt.add_job(JobSpec(name="amo", target="t"))
        gone = await rt.add_job(JobSpec(name="gone", target="t"))
    d_alo = await _claim_without_running(db_path, alo.id, "alo")
    d_amo = await _claim_without_running(db_path, amo.id, "amo")
    d_gone = await _claim_without_running(db_path, gone.id, "gone")
    ended = _ended()
    await eventually(lambda: len(_live(victim.pid)) == len(_live(bystander.pid)) == 3)

    records = {}
    for pid in (victim.pid, bystander.pid):
        rec = await procs.identify(pid)
        assert rec is not None
        records[pid] = rec
    records[ended] = procs.ProcessId(pgid=ended, start=1, clock=procs.clock_id())
    reused = records[bystander.pid]
    store = await open_store(db_path)
    try:
        for dispatch_id, rec in (
            (d_alo, records[victim.pid]),
            (d_amo, procs.ProcessId(pgid=reused.pgid, start=reused.start - 1, clock=reused.clock)),
            (d_gone, records[ended]),
        ):
            [run] = [r.id for r in await store.runs(dispatch_id=dispatch_id)]
            op = RecordProcess(run_id=run, pgid=rec.pgid, start=rec.start, clock=rec.clock)
            assert await store.apply_one(op) is True
    finally:
        await store.close()

    async with Runtime.open(Config(database=db_path), targets={"t": replay}) as rt:
        assert (await rt.wait(d_alo, timeout=10)).status == "done"
        runs = {r.dispatch_id: r for r in await rt.runs(status="crashed")}
        assert runs[d_alo].process == "killed" and runs[d_alo].pgid == victim.pid
        assert runs[d_amo].process == "gone"  # recorded with another start: not ours
        assert runs[d_gone].process == "gone"
        assert (await rt.run(runs[d_alo].id)).process == "killed"
    assert seen == [[]]  # the replay ran once, with nothing of the old group alive
    assert _live(victim.pid) == []
    assert len(_live(bystander.pid)) == 3  # the reused pid was never killed
