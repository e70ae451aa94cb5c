"""On a database the runtime owns (SQLite), a spawned group goes on record in the
runtime's process journal before its command starts, and its commit is not waited for
(``actors/executors/journal.py``); crash recovery ends the journals' live groups of runs
still ``running`` that the database does not name, then removes the journals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shepherd.actors.executors import procs
from shepherd.actors.executors.journal import ProcessJournal, left_behind
from shepherd.actors.primitives.mailbox import Reply
from shepherd.runtime import Config, JobSpec, RunContext, Runtime
from shepherd.store.factory import open_store
from tests.helpers import eventually
from tests.runtime.test_orphan_recovery import _group, _live
from tests.runtime.test_reliability import _claim_without_running

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs"),
]


async def test_a_command_starts_with_its_group_in_the_journal(db_path: str) -> None:
    journals = Path(f"{db_path}.d", "processes")
    async with Runtime.open(Config(database=db_path)) as rt:
        await rt.add_job(JobSpec(name="sh", executor="shell", target=f"cat {journals}/*.journal"))
        final = await rt.wait(await rt.enqueue("sh"), timeout=30)
        assert final.status == "done", final
        [run] = await rt.runs(job="sh")
        assert run.stdout is not None
        assert f"{run.id} {run.pgid} " in run.stdout  # written before the command ran
        assert run.pgid is not None  # and committed as well, not waited for
        assert left_behind(str(journals.parent))[run.id].pgid == run.pgid


async def test_recovery_ends_the_journals_groups_of_running_runs_the_database_misses(
    db_path: str, groups: list[subprocess.Popen[bytes]]
) -> None:
    seen: list[list[int]] = []
    victim, unknown = _group(groups), _group(groups)

    async def replay(ctx: RunContext) -> None:
        seen.append(_live(victim.pid))

    async with Runtime.open(Config(database=db_path), targets={"t": replay}) as rt:
        alo = await rt.add_job(JobSpec(name="alo", target="t", delivery_guarantee="at-least-once"))
        node = rt.instance
    d_alo = await _claim_without_running(db_path, alo.id, "alo")
    await eventually(lambda: len(_live(victim.pid)) == len(_live(unknown.pid)) == 3)
    store = await open_store(db_path)
    try:
        [run_id] = [r.id for r in await store.runs(dispatch_id=d_alo)]
    finally:
        await store.close()
    dead = ProcessJournal(f"{db_path}.d", "dead:1:00")  # a runtime killed after its write
    for rid, proc in ((run_id, victim), (10**6, unknown)):  # 10**6: no such run
        rec = await procs.identify(proc.pid)
        assert rec is not None
        dead.note(rid, rec, Reply())
    own = ProcessJournal(f"{db_path}.d", node)  # the last runtime's, all of it ended
    own.note(10**6 + 1, procs.ProcessId(pgid=1, start=0, clock=procs.clock_id()), Reply())

    async with Runtime.open(Config(database=db_path), targets={"t": replay}) as rt:
        assert (await rt.wait(d_alo, timeout=10)).status == "done"
        [crashed] = await rt.runs(status="crashed")
        assert (crashed.id, crashed.process) == (run_id, "killed")
        assert left_behind(f"{db_path}.d") == {}  # both journals removed
    assert seen == [[]]  # the replay ran once, with nothing of the old group alive
    assert len(_live(unknown.pid)) == 3  # a record of no running run: left alone


async def test_a_journal_that_cannot_be_written_falls_back_to_waiting_for_the_commit(
    db_path: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("")  # the data directory's parent is a file
    cfg = Config(database=db_path, data_dir=str(tmp_path / "file" / "d"))
    async with Runtime.open(cfg) as rt:
        await rt.add_job(JobSpec(name="sh", executor="shell", target="true"))
        for _ in range(2):
            assert (await rt.wait(await rt.enqueue("sh"), timeout=30)).status == "done"
        runs = await rt.runs(job="sh")
        assert len(runs) == 2 and all(r.pgid is not None for r in runs)
    said = [r.message for r in caplog.records if "process journal" in r.message]
    assert len(said) == 1  # once, then the commits are waited for
