"""``shepherd spool ...`` through the real CLI (a subprocess per command), no daemon:
these commands touch only the spool directory. ``tests/e2e/test_spool_e2e.py`` feeds a
daemon through them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Spool:
    """One temp directory: a config with ``[spool] dir = "spool"``, the CLI as a subprocess."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.dir = tmp / "spool"
        self.rejected = self.dir / "rejected"
        self.config = tmp / "shepherd.toml"
        self.config.write_text('database = "s.db"\n[spool]\ndir = "spool"\n')

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHEPHERD_")}
        argv = [sys.executable, "-m", "shepherd", "--config", str(self.config), "spool", *args]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=60, cwd=self.tmp, env=env, input=stdin
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        proc = self(*args, stdin=stdin)
        assert proc.returncode == 0, f"{args} exited {proc.returncode}: {proc.stderr}"
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def files(self) -> list[str]:
        return sorted(os.listdir(self.dir)) if self.dir.exists() else []

    def event(self, event_id: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir / f"{event_id}.json").read_text())
        return data


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path)


def _full_event(**over: Any) -> dict[str, Any]:
    event_id = str(uuid.uuid4())
    event = {
        "version": 1,
        "id": event_id,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "createdAtMs": 1767225600000,
        "priority": "high",
        "retryCount": 2,
        "payload": {"kind": "agentTurn", "message": "from a file"},
    }
    return {**event, **over}


def _reject(spool: Spool, name: str, error: str) -> None:
    """A rejected file as the watcher leaves it: the file and ``<name>.error.json``."""
    spool.rejected.mkdir(parents=True, exist_ok=True)
    (spool.rejected / name).write_text('{"version": 2}')
    at = "2026-01-01T00:00:00.000Z"
    (spool.rejected / f"{name}.error.json").write_text(json.dumps({"error": error, "at": at}))


# -- enqueue ---------------------------------------------------------------------------


def test_enqueue_writes_one_openclaw_event_and_prints_its_id(spool: Spool) -> None:
    before = time.time()
    event_id = spool.ok("enqueue", "--message", "hello").strip()
    assert uuid.UUID(event_id)
    assert spool.files() == [f"{event_id}.json"]  # no temp file left behind
    event = spool.event(event_id)
    assert event["version"] == 1 and event["id"] == event_id and event["retryCount"] == 0
    assert event["payload"] == {"kind": "agentTurn", "message": "hello"}
    assert before * 1000 - 1 <= event["createdAtMs"] <= time.time() * 1000 + 1
    assert event["createdAt"].endswith("Z")
    assert "priority" not in event or event["priority"] == "normal"


def test_enqueue_flags_fill_the_event(spool: Spool) -> None:
    out = spool.json(
        "enqueue",
        "-m",
        "report",
        "--agent",
        "ops",
        "--session",
        "s:1",
        "--model",
        "m1",
        "--thinking",
        "high",
        "--priority",
        "critical",
        "--max-retries",
        "0",
        "--expires-in",
        "2h",
        "--deliver",
        "--channel",
        "slack",
        "--to",
        "#ops",
    )
    event = spool.event(out["id"])
    assert out["event"] == event and out["path"] == str(spool.dir / f"{out['id']}.json")
    assert event["payload"] == {
        "kind": "agentTurn",
        "message": "report",
        "agentId": "ops",
        "sessionKey": "s:1",
        "model": "m1",
        "thinking": "high",
        "delivery": {"enabled": True, "channel": "slack", "to": "#ops"},
    }
    assert event["priority"] == "critical" and event["maxRetries"] == 0
    created = event["createdAtMs"] / 1000
    from datetime import datetime

    expires = datetime.fromisoformat(event["expiresAt"].replace("Z", "+00:00")).timestamp()
    assert abs(expires - created - 7200) < 1


def test_enqueue_file_full_event_request_or_payload(spool: Spool, tmp_path: Path) -> None:
    full = _full_event()
    (tmp_path / "full.json").write_text(json.dumps(full))
    assert spool.ok("enqueue", "--file", "full.json").strip() == full["id"]
    assert spool.event(full["id"]) == full  # written as is

    turn = {"kind": "agentTurn", "message": "r", "delivery": {"enabled": True, "to": "#a"}}
    request = {"version": 1, "priority": "low", "payload": turn}
    (tmp_path / "req.json").write_text(json.dumps(request))
    rid = spool.ok("enqueue", "--file", "req.json", "--agent", "a1", "--channel", "slack").strip()
    got = spool.event(rid)
    assert got["priority"] == "low" and got["payload"]["agentId"] == "a1"
    assert got["payload"]["delivery"] == {"enabled": True, "to": "#a", "channel": "slack"}
    assert got["retryCount"] == 0 and got["id"] == rid

    bare = json.dumps({"kind": "agentTurn", "message": "bare"})
    pid = spool.ok("enqueue", "--file", "-", "--priority", "high", stdin=bare).strip()
    assert spool.event(pid)["payload"]["message"] == "bare"
    assert spool.event(pid)["priority"] == "high"
    assert len(spool.files()) == 3


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("--message", "x", "--file", "f.json"), "--file"),
        ((), "--message"),
        (("-m", "x", "--priority", "urgent"), "--priority"),
        (("-m", "x", "--priority", "background"), "--priority"),  # not in the v1 schema
        (("-m", "x", "--expires-in", "10x"), "--expires-in"),
        (("-m", "x", "--expires-in", "0s"), "--expires-in"),
        (("-m", "x", "--expires-in", "30"), "--expires-in"),  # OpenClaw wants a unit
        (("-m", "x", "--max-retries", "-1"), "--max-retries"),
        (("-m", ""), "--message"),  # the schema's message min length 1
        (("--file", "missing.json"), "--file"),
    ],
)
def test_enqueue_bad_input_exits_2_naming_the_flag(
    spool: Spool, args: tuple[str, ...], flag: str
) -> None:
    proc = spool("enqueue", *args)
    assert proc.returncode == 2, proc.stderr
    assert flag in proc.stderr
    assert spool.files() == []


def test_enqueue_bad_files_exit_2_and_write_nothing(spool: Spool, tmp_path: Path) -> None:
    cases = {
        "notjson.json": "{oops",
        "v2.json": json.dumps(_full_event(version=2)),
        "unknown.json": json.dumps(_full_event(colour="red")),
        "empty.json": json.dumps({"kind": "agentTurn", "message": ""}),
        "list.json": "[1, 2]",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        proc = spool("enqueue", "--file", name)
        assert proc.returncode == 2 and "--file" in proc.stderr, (name, proc.stderr)
    full = tmp_path / "full.json"
    full.write_text(json.dumps(_full_event()))
    for flag in (
        ("--priority", "low"),
        ("--max-retries", "0"),
        ("--thinking", "x"),
        ("--deliver",),
    ):
        proc = spool("enqueue", "--file", "full.json", *flag)
        assert proc.returncode == 2 and flag[0] in proc.stderr, proc.stderr
    assert spool.files() == []


def test_enqueue_without_a_spool_dir_or_into_an_unwritable_one(spool: Spool) -> None:
    spool.config.write_text('database = "s.db"\n')
    proc = spool("enqueue", "-m", "x")
    assert proc.returncode == 2 and "[spool] dir" in proc.stderr

    blocker = spool.tmp / "plain-file"
    blocker.write_text("")
    proc = spool("enqueue", "-m", "x", "--dir", str(blocker / "spool"))
    assert proc.returncode == 3 and str(blocker / "spool") in proc.stderr
    if Path("/proc/self").is_dir():  # a directory no file can be created in, even by root
        proc = spool("enqueue", "-m", "x", "--dir", "/proc")
        assert proc.returncode == 3 and "spool directory '/proc': it exists but a file" in (
            proc.stderr
        ), proc.stderr
    # --dir works without any [spool] in the config
    other = spool.tmp / "other"
    event_id = spool.ok("enqueue", "-m", "x", "--dir", str(other)).strip()
    assert os.listdir(other) == [f"{event_id}.json"]


# -- status ----------------------------------------------------------------------------


def test_status_counts_and_lists_pending_in_processing_order(spool: Spool) -> None:
    empty = spool.json("status")
    assert empty["pending"] == 0 and empty["rejected"] == 0 and empty["events"] == []
    assert empty["dir"] == str(spool.dir) and empty["rejected_dir"] == str(spool.rejected)

    low = spool.ok("enqueue", "-m", "a", "--priority", "low").strip()
    normal = spool.ok("enqueue", "-m", "b").strip()
    crit = spool.ok("enqueue", "-m", "c", "--priority", "critical").strip()
    retried = _full_event(priority="normal", createdAtMs=1, createdAt="1970-01-01T00:00:00.001Z")
    (spool.dir / f"{retried['id']}.json").write_text(json.dumps(retried))
    (spool.dir / f"{low}.json.tmp.{uuid.uuid4()}").write_text("{")  # a write in progress
    _reject(spool, "bad.json", "version: expected 1")
    (spool.dir / "broken.json").write_text(json.dumps(_full_event(version=2)))

    data = spool.json("status")
    assert data["pending"] == 5 and data["rejected"] == 1
    order = [e["name"] for e in data["events"]]
    assert order == [
        f"{crit}.json",
        "broken.json",  # high, but it will be rejected: status says why
        f"{retried['id']}.json",
        f"{normal}.json",
        f"{low}.json",
    ]
    assert "version" in data["events"][1]["problem"]
    assert all(e["problem"] is None for e in data["events"] if e["name"] != "broken.json")
    assert data["events"][0]["priority"] == "critical"
    assert data["events"][2]["retry_count"] == 2

    text = spool.ok("status")
    assert "pending       5" in text
    assert f"{crit}.json [critical]" in text
    assert f"{retried['id']}.json (retry 2)" in text
    assert f"{normal}.json\n" in text  # normal priority is not tagged


# -- rejected --------------------------------------------------------------------------


def test_rejected_list_retry_and_purge(spool: Spool) -> None:
    for name in ("a.json", "b.json", "c.json"):
        _reject(spool, name, f"{name}: unknown field 'colour'")
    rows = spool.json("rejected", "list")["rejected"]
    assert [r["name"] for r in rows] == ["a.json", "b.json", "c.json"]
    assert rows[0]["error"] == "a.json: unknown field 'colour'"
    assert rows[0]["rejected_at"] == "2026-01-01T00:00:00.000Z"
    assert "unknown field" in spool.ok("rejected", "list")

    assert spool.json("rejected", "retry", "a.json") == {"retried": ["a.json"], "not_found": []}
    assert (spool.dir / "a.json").exists()
    assert not (spool.rejected / "a.json").exists()
    assert not (spool.rejected / "a.json.error.json").exists()

    proc = spool("rejected", "retry", "b.json", "nope.json", "../a.json")
    assert proc.returncode == 1 and "nope.json" in proc.stderr and "../a.json" in proc.stderr
    assert (spool.dir / "b.json").exists()  # the others are still retried

    _reject(spool, "a.json", "again")  # a pending a.json exists: never overwritten
    proc = spool("rejected", "retry", "a.json")
    assert proc.returncode == 1 and "a.json" in proc.stderr
    assert (spool.rejected / "a.json").exists() and (spool.rejected / "a.json.error.json").exists()

    assert spool("rejected", "purge").returncode == 2
    assert spool("rejected", "purge", "c.json", "--all").returncode == 2
    assert spool.json("rejected", "purge", "c.json")["purged"] == ["c.json"]
    assert sorted(os.listdir(spool.rejected)) == ["a.json", "a.json.error.json"]
    assert spool.json("rejected", "purge", "--all")["purged"] == ["a.json"]
    assert os.listdir(spool.rejected) == []
    assert spool.json("status")["pending"] == 2  # a.json and b.json, back in the queue
