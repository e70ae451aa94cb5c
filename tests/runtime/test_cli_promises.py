"""Small promises of the README, through the CLI in-process (``main(argv)``):
``dlq purge`` of an id that is not a dead letter fails (exit 1) and purges nothing of
it; ``jobs next`` lists an ``at`` job's one instant once; ``Deferred`` and the store
errors are part of the public package."""

from __future__ import annotations

import json
import math
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from shepherd import runtime
from shepherd.runtime.cli import main
from shepherd.runtime.jobs import save_op
from shepherd.store.models import JobSpec
from shepherd.store.sqlite import SqliteStore


class Cli:
    def __init__(self, db: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.db = db
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--database", self.db, *argv])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> Any:
        code, out, err = self(*argv, "--json")
        assert code == 0, f"{argv} exited {code}: {err}"
        return json.loads(out)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE", "CONCURRENCY", "LOG_LEVEL"):
        monkeypatch.delenv(f"SHEPHERD_{name}", raising=False)
    return Cli(str(tmp_path / "cli.db"), capsys)


def test_dlq_purge_of_a_dispatch_that_is_not_dead_exits_1(cli: Cli) -> None:
    code, _, err = cli("jobs", "add", "fail", "--executor", "shell", "--target", "exit 3")
    assert code == 0, err
    cli("jobs", "update", "fail", "--max-attempts", "1")
    dead = cli.json("enqueue", "fail")["id"]
    code, _, err = cli("run", "--exit-when-idle", "--for", "30s")
    assert code == 0, err
    queued = cli.json("enqueue", "fail", "--delay", "1h")["id"]  # queued, not dead

    code, _, err = cli("dlq", "purge", str(queued))
    assert code == 1 and f"not dead letters: {queued}" in err
    code, out, err = cli("dlq", "purge", str(dead), str(queued), "999", "--json")
    assert code == 1 and f"not dead letters: {queued}, 999" in err
    assert json.loads(out) == {"purged": 1, "not_dead": [queued, 999]}
    with sqlite3.connect(cli.db) as conn:
        left = dict(conn.execute("SELECT id, status FROM dispatches").fetchall())
    assert left == {queued: "queued"}  # the dead one went, the queued one stayed


def _rounds_up(base: float) -> float:
    """A ``now`` whose ``now + 600`` is stored (ISO, microseconds) slightly later."""
    now = base
    for _ in range(100):
        if datetime.fromtimestamp(now + 600, UTC).timestamp() > now + 600:
            return now
        now = math.nextafter(now, math.inf)
    raise AssertionError("no rounding-up instant found")


def test_jobs_next_lists_an_at_instant_once(cli: Cli) -> None:
    now = _rounds_up(1_900_000_000.0)
    op = save_op(JobSpec(name="once", executor="shell", target="true", at="in 10m"), now)

    async def store() -> None:
        s = await SqliteStore.open(cli.db)
        try:
            await s.apply_one(op)
        finally:
            await s.close()

    anyio.run(store)
    nxt = cli.json("jobs", "next", "once", "-n", "5")["next"]
    assert len(nxt) == 1 and abs(nxt[0] - (now + 600)) < 1e-3


def test_deferred_and_the_store_errors_are_public() -> None:
    for name in ("Deferred", "DatabaseCorrupt", "DatabaseLocked", "DiskFull", "ReadOnly"):
        assert name in runtime.__all__ and hasattr(runtime, name), name
    assert issubclass(runtime.Deferred, runtime.ShepherdError)


def test_an_escalation_caused_by_a_store_fault_exits_3() -> None:
    from shepherd.runtime.cli import classify
    from shepherd.store.errors import DatabaseCorrupt, SupervisorEscalation

    cause = DatabaseCorrupt("x.db: database disk image is malformed")
    code, message = classify(SupervisorEscalation("root", "dispatcher", cause))
    assert code == 3 and "DatabaseCorrupt" in message and "dispatcher" in message
    assert classify(SupervisorEscalation("root", "dispatcher", RuntimeError("bug")))[0] == 4
