"""Process groups of runs (actors/executors/procs.py): the /proc and ps parsers and the
kill decision (loop-free), then real processes: the gate holds a command until its
group is recorded, and the parent-death signal kills it with its runtime (asyncio and
uvloop both)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

from shepherd.actors.executors import procs
from shepherd.actors.executors.procs import ProcessId, ProcInfo, decide, parse_ps, parse_stat
from shepherd.actors.executors.shell import ShellExecutor
from shepherd.actors.executors.watchdog import WatchdogExecutor
from shepherd.store.models import JobSpec
from tests.actors.executors.conftest import FakeHost, make_ctx

LINUX = sys.platform.startswith("linux")
CLOCK = "linux:boot-a"


def _stat(pid: int, comm: str, state: str, pgrp: int, sid: int, start: int) -> str:
    # fields 7..21 are not read; field 22 is the start time
    middle = " ".join(["0"] * 15)
    return f"{pid} ({comm}) {state} 1 {pgrp} {sid} {middle} {start} 123456 789\n"


# -- parsing (pure) --------------------------------------------------------------------


def test_parse_stat_reads_group_session_and_start_time_field_22() -> None:
    assert parse_stat(_stat(4242, "sh", "S", 4240, 4240, 98765)) == ProcInfo(
        pid=4242, pgrp=4240, sid=4240, start=98765, state="S"
    )


def test_parse_stat_counts_fields_after_the_last_parenthesis_of_the_name() -> None:
    info = parse_stat(_stat(7, "a) Z 9 9 (b", "R", 77, 78, 5))
    assert (info.pid, info.state, info.pgrp, info.sid, info.start) == (7, "R", 77, 78, 5)
    assert parse_stat(_stat(8, "zombie", "Z", 8, 8, 1)).state == "Z"
    with pytest.raises(ValueError):
        parse_stat("garbage")


def test_parse_stat_matches_the_kernel_for_this_process() -> None:
    if not LINUX:
        pytest.skip("procfs")
    info = parse_stat(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert (info.pid, info.pgrp, info.sid) == (os.getpid(), os.getpgrp(), os.getsid(0))


def test_parse_ps_lines() -> None:
    text = "  101   100 S    Tue Dec  1 09:07:50 2026\n  102 102 Zs Tue Dec  1 09:07:51 2026\nbad\n"
    a, b = parse_ps(text)
    assert (a.pid, a.pgrp, a.sid, a.state) == (101, 100, None, "S")
    assert (b.pid, b.pgrp, b.state) == (102, 102, "Z")
    assert b.start - a.start == 1  # seconds


# -- the decision (pure) ---------------------------------------------------------------

REC = ProcessId(pgid=500, start=1000, clock=CLOCK)


def p(pid: int, pgrp: int = 500, start: int = 1000, state: str = "S", sid: int | None = 500):
    return ProcInfo(pid=pid, pgrp=pgrp, sid=sid, start=start, state=state)


@pytest.mark.parametrize(
    ("table", "clock", "expected"),
    [
        ([p(500)], CLOCK, "kill"),  # the leader itself, same start time
        ([p(500), p(501, start=1200)], CLOCK, "kill"),
        ([p(501, start=1200)], CLOCK, "kill"),  # leader gone, a grandchild lives on
        ([p(500, state="Z"), p(501, start=1200)], CLOCK, "kill"),  # leader not reaped yet
        ([p(501, start=1200, sid=None)], CLOCK, "kill"),  # ps has no session id
        ([], CLOCK, "gone"),
        ([p(500, state="Z"), p(501, start=1200, state="Z")], CLOCK, "gone"),  # zombies only
        ([p(500, start=4000)], CLOCK, "gone"),  # the pid was reused: never kill it
        ([p(500, start=4000), p(501, start=4100)], CLOCK, "gone"),  # ... nor its group
        ([p(500, pgrp=77)], CLOCK, "gone"),  # the pid leads another group now
        ([p(501, start=900)], CLOCK, "gone"),  # started before our leader: not ours
        ([p(501, start=1200, sid=501)], CLOCK, "gone"),  # another session
        ([p(500)], "linux:boot-b", "gone"),  # recorded in another boot
        ([p(9, pgrp=9), p(10, pgrp=10)], CLOCK, "gone"),
    ],
)
def test_decide(table: list[ProcInfo], clock: str, expected: str) -> None:
    assert decide(REC, table, clock) == expected


# -- real processes --------------------------------------------------------------------


class Registry:
    def __init__(self, marker: Path | None = None, fail: bool = False) -> None:
        self.marker = marker
        self.fail = fail
        self.recorded: list[tuple[int, ProcessId, bool]] = []

    async def record_process(self, run_id: int, proc: ProcessId) -> None:
        ran = self.marker is not None and self.marker.exists()
        self.recorded.append((run_id, proc, ran))
        if self.fail:
            raise RuntimeError("store down")


def _alive(pid: int) -> bool:
    try:
        info = parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return False
    return info.state not in ("Z", "X")


@pytest.mark.anyio
@pytest.mark.usefixtures("spawning")
async def test_the_command_waits_until_its_group_is_recorded(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    reg = Registry(marker)
    proc = await procs.spawn_group(
        "/bin/sh", f"echo $$ > {marker}; cat", run_id=9, registry=reg
    )  # `cat`: stdin is /dev/null once the gate opened, so it ends at once
    assert await proc.wait() == 0
    [(run_id, rec, ran_before)] = reg.recorded
    assert (run_id, rec.pgid, ran_before) == (9, proc.pid, False)
    assert int(marker.read_text()) == proc.pid  # the command is the group's leader
    if LINUX:
        assert rec.clock == procs.clock_id() and rec.clock.startswith("linux:")


@pytest.mark.anyio
@pytest.mark.usefixtures("spawning")
async def test_a_failed_record_kills_the_group_before_the_command_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(RuntimeError, match="store down"):
        await procs.spawn_group(
            "/bin/sh", f"touch {marker}", run_id=1, registry=Registry(marker, fail=True)
        )
    assert not marker.exists()


@pytest.mark.anyio
async def test_identify_and_the_process_table_see_a_live_group() -> None:
    proc = await anyio.open_process(["sleep", "30"], start_new_session=True)
    try:
        rec = await procs.identify(proc.pid)
        assert rec is not None and rec.pgid == proc.pid
        table = procs.process_table()
        assert decide(rec, table, procs.clock_id()) == "kill"
        wrong = ProcessId(pgid=rec.pgid, start=rec.start + 1, clock=rec.clock)
        assert decide(wrong, table, procs.clock_id()) == "gone"
    finally:
        proc.kill()
        await proc.wait()
    assert decide(rec, procs.process_table(), procs.clock_id()) == "gone"
    assert await procs.identify(proc.pid) is None


@pytest.mark.anyio
@pytest.mark.usefixtures("spawning")
async def test_shell_and_watchdog_runs_record_their_group(tmp_path: Path) -> None:
    host = FakeHost()
    ctx = make_ctx(
        JobSpec(name="s", executor="shell", target="echo $$"),
        run_id=3,
        data_dir=str(tmp_path),
        host=host,
    )
    res = await ShellExecutor().execute(ctx)
    [(run_id, rec)] = host.processes
    assert res.ok and (run_id, rec.pgid) == (3, int(ctx.reported["stdout"]))
    assert rec.pgid == ctx.reported["pid"]
    job = JobSpec(name="w", executor="watchdog", target="echo $$ >&2; exit 2")
    ctx = make_ctx(job, run_id=4, host=host)
    await WatchdogExecutor().execute(ctx)
    assert host.processes[1][0] == 4 and host.processes[1][1].pgid == int(ctx.reported["stderr"])


HOST = textwrap.dedent(
    """
    import asyncio, sys
    from shepherd.actors.executors import forker, procs

    async def main():
        if sys.argv[2] == "fork server":
            forker.CURRENT.set(forker.ForkServer())
        command = "sleep 30 & echo $!; sleep 30"  # a leader and one more of its group
        proc = await procs.spawn_group("/bin/sh", command, run_id=1, registry=None)
        other = int(await proc.stdout.readline() if hasattr(proc.stdout, "readline")
                    else (await proc.stdout.read(64)).split()[0])
        print(proc.pid, other, flush=True)
        await asyncio.sleep(60)

    if sys.argv[1] == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
    """
)


@pytest.mark.parametrize("how", ["fork server", "in the runtime"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_command_dies_with_its_runtime(loop: str, how: str) -> None:
    """A SIGKILL of the runtime: the fork server sees its socket close and kills the
    whole group; started by the runtime itself, the leader's parent-death signal
    kills the leader (what else is in its group waits for the next start's recovery)."""
    if not LINUX:
        pytest.skip("a parent-death signal is Linux only (recovery covers the rest)")
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, loop, how],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert host.stdout is not None
    leader, other = map(int, host.stdout.readline().split())
    try:
        assert _alive(leader) and _alive(other)
        host.send_signal(signal.SIGKILL)
        host.wait(timeout=10)
        gone = [leader, other] if how == "fork server" else [leader]
        deadline = time.monotonic() + 5
        while any(map(_alive, gone)) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not any(map(_alive, gone)), "the command outlived its runtime"
    finally:
        host.kill()
        host.wait()
        for pid in (leader, other):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
