"""The crash suite: the real daemon, a mixed workload, SIGKILL at seeded random points.

For ``ROUNDS`` rounds: enqueue a seeded batch through the CLI (concurrent CLI
processes), wait a seeded random time, SIGKILL the daemon, restart it, wait until the
new process has recovered the orphans of the dead one, and check the invariants on the
database and on the side-effect log. After the last round the daemon runs with
``--exit-when-idle`` until everything is final, and the invariants are checked again,
now with the final ones (everything ended; every at-least-once dispatch done).

It runs on both engines (``db_path``): SQLite (``ROUNDS`` rounds) and PostgreSQL
(``PG_ROUNDS``: each daemon start costs more there). On PostgreSQL the daemon has a
stable node name, ``[cluster] node = "crash-node"``, the way an operator runs a node
that restarts in place: each restarted daemon joins as the same node with a new epoch
(fencing the dead incarnation) and its start recovery takes over the runs the killed one
left running at once, with no wait for a lease to run out. The invariants read one
consistent snapshot of ``dispatches``, ``runs`` and the ``idempotency`` ledger (one read
transaction: the daemon keeps writing meanwhile), with one small helper per engine
(``SNAPSHOT``: the ledger and ``runs.instance`` are not protocol reads); everything else
reads through ``Store`` (``Env.read``), and after the last round the protocol's
dispatches and runs must agree with the snapshot.

Reproduce a run with ``SHEPHERD_CRASH_SEED=<seed>`` (printed); ``SHEPHERD_CRASH_ROUNDS``
/ ``SHEPHERD_CRASH_PG_ROUNDS`` change the number of rounds. The kill delay is the only
intentional wait; everything else polls with a deadline.

The workload. Shell jobs append ``<dispatch id> <attempt> <idempotency key> begin``
to a side-effect log when they start and ``... end`` when they complete (from the
``SHEPHERD_*`` variables the shell executor exports); "flaky" jobs ``exit 1`` on their
first attempt. Python jobs do the same from a registered target. The standalone daemon
has no way to register python targets, so the daemon is started through a tiny launcher
(``LAUNCHER``) that calls the same CLI entry point, ``runtime.cli.main(["run", ...])``,
with ``Runtime.open`` given the targets: the signal handling, recovery, idle exit and
every other line of the daemon are the real ones. Some dispatches carry a producer
``--idempotency-key``; the runs of the others use their retry-lineage key.

``test_producer_key_still_deduplicates_after_a_crash_replay`` pins a bug the suite found:
after a crash replay the dispatch holds ``<key>:replay<n>``, and a second enqueue with
the producer's key must still find it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.e2e.test_daemon_kill import (
    FINAL,
    Env,
    _processes_with,
    all_dispatches,
    all_runs,
    eventually,
)

pytestmark = [pytest.mark.e2e, pytest.mark.engines("sqlite", "postgresql")]

SEED = int(os.environ.get("SHEPHERD_CRASH_SEED", "20250611"))
ROUNDS = int(os.environ.get("SHEPHERD_CRASH_ROUNDS", "10"))
PG_ROUNDS = int(os.environ.get("SHEPHERD_CRASH_PG_ROUNDS", "8"))
NODE = "crash-node"  # PostgreSQL: the daemon's stable [cluster] node name
RESOLVED = re.compile(r"dispatcher ready: (\d+) orphaned runs resolved")
CONCURRENCY = 3
RETRY_BASE = "50ms"

# The daemon with python targets registered; everything else is `shepherd run` itself.
LAUNCHER = """
import os, sys
import anyio
from shepherd.runtime import RetryAfter
from shepherd.runtime.app import Runtime
from shepherd.runtime.cli import main

LOG = os.environ["CRASH_SUITE_LOG"]

def target(sleep, flaky):
    async def run(ctx):
        line = f"{ctx.dispatch_id} {ctx.attempt} {ctx.idempotency_key}"
        with open(LOG, "a") as f:
            f.write(line + " begin\\n")
        await anyio.sleep(sleep)
        if flaky and ctx.attempt < 2:
            raise RetryAfter(0.05)
        with open(LOG, "a") as f:
            f.write(line + " end\\n")
        return {"attempt": ctx.attempt}
    return run

TARGETS = {"py_flaky": target(0.1, True), "py_slow": target(0.3, False)}
_open = Runtime.open

def _open_with_targets(config=None, **kwargs):
    kwargs.setdefault("targets", TARGETS)
    return _open(config, **kwargs)

Runtime.open = staticmethod(_open_with_targets)
sys.exit(main(sys.argv[1:]))
"""


@dataclass(frozen=True)
class Kind:
    name: str
    executor: str  # shell | python
    guarantee: str  # at-least-once | at-most-once
    sleep: float  # python: the same figures are in LAUNCHER
    flaky: bool  # fails (exit 1 / RetryAfter) on attempt 1

    @property
    def at_least_once(self) -> bool:
        return self.guarantee == "at-least-once"


KINDS = [
    Kind("sh-alo", "shell", "at-least-once", 0.05, False),
    Kind("sh-alo-slow", "shell", "at-least-once", 0.4, False),
    Kind("sh-alo-flaky", "shell", "at-least-once", 0.05, True),
    Kind("sh-amo", "shell", "at-most-once", 0.4, False),
    Kind("sh-amo-flaky", "shell", "at-most-once", 0.05, True),
    Kind("py-alo-flaky", "python", "at-least-once", 0.1, True),
    Kind("py-amo", "python", "at-most-once", 0.3, False),
]
PY_TARGET = {"py-alo-flaky": "py_flaky", "py-amo": "py_slow"}


class CrashEnv(Env):
    """``Env`` whose daemon is the launcher (python targets registered)."""

    def _argv(self, *args: str) -> list[str]:
        if args and args[0] == "run":
            return [sys.executable, "-c", LAUNCHER, "--config", str(self.config), *args]
        return super()._argv(*args)


@pytest.fixture
def crash_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, db_path: str
) -> Iterator[CrashEnv]:
    monkeypatch.setenv("CRASH_SUITE_LOG", str(tmp_path / "effects.log"))
    database = db_path if engine == "postgresql" else None
    env = CrashEnv(tmp_path, concurrency=CONCURRENCY, grace="2s", database=database, node=NODE)
    yield env
    for proc in env.daemons:  # only the daemons this test started
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    env.close()


def _shell_command(kind: Kind, log: Path, marker: str) -> str:
    fields = '"$SHEPHERD_DISPATCH_ID $SHEPHERD_ATTEMPT $SHEPHERD_IDEMPOTENCY_KEY'
    fail = '[ "$SHEPHERD_ATTEMPT" -gt 1 ] || exit 1; ' if kind.flaky else ""
    # `: marker` makes the sh process findable in /proc until the command ends
    return (
        f': {marker}; L=\'{log}\'; echo {fields} begin" >> "$L"; sleep {kind.sleep}; '
        f'{fail}echo {fields} end" >> "$L"'
    )


def _add_jobs(env: CrashEnv, log: Path, marker: str) -> None:
    for kind in KINDS:
        target = (
            _shell_command(kind, log, marker) if kind.executor == "shell" else PY_TARGET[kind.name]
        )
        env.cli(
            "jobs",
            "add",
            kind.name,
            "--executor",
            kind.executor,
            "--target",
            target,
            "--guarantee",
            kind.guarantee,
            "--max-attempts",
            "3",
            "--retry-base",
            RETRY_BASE,
            "--timeout",
            "30s",
        )


# -- reading the evidence ------------------------------------------------------------------


@dataclass
class Effects:
    begins: Counter[tuple[int, int]]  # (dispatch, attempt) -> begin lines
    begins_per_dispatch: Counter[int]
    ends: set[tuple[int, int, str]]  # (dispatch, attempt, key)
    ends_per_key: Counter[str]


def _read_effects(log: Path) -> Effects:
    fx = Effects(Counter(), Counter(), set(), Counter())
    if not log.exists():
        return fx
    for line in log.read_text().splitlines():
        dispatch, attempt, key, phase = line.split(" ")
        d, a = int(dispatch), int(attempt)
        if phase == "begin":
            fx.begins[(d, a)] += 1
            fx.begins_per_dispatch[d] += 1
        else:
            assert phase == "end", line
            fx.ends.add((d, a, key))
            fx.ends_per_key[key] += 1
    return fx


def _sqlite_snapshot(path: str, queries: tuple[str, ...]) -> list[list[dict[str, Any]]]:
    """Several queries in one read transaction: one consistent snapshot (WAL), taken
    while the daemon keeps writing."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        conn.execute("BEGIN")
        try:
            return [[dict(r) for r in conn.execute(q)] for q in queries]
        finally:
            conn.rollback()


def _pg_snapshot(url: str, queries: tuple[str, ...]) -> list[list[dict[str, Any]]]:
    """The same on PostgreSQL: one read-only REPEATABLE READ transaction (one snapshot
    for every query), on the URL's schema."""
    base, _, schema = url.partition("?search_path=")

    async def fetch() -> list[list[dict[str, Any]]]:
        conn = await asyncpg.connect(base, server_settings={"search_path": schema})
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return [[dict(r) for r in await conn.fetch(q)] for q in queries]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def _snapshot(env: Env, *queries: str) -> list[list[dict[str, Any]]]:
    """``queries`` (plain SQL both engines read alike) on one consistent snapshot."""
    return (_pg_snapshot if env.postgres else _sqlite_snapshot)(env.db, queries)


SNAPSHOT = (
    "SELECT id, job_name, status, outcome, dead_reason, attempt FROM dispatches",
    "SELECT id, dispatch_id, attempt, status, reason, idempotency_key, instance FROM runs"
    " ORDER BY id",
    "SELECT key, run_id, status FROM idempotency",
)


def check_invariants(
    env: CrashEnv,
    committed: dict[int, Kind],
    log: Path,
    *,
    live_pid: int | None,
    final: bool,
    caught: set[int],
) -> dict[str, int]:
    """Every invariant that must hold at any point after recovery (and, with ``final``,
    the ones that hold once the daemon has exited idle). ``caught``: the runs the kills
    so far caught in flight. Reads the database first, then the log: a line is written
    before the run it belongs to can be recorded."""
    dispatch_rows, runs, ledger = _snapshot(env, *SNAPSHOT)
    dispatches = {r["id"]: r for r in dispatch_rows}
    fx = _read_effects(log)
    runs_by_id = {r["id"]: r for r in runs}
    runs_of: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        runs_of[r["dispatch_id"]].append(r)

    # (1) no committed dispatch lost, none invented
    assert set(dispatches) == set(committed), set(committed) ^ set(dispatches)
    for d, kind in committed.items():
        assert dispatches[d]["job_name"] == kind.name, dispatches[d]

    # (4) no run left running by a dead process: none the kills caught, and every
    # running run is the live daemon's (SQLite: its instance names the pid; PostgreSQL:
    # its node, the one name every incarnation shares)
    if live_pid is not None:

        def live(instance: str) -> bool:
            return instance == NODE if env.postgres else f":{live_pid}:" in instance

        stale = [
            r
            for r in runs
            if r["status"] == "running" and (r["id"] in caught or not live(r["instance"]))
        ]
    else:
        stale = [r for r in runs if r["status"] == "running"]
    assert not stale, f"runs still running after recovery: {stale}"

    # (5) idempotency keys: never two live claims, never two successes on one key
    running_keys = Counter(r["idempotency_key"] for r in runs if r["status"] == "running")
    assert all(n == 1 for n in running_keys.values()), running_keys
    ok_keys = Counter(r["idempotency_key"] for r in runs if r["status"] == "ok")
    assert all(n == 1 for n in ok_keys.values()), ok_keys
    assert all(r["idempotency_key"] for r in runs if r["status"] != "skipped"), "a run had no key"
    for row in ledger:  # a key held as claimed belongs to a live or successful run with it
        if row["status"] == "claimed":
            holder = runs_by_id.get(row["run_id"])
            assert holder is not None, row
            assert holder["status"] in ("running", "ok"), (row, holder)
            assert holder["idempotency_key"] == row["key"], (row, holder)
    for r in runs:  # and a successful run still holds its key
        if r["status"] == "ok":
            held = [x for x in ledger if x["key"] == r["idempotency_key"]]
            assert held and held[0]["status"] == "claimed" and held[0]["run_id"] == r["id"], r
    assert all(n == 1 for n in fx.ends_per_key.values()), "a key completed twice: " + str(
        [k for k, n in fx.ends_per_key.items() if n > 1]
    )

    # the side effects match the record: one execution per (dispatch, attempt); every
    # run recorded ok has its completion line, with the key it was given
    assert all(n == 1 for n in fx.begins.values()), [k for k, n in fx.begins.items() if n > 1]
    for r in runs:
        if r["status"] == "ok":
            assert (r["dispatch_id"], r["attempt"], r["idempotency_key"]) in fx.ends, r
        assert r["dispatch_id"] in committed, r
    for d, _ in fx.begins:
        assert d in committed, f"an execution of an unknown dispatch {d}"

    orphans = 0
    for d, kind in committed.items():
        disp, its_runs = dispatches[d], runs_of[d]
        assert sum(r["status"] == "ok" for r in its_runs) <= 1, its_runs
        crashed = [r for r in its_runs if r["reason"] == "orphaned"]
        orphans += len(crashed)
        for r in crashed:
            assert r["status"] == "crashed", r
        if kind.at_least_once:
            # every orphaned attempt was replayed: a later run exists, or the replay is queued
            for r in crashed:
                later = [x for x in its_runs if x["id"] > r["id"]]
                assert later or disp["status"] == "queued", (disp, its_runs)
        else:
            # (2) at-most-once: never executed again after a crash, and never more often
            # than reported failures allow (a flaky job's retry is a new, counted attempt)
            attempts = [a for (dd, a) in fx.begins if dd == d]
            if crashed:
                assert crashed[-1]["id"] == its_runs[-1]["id"], ("ran after a crash", its_runs)
                assert disp["status"] == "dead" and disp["dead_reason"] == "crashed", disp
                assert max(attempts, default=0) <= crashed[-1]["attempt"], ("replayed", d)
            if not kind.flaky:
                assert fx.begins_per_dispatch[d] <= 1, (d, its_runs)
            # executions of the attempts in this snapshot (the log, read later, may
            # already show the next one): one per attempt, each but the last failed
            seen = max((r["attempt"] for r in its_runs), default=0)
            errors = sum(r["status"] == "error" for r in its_runs)
            assert sum(a <= seen for a in attempts) <= 1 + errors, (d, attempts, its_runs)
        if final:
            assert disp["status"] in FINAL, disp
            if kind.at_least_once:
                # (3) every at-least-once dispatch executed to completion
                assert disp["status"] == "done" and disp["outcome"] == "ok", (disp, its_runs)
                last = its_runs[-1]
                assert last["status"] == "ok", its_runs
                assert (d, last["attempt"], last["idempotency_key"]) in fx.ends
            else:
                assert (disp["status"], disp["outcome"]) in (("done", "ok"), ("dead", "crashed")), (
                    disp,
                    its_runs,
                )
    if final:
        assert not [r for r in runs if r["status"] == "running"]
    return {"dispatches": len(dispatches), "runs": len(runs), "orphans": orphans}


def _wait_recovered(env: CrashEnv, proc: subprocess.Popen[bytes], left: set[int]) -> None:
    """Until the new daemon has resolved every run the dead one left running (``left``;
    or has already exited, idle)."""
    eventually(
        lambda: proc.poll() is not None or not left & {r.id for r in env.running()},
        timeout=20,
        what="the restarted daemon to recover the orphans",
    )


def _protocol_agrees(env: CrashEnv) -> None:
    """Once the daemon is gone: the protocol's reads (keyset pages) say what the
    snapshot's SQL says of every dispatch and run."""
    dispatch_rows, run_rows, _ = _snapshot(env, *SNAPSHOT)
    dispatches = env.read(all_dispatches)
    assert [d.id for d in dispatches] == sorted((r["id"] for r in dispatch_rows), reverse=True)
    by_id = {r["id"]: r for r in dispatch_rows}
    for d in dispatches:
        row = by_id[d.id]
        got = (d.job_name, d.status, d.outcome, d.dead_reason, d.attempt)
        assert got == (row["job_name"], row["status"], row["outcome"], row["dead_reason"],
                       row["attempt"]), (d, row)  # fmt: skip
    runs = env.read(all_runs)
    assert [r.id for r in reversed(runs)] == [r["id"] for r in run_rows]
    for run, row in zip(reversed(runs), run_rows, strict=True):
        got = (run.dispatch_id, run.attempt, run.status, run.reason, run.idempotency_key)
        assert got == (row["dispatch_id"], row["attempt"], row["status"], row["reason"],
                       row["idempotency_key"]), (run, row)  # fmt: skip


def _enqueue(env: CrashEnv, kind: Kind, key: str | None) -> subprocess.Popen[bytes]:
    extra = ["--idempotency-key", key] if key else []
    return subprocess.Popen(
        env._argv("enqueue", kind.name, *extra, "--json"),
        cwd=env.tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigkill_at_random_points_keeps_every_guarantee(crash_env: CrashEnv) -> None:
    env = crash_env
    rounds = PG_ROUNDS if env.postgres else ROUNDS
    log = env.tmp / "effects.log"
    marker = f"crash-{uuid.uuid4().hex}"
    rng = random.Random(SEED)
    print(f"\ncrash suite: SHEPHERD_CRASH_SEED={SEED} rounds={rounds}")
    began = time.monotonic()
    _add_jobs(env, log, marker)
    committed: dict[int, Kind] = {}
    producer_keys: dict[int, str] = {}  # dispatch -> the key given on enqueue
    daemon = env.start()
    caught: set[int] = set()  # runs the kills caught in flight

    for rnd in range(rounds):
        batch = [rng.choice(KINDS) for _ in range(rng.randint(3, 6))]
        keyed = rng.randrange(len(batch)) if rng.random() < 0.5 else None
        delay = rng.uniform(0.25, 0.9)
        last = rnd == rounds - 1
        t0 = time.monotonic()
        producers = [
            (kind, key, _enqueue(env, kind, key))
            for i, kind in enumerate(batch)
            for key in [f"producer-{SEED}-{rnd}" if i == keyed else None]
        ]
        # the experiment: kill at a seeded point (enqueues may still be in flight)
        time.sleep(max(0.0, t0 + delay - time.monotonic()))
        os.kill(daemon.pid, signal.SIGKILL)
        assert env.wait_exit(daemon) == -signal.SIGKILL
        for kind, key, p in producers:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()
            reply = json.loads(out)
            assert reply["duplicate"] is False, reply
            committed[int(reply["id"])] = kind
            if key:
                producer_keys[int(reply["id"])] = key
        in_flight = {r.id for r in env.running()}
        caught |= in_flight
        print(
            f"round {rnd}: +{len(batch)} ({', '.join(k.name for k in batch)}), "
            f"kill after {delay:.2f}s caught {len(in_flight)} run(s) in flight"
        )

        daemon = env.start(*(("--exit-when-idle", "--for", "60s") if last else ()))
        _wait_recovered(env, daemon, in_flight)
        check_invariants(env, committed, log, live_pid=daemon.pid, final=False, caught=caught)

    assert env.wait_exit(daemon, timeout=60) == 0, env.logs()[-3000:]
    # orphaned shell commands of killed daemons keep running; let them finish writing
    eventually(lambda: not _processes_with(marker), timeout=10, what="no workload process left")
    stats = check_invariants(env, committed, log, live_pid=None, final=True, caught=caught)
    _protocol_agrees(env)
    # a producer's key is the run key of every attempt (a crash replay: "<key>:replay<n>")
    for d, key in producer_keys.items():
        for run in env.read(lambda s, d=d: all_runs(s, dispatch_id=d)):
            assert run.idempotency_key is not None, run
            assert run.idempotency_key.split(":replay")[0] == key, (d, key, run)
    statuses = Counter(d.status for d in env.read(all_dispatches))
    elapsed = time.monotonic() - began
    print(
        f"crash suite: {stats['dispatches']} dispatches, {stats['runs']} runs, "
        f"{len(caught)} runs caught by {rounds} kills, {stats['orphans']} orphans recovered, "
        f"final {dict(statuses)}, {elapsed:.1f}s"
    )
    assert caught and stats["orphans"] == len(caught), "the kills never caught a run in flight"
    # each restart's own start recovery resolved them (on PostgreSQL: the same node name
    # took its dead incarnation's runs over at once; no rescue after a lease did)
    resolved = sum(int(n) for n in RESOLVED.findall(env.logs()))
    assert resolved == len(caught), (resolved, len(caught))


def test_producer_key_still_deduplicates_after_a_crash_replay(crash_env: CrashEnv) -> None:
    env = crash_env
    marker = f"30.{uuid.uuid4().int % 10**8:08d}"
    flag = env.tmp / "first-run"
    env.cli(
        "jobs",
        "add",
        "keyed",
        "--executor",
        "shell",
        "--target",
        f"if [ -e '{flag}' ]; then :; else touch '{flag}'; sleep {marker}; fi",
        "--guarantee",
        "at-least-once",
    )
    daemon = env.start()
    first = env.cli_json("enqueue", "keyed", "--idempotency-key", "K")
    # the body itself, not only its shell: the shell's command line holds the marker
    # before the shell runs a line of it (it waits for the runtime to record it first)
    eventually(lambda: flag.exists() and _processes_with(marker), what="the first run's body")
    os.kill(daemon.pid, signal.SIGKILL)
    env.wait_exit(daemon)
    for pid in _processes_with(marker):  # the orphaned sleep: not ours to keep
        os.kill(pid, signal.SIGKILL)
    daemon = env.start("--exit-when-idle", "--for", "30s")
    assert env.wait_exit(daemon, timeout=30) == 0
    assert env.status(first["id"]) == "done"

    again = env.cli_json("enqueue", "keyed", "--idempotency-key", "K")
    assert again == {"id": first["id"], "job": "keyed", "duplicate": True}
