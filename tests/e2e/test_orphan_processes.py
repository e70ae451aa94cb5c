"""End to end: a SIGKILLed daemon leaves no process of its runs behind, and a replay never
runs beside the body it replays.

The job is a shell script sourced by the run's own shell (so the loop below runs in the
group's leader). It writes a side-effect log: ``start <pid> <ns>``, then
``child <pid> <ns>`` every 50 ms from that shell, and ``grand <pid> <ns>`` every 50 ms
from a grandchild it starts in the same process group. Run twice:

- **With the fork server** (the default on Linux): the daemon's death closes the
  server's socket and the server kills the whole group, so both ``child`` and
  ``grand`` lines stop before the daemon is restarted (the test sees the group empty
  first); recovery finds it ``gone``.
- **Without it** (``SHEPHERD_FORK_SERVER=0``): a parent-death signal reaches the direct
  child only, so the two lines prove one mechanism each: ``child`` lines stop with the
  daemon (none is stamped after the test saw the daemon dead); ``grand`` lines stop when
  the restarted daemon's recovery kills the recorded group, before it marks the run
  ``crashed`` (none is stamped after the run's ``finished_at``), and the run says
  ``process: killed``.
- at-least-once: the replay (attempt 2 writes ``replay <pid> <ns>`` and ends) comes after
  the old group's last line, in the file and in time; at-most-once: no replay, no ``end``.

After the restart no process of the old group is alive. No fixed sleeps.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_daemon_kill import Env, eventually

pytestmark = pytest.mark.e2e

JOB = """\
log='{log}'
now() {{ date +%s%N; }}
if [ "$SHEPHERD_ATTEMPT" -gt 1 ]; then echo "replay $$ $(now)" >> "$log"; exit 0; fi
echo "start $$ $(now)" >> "$log"
sh -c 'i=0; while [ $i -lt 200 ]; do echo "grand $$ $(date +%s%N)" >> "$0";
  sleep 0.05; i=$((i+1)); done' "$log" &
i=0
while [ $i -lt 100 ]; do echo "child $$ $(now)" >> "$log"; sleep 0.05; i=$((i+1)); done
wait
echo "end $$ $(now)" >> "$log"
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    made = Env(tmp_path)
    yield made
    for proc in made.daemons:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _lines(log: Path) -> list[tuple[str, int, int]]:
    out = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:  # a line being written is skipped until it is whole
            out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def _count(log: Path, tag: str) -> int:
    return sum(1 for t, _, _ in _lines(log) if t == tag) if log.exists() else 0


def _live_members(pgid: int) -> list[int]:
    """Pids of processes in group ``pgid`` that are not zombies (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("how", ["fork server", "in the runtime"])
@pytest.mark.parametrize("guarantee", ["at-least-once", "at-most-once"])
def test_sigkill_leaves_no_process_and_the_replay_waits_for_the_old_group(
    env: Env, tmp_path: Path, guarantee: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if how == "in the runtime":
        monkeypatch.setenv("SHEPHERD_FORK_SERVER", "0")  # the daemons inherit it
    log = tmp_path / "side-effects.log"
    script = tmp_path / "job.sh"
    script.write_text(JOB.format(log=log))
    env.cli(
        "jobs", "add", "long", "--executor", "shell", "--target", f". {script}",
        "--guarantee", guarantee, "--timeout", "60s",
    )  # fmt: skip
    daemon = env.start()
    dispatch_id = env.cli_json("enqueue", "long")["id"]
    eventually(
        lambda: _count(log, "child") >= 3 and _count(log, "grand") >= 3,
        what="the job to write from both processes",
    )
    [(_, pgid, _)] = [line for line in _lines(log) if line[0] == "start"]
    os.kill(daemon.pid, signal.SIGKILL)
    assert env.wait_exit(daemon) == -signal.SIGKILL
    dead_at = time.time_ns()  # the daemon is dead (reaped) by now
    try:
        if how == "fork server":  # the whole group went with the daemon, no restart yet
            eventually(lambda: _live_members(pgid) == [], what="the group to die")
        restarted = env.start("--exit-when-idle", "--for", "60s")
        assert env.wait_exit(restarted, timeout=60) == 0, env.logs()
        lines = _lines(log)

        # the direct child died with the daemon: not one line stamped after it was dead
        late = [line for line in lines if line[0] == "child" and line[2] > dead_at]
        assert not late, f"the run's shell wrote {len(late)} line(s) after the daemon died"
        # nothing of the old run is alive after the restart
        assert _live_members(pgid) == [], "processes of the killed daemon's run are alive"

        runs = env.query(
            "SELECT id, status, pgid, process, finished_at FROM runs"
            " WHERE dispatch_id = ? ORDER BY id",
            dispatch_id,
        )
        old_id, status, recorded, process, finished_at = runs[0]
        found = "gone" if how == "fork server" else "killed"
        assert (status, recorded, process) == ("crashed", pgid, found)
        # the grandchild was gone (fork server) or killed by recovery (no parent-death
        # signal reaches it) before recovery marked the run crashed
        grand = [t for tag, _, t in lines if tag == "grand"]
        assert max(grand) < finished_at * 1e9
        assert not [line for line in lines if line[0] == "end"]

        old = [i for i, line in enumerate(lines) if line[0] != "replay"]
        replays = [(i, line) for i, line in enumerate(lines) if line[0] == "replay"]
        if guarantee == "at-least-once":
            # the replay started only once the old group was gone: after its last line
            [(at, (_, _, replay_ns))] = replays
            assert at > max(old)
            assert replay_ns > max(t for tag, _, t in lines if tag != "replay")
            assert env.status(dispatch_id) == "done"
            assert [r[1] for r in runs] == ["crashed", "ok"]
        else:
            assert replays == []
            assert env.status(dispatch_id) == "dead"
            assert [r[1] for r in runs] == ["crashed"]
        shown = env.cli_json("runs", "show", str(old_id))
        assert (shown["process"], shown["pgid"]) == (found, pgid)
        assert ("killed the process group" in env.logs()) == (how == "in the runtime")
    finally:
        if _live_members(pgid):  # only when the test failed: leave nothing behind
            os.killpg(pgid, signal.SIGKILL)
