"""The spool actor on a real directory, in a real embedded runtime (real SQLite file):
OpenClaw's own spool cases (a valid file is processed and removed; an expired one
becomes a dead letter ``expired``; not JSON, an unknown top-level field, version 2, an
id that differs from the file name → rejected with the reason; ``*.json.tmp.*``
ignored), files present at start first and in priority order, arrivals, a re-ingested
file returning its dispatch, large drops in chunks, and an unusable directory."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from shepherd.actors.spool import formats
from shepherd.actors.spool.actor import spool_counts
from shepherd.actors.spool.config import SpoolConfig
from shepherd.runtime import Config, JobSpec, RetryPolicy, RunContext, Runtime
from shepherd.runtime.targets import Targets
from shepherd.store.errors import ConfigError, ReadOnly
from tests.helpers import eventually

pytestmark = pytest.mark.anyio

NOW = 1767225600.0


class Turns:
    """The ``turn`` target: records each payload it ran with."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    async def __call__(self, ctx: RunContext) -> None:
        self.payloads.append(dict(ctx.payload or {}))


def event(**over: Any) -> dict[str, Any]:
    ev = formats.build_event({"version": 1, "payload": {"kind": "agentTurn", "message": "hi"}}, NOW)
    return {**ev, **over}


def runtime(db: str, spool: Path, turns: Turns, **spool_cfg: Any) -> Any:
    spool_cfg.setdefault("default_job", "agent")
    cfg = Config(
        database=db,
        shutdown_grace=0,
        spool=SpoolConfig(dir=str(spool), **spool_cfg),
        jobs=[JobSpec(name="agent", target="turn", retry=RetryPolicy(max_attempts=1))],
    )
    return Runtime.open(cfg, targets={"turn": turns})


def files(where: Path) -> list[str]:
    return sorted(n for n in os.listdir(where) if n != formats.REJECTED_DIR)


async def all_final(rt: Runtime, n: int) -> bool:
    ds = await rt.dispatches(limit=100_000)
    return len(ds) >= n and all(d.status in ("done", "dead", "cancelled") for d in ds)


async def test_a_valid_file_is_processed_and_removed(db_path: str, tmp_path: Path) -> None:
    spool, turns = tmp_path / "spool", Turns()
    async with runtime(db_path, spool, turns) as rt:
        ev = event(payload={"kind": "agentTurn", "message": "do it", "agentId": "ops"})
        formats.write_event(spool, ev)
        await eventually(lambda: all_final(rt, 1), what="the file's dispatch to end")
        (d,) = await rt.dispatches()
        assert (d.status, d.kind, d.idempotency_key) == ("done", "spool", ev["id"])
        await eventually(lambda: files(spool) == [], what="the files removed")
        assert turns.payloads == [
            {"message": "do it", "agent": "ops", "session_key": f"spool:{ev['id']}"}
        ]
        stats = rt.statistics()["spool"]
        assert stats["ingested"] == 1 and stats["rejected"] == 0


async def test_an_expired_event_becomes_a_dead_letter_expired(db_path: str, tmp_path: Path) -> None:
    spool, turns = tmp_path / "spool", Turns()
    async with runtime(db_path, spool, turns) as rt:
        formats.write_event(spool, event(expiresAt="2020-01-01T00:00:00.000Z"))
        await eventually(lambda: all_final(rt, 1), what="the dead letter")
        (d,) = await rt.dead_letters()
        assert d.dead_reason == "expired"
        await eventually(lambda: files(spool) == [], what="the file removed")
        assert turns.payloads == []


async def test_invalid_files_are_rejected_with_the_reason(db_path: str, tmp_path: Path) -> None:
    spool, turns = tmp_path / "spool", Turns()
    spool.mkdir()
    ok = event()
    other = event()
    cases = {
        "notjson.json": (b"{oops", "not JSON"),
        f"{event()['id']}-x.json": (None, ""),  # filled below: id differs
        "unknown.json": (json.dumps({**other, "extra": 1}).encode(), "extra: unknown field"),
        "v2.json": (json.dumps({**other, "version": 2}).encode(), "unsupported version 2"),
        "empty.json": (
            json.dumps({**other, "payload": {"kind": "agentTurn", "message": ""}}).encode(),
            "payload.message",
        ),
        "nojob.json": (b'{"job": "nope"}', "no job named 'nope'"),
        "notes.txt": (b"hello", "not a spool file name"),
        # past the decoder's recursion limit: refused, not a crash of the spool actor
        "deep.json": (b'{"job":"x","payload":' + b'{"a":' * 3000 + b"1" + b"}" * 3001, "nested"),
        "deepish.json": (  # decodes, but deeper than a payload may be (MAX_DEPTH)
            b'{"job":"x","payload":' + b'{"a":' * 100 + b"1" + b"}" * 101,
            "payload.a.a",
        ),
    }
    mismatch = next(n for n, (data, _) in cases.items() if data is None)
    cases[mismatch] = (json.dumps(ok).encode(), "differs from the file name")
    for name, (data, _) in cases.items():
        (spool / name).write_bytes(data)
    (spool / f"{ok['id']}.json.tmp.{uuid.uuid4().hex}").write_bytes(b"{half")
    async with runtime(db_path, spool, turns) as rt:
        await eventually(lambda: len(files(spool)) == 1, what="every file rejected")
        rejected = spool / formats.REJECTED_DIR
        for name, (data, reason) in cases.items():
            assert (rejected / name).read_bytes() == data  # moved as it was
            info = json.loads((rejected / formats.error_name(name)).read_text())
            assert reason in info["error"], (name, info)
            assert info["file"] == name and info["at"].endswith("Z")
        assert sorted(os.listdir(rejected)) == sorted(
            [*cases, *(formats.error_name(n) for n in cases)]
        )
        assert [n for n in files(spool) if ".tmp." in n]  # the temp file: untouched
        assert await rt.dispatches() == []
        assert rt.statistics()["spool"]["rejected"] == len(cases)
        assert spool_counts(spool) == {"pending": 0, "rejected": len(cases)}


async def test_files_at_start_go_first_in_priority_then_age_order(
    db_path: str, tmp_path: Path
) -> None:
    spool, turns = tmp_path / "spool", Turns()
    spool.mkdir()
    order = [("low", 1), (None, 4), ("critical", 9), ("normal", 2), ("high", 5), ("high", 3)]
    ids = []
    for prio, ms in order:
        ev = event(createdAtMs=ms)
        if prio:
            ev["priority"] = prio
        formats.write_event(spool, ev)
        ids.append(ev["id"])
    async with runtime(db_path, spool, turns) as rt:
        await eventually(lambda: all_final(rt, len(order)), what="every dispatch")
        got = sorted(await rt.dispatches(), key=lambda d: d.id)
        expect = [ids[2], ids[5], ids[4], ids[3], ids[1], ids[0]]
        assert [d.idempotency_key for d in got] == expect
        await eventually(lambda: files(spool) == [], what="the files removed")


async def test_arrivals_in_chunks_and_a_reingested_file(db_path: str, tmp_path: Path) -> None:
    spool, turns = tmp_path / "spool", Turns()
    async with runtime(db_path, spool, turns, max_batch=16) as rt:
        events = [event() for _ in range(100)]
        for ev in events:
            formats.write_event(spool, ev)
        formats.write_file(spool, "mine.json", b'{"job": "agent", "payload": {"message": "own"}}')
        await eventually(lambda: all_final(rt, 101), what="101 dispatches")
        await eventually(lambda: files(spool) == [], what="the files removed")
        # the same file again (a crash between commit and removal): its dispatch returns
        formats.write_event(spool, events[0])
        await eventually(lambda: files(spool) == [], what="the re-ingested file removed")
        ds = await rt.dispatches(limit=1000)
        assert len(ds) == 101
        assert {d.idempotency_key for d in ds} == {*(e["id"] for e in events), "mine"}
        assert rt.statistics()["spool"]["ingested"] == 102
        assert len(turns.payloads) == 101


async def test_no_default_job_rejects_agent_turns_by_name(db_path: str, tmp_path: Path) -> None:
    spool, turns = tmp_path / "spool", Turns()
    async with runtime(db_path, spool, turns, default_job=None):
        ev = event()
        formats.write_event(spool, ev)
        error = spool / formats.REJECTED_DIR / formats.error_name(f"{ev['id']}.json")
        await eventually(error.exists, what="the rejection")
        assert "default_job" in json.loads(error.read_text())["error"]


async def test_a_file_as_the_directory_is_named(db_path: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.write_text("not a directory")
    with pytest.raises(ConfigError) as info:
        async with runtime(db_path, spool, Turns()):
            pass
    assert info.value.field == "spool.dir" and "not a directory" in str(info.value)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A spool directory holding one file, that cannot be written."""
    where = tmp_path / "ro"
    where.mkdir()
    if os.geteuid() != 0:
        (where / "a.json").write_text('{"job": "agent"}')
        where.chmod(0o500)
        yield where
        where.chmod(0o700)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs: {done.stderr.decode().strip()}")
    try:
        (where / formats.REJECTED_DIR).mkdir()
        (where / "a.json").write_text('{"job": "agent"}')
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def test_an_unwritable_directory_fails_at_start_and_loses_nothing(
    db_path: str, read_only_dir: Path
) -> None:
    with pytest.raises(ReadOnly) as info:
        async with runtime(db_path, read_only_dir, Turns()):
            pass
    assert str(read_only_dir) in str(info.value)
    assert (read_only_dir / "a.json").read_text() == '{"job": "agent"}'


class Report(msgspec.Struct):
    to: str


async def test_a_request_the_enqueue_refuses_rejects_only_its_file(
    db_path: str, tmp_path: Path
) -> None:
    """The payload of one file does not fit its target's type: the enqueue refuses the
    chunk, which is then committed file by file; the others become dispatches, that one
    is rejected naming the field."""
    spool = tmp_path / "spool"
    spool.mkdir()
    for name, to in (("a.json", "x"), ("b.json", 5), ("c.json", "z")):  # one pass: at start
        (spool / name).write_text(json.dumps({"job": "report", "payload": {"to": to}}))
    seen: list[str] = []
    targets = Targets()

    @targets.task("report", payload=Report)
    async def report(ctx: RunContext) -> None:
        seen.append(ctx.payload.to)

    cfg = Config(
        database=db_path,
        shutdown_grace=0,
        spool=SpoolConfig(dir=str(spool)),
        jobs=[JobSpec(name="report", target="report")],
    )
    async with Runtime.open(cfg, targets=targets) as rt:
        await eventually(lambda: all_final(rt, 2), what="two dispatches")
        error = spool / formats.REJECTED_DIR / formats.error_name("b.json")
        await eventually(error.exists, what="b.json rejected")
        info = json.loads(error.read_text())
        assert info["field"] == "payload.to", info
        assert sorted(seen) == ["x", "z"]
        assert sorted(d.idempotency_key or "" for d in await rt.dispatches()) == ["a", "c"]
        stats = rt.statistics()["spool"]
        assert (stats["passes"], stats["commits"], stats["rejected"]) == (1, 2, 1)
