"""``shepherd import ocs`` end to end through the in-process CLI, on fixture OCS
databases built from the documented schema (tests/ocs_import/fixture.py).

The import runs at a fixed ``now`` (the day before the US spring-forward, three weeks
before Europe's), so the next 30 fires of every job cross DST days."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from tests.cli_helpers import Cli, clean_cli
from tests.ocs_import.fixture import UNMAPPABLE, OcsDb, cron_next, realistic, text

NOW = datetime(2026, 3, 7, 12, 0, tzinfo=UTC).timestamp()
SENTINEL = "0 0 31 2 *"


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setattr("shepherd.runtime._cli_import.wall", lambda: NOW)
    (tmp_path / "shepherd.toml").write_text(
        'database = "shepherd.db"\n[gateway]\nurl = "http://127.0.0.1:9"\n'
    )
    return clean_cli(tmp_path, capsys, monkeypatch, "shepherd.db")


def _import(cli: Cli, *args: str, code: int = 1) -> Any:
    """The import's JSON report; it exits 1 (needs attention) unless ``code`` says."""
    got, out, err = cli("import", "ocs", *args, "--json")
    assert got == code, err
    return json.loads(out)


def _ocs_rows(path: str, sql: str) -> list[Any]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


def _cronsim_fires(cron: str, tz: str, first: float, n: int) -> list[float]:
    zone = ZoneInfo(tz)
    it = CronSim(cron, datetime.fromtimestamp(first, zone))
    return [first, *(next(it).timestamp() for _ in range(n))]


def test_realistic_import_continues_every_schedule_at_the_slot_ocs_would_fire(
    cli: Cli, tmp_path: Path
) -> None:
    ocs = str(tmp_path / "ocs.db")
    realistic(ocs, NOW)
    report = _import(cli, ocs, "--partial")
    assert report["committed"] and not report["blocked"]
    assert report["summary"]["jobs"] == {"created": 36}
    crons = _ocs_rows(
        ocs,
        f"SELECT * FROM jobs WHERE parent_id IS NULL AND enabled = 1 AND schedule_kind != 'at'"
        f" AND schedule_cron != '{SENTINEL}'",
    )
    assert len(crons) >= 25
    for job in crons:
        out = cli.json("jobs", "next", job["name"], "-n", "31")["next"]
        if job["next_run_at"] is None:  # OCS's repair: the next slot after now
            first = cron_next(job["schedule_cron"], job["schedule_tz"], NOW)
        else:
            first = _epoch(job["next_run_at"])
            assert first > NOW
        assert out[0] == first, job["name"]
        assert out == _cronsim_fires(job["schedule_cron"], job["schedule_tz"], first, 30), job[
            "name"
        ]
    # the spring-forward gap: 02:30 New York does not exist on 2026-03-08, it fires at 03:00
    night = cli.json("jobs", "next", "night-backup", "-n", "3")["next"]
    local = [datetime.fromtimestamp(t, ZoneInfo("America/New_York")) for t in night]
    assert [(d.day, d.hour, d.minute) for d in local] == [(8, 3, 0), (9, 2, 30), (10, 2, 30)]


def test_realistic_import_maps_every_kind(cli: Cli, tmp_path: Path) -> None:
    ocs = str(tmp_path / "ocs.db")
    ids = realistic(ocs, NOW)
    _import(cli, ocs)
    jobs = {j["name"]: j for j in cli.json("jobs", "list")}
    assert jobs["shell-cleanup"]["executor"] == "shell"
    assert jobs["main-heartbeat"]["executor"] == "event"
    assert jobs["watchdog-deploy"]["executor"] == "watchdog"
    assert jobs["isolated-thinker"]["executor"] == "agent"
    shown = cli.json("jobs", "show", "isolated-thinker")
    spec = shown.get("spec", shown)
    assert spec["target"] == "coder"
    assert spec["options"]["model"] == "claude" and spec["options"]["thinking"] == "high"
    assert spec["options"]["read_only"] is True and spec["options"]["scope"] == "global"
    assert spec["delivery_guarantee"] == "at-least-once" and spec["overlap"] == "allow"
    assert spec["idle_timeout"] == 600
    assert "quiet job" in spec["description"]
    deploy = cli.json("jobs", "show", "deploy")
    deploy = deploy.get("spec", deploy)
    assert deploy["parent"] == "test" and deploy["trigger_on"] == "success"
    assert deploy["approval"]["sources"] == ["chain"]
    assert deploy["approval"]["on_timeout"] == "approve" and deploy["approval"]["timeout"] == 1800
    build = cli.json("jobs", "show", "build")
    build = build.get("spec", build)
    assert build["retry"]["max_attempts"] == 4
    # the queue: the awaiting-approval chain dispatch is held again with a new request
    assert cli.rows("SELECT status FROM approvals") == [("pending",)]
    kinds = sorted(cli.rows("SELECT kind, status FROM dispatches"))
    assert kinds == [
        ("chain", "awaiting_approval"),
        ("retry", "queued"),
        ("run_now", "queued"),
        ("run_now", "queued"),
    ]
    assert cli.rows("SELECT attempt, max_attempts FROM dispatches WHERE kind = 'retry'") == [(1, 3)]
    agents = {a["id"]: a for a in cli.json("agents", "list")}
    assert agents["coder"]["capabilities"] == ["git", "python"]
    assert agents["main"]["capabilities"] == ["*"]
    assert [m["body"] for m in cli.json("msg", "inbox", "main")] == ["disk at 91%"]
    reply = cli.rows("SELECT reply_to FROM messages WHERE body = 'on it'")[0][0]
    assert cli.rows(f"SELECT body FROM messages WHERE id = {reply}") == [("disk at 91%",)]
    # at-jobs: the one that ran stays disabled; children carry no schedule
    assert jobs["at-done"]["enabled"] is False and jobs["at-done"]["next_run_at"] is None
    assert jobs["at-future"]["next_run_at"] is not None
    assert jobs["cleanup-after"]["enabled"] is False and jobs["test"]["next_run_at"] is None
    assert len(ids) >= 30


def test_dry_run_lists_exactly_the_unmappable_fields(cli: Cli, tmp_path: Path) -> None:
    ocs = str(tmp_path / "ocs.db")
    realistic(ocs, NOW)
    code, out, _ = cli("import", "ocs", ocs, "--dry-run", "--json")
    assert code == 1  # something needs attention
    report = json.loads(out)
    lost = {(j["name"], n["field"]) for j in report["jobs"] for n in j["not_carried"]}
    assert lost == UNMAPPABLE
    assert not report["committed"] and not Path(cli.db).exists()  # a dry run creates nothing
    assert {a["alias"]: a["status"] for a in report["aliases"]} == {
        "ops": "missing from config",
        "oncall": "missing from config",
    }
    assert 'ops = { channel = "telegram", target = "-100123" }' in report["alias_config"]
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["runs"]["history"] and tables["runs"]["rows"] == 7
    code, text_out, _ = cli("import", "ocs", ocs, "--dry-run")
    assert code == 1 and "not carried: ttl_hours = 48" in text_out


def test_import_twice_creates_nothing_twice_and_a_second_import_updates(
    cli: Cli, tmp_path: Path
) -> None:
    ocs = str(tmp_path / "ocs.db")
    ids = realistic(ocs, NOW)
    _import(cli, ocs)
    counts = [
        cli.rows(f"SELECT COUNT(*) FROM {t}")[0][0]
        for t in ("jobs", "dispatches", "messages", "agents", "runs", "approvals")
    ]
    again = _import(cli, ocs)
    assert again["summary"] == {
        "jobs": {"unchanged": 36},
        "agents": {"unchanged": 2},
        "dispatches": {"unchanged": 4},
        "messages": {"unchanged": 3},
    }
    assert counts == [
        cli.rows(f"SELECT COUNT(*) FROM {t}")[0][0]
        for t in ("jobs", "dispatches", "messages", "agents", "runs", "approvals")
    ]
    # OCS ran on: digest-berlin fired and moved on, a new job was added
    db = sqlite3.connect(ocs)
    later = cron_next(
        "0 8 * * 1-5", "Europe/Berlin", cron_next("0 8 * * 1-5", "Europe/Berlin", NOW)
    )
    db.execute(
        "UPDATE jobs SET next_run_at = ?, last_run_at = ?, last_status = 'ok' WHERE id = ?",
        (text(later), text(NOW), ids["digest-berlin"]),
    )
    db.execute(
        "INSERT INTO jobs (id, name, schedule_cron, schedule_tz, payload_message, delivery_mode,"
        " next_run_at) VALUES ('new-1', 'brand new', '0 9 * * *', 'UTC', 'hi', 'none', ?)",
        (text(cron_next("0 9 * * *", "UTC", NOW)),),
    )
    db.commit()
    db.close()
    third = _import(cli, ocs)
    status = {j["name"]: j["status"] for j in third["jobs"]}
    assert status["digest-berlin"] == "updated" and status["brand-new"] == "created"
    assert third["summary"]["jobs"] == {"unchanged": 35, "updated": 1, "created": 1}
    assert cli.json("jobs", "next", "digest-berlin", "-n", "1")["next"] == [later]


def test_a_job_shepherd_rejects_blocks_the_import_unless_partial(cli: Cli, tmp_path: Path) -> None:
    ocs = str(tmp_path / "ocs.db")
    db = OcsDb(ocs)
    db.cron_job("fine", "0 9 * * *", "UTC", NOW)
    db.job(
        "seconds", schedule_cron="*/30 * * * * *", next_run_at=text(NOW + 30)
    )  # croner's 6 fields
    db.job(
        "mars", schedule_cron="0 9 * * *", schedule_tz="Mars/Olympus", next_run_at=text(NOW + 60)
    )
    parent = db.job("bad-parent", schedule_cron="0 9 * * *", schedule_tz="Nowhere/Land")
    db.child("orphaned-by-reject", parent, "success")
    db.close()
    code, out, _ = cli("import", "ocs", ocs, "--json")
    report = json.loads(out)
    assert code == 1 and report["blocked"] and not report["committed"]
    errors = {j["name"]: j["error"] for j in report["jobs"] if j["status"] == "rejected"}
    assert set(errors) == {"seconds", "mars", "bad-parent", "orphaned-by-reject"}
    assert "cron" in errors["seconds"] and "Mars/Olympus" in errors["mars"]
    assert "not imported" in errors["orphaned-by-reject"]
    assert not Path(cli.db).exists() or cli.rows("SELECT COUNT(*) FROM jobs") == [(0,)]
    code, out, _ = cli("import", "ocs", ocs, "--partial", "--json")
    report = json.loads(out)
    assert code == 1 and report["committed"]
    assert [j["name"] for j in cli.json("jobs", "list")] == ["fine"]


def test_overdue_and_backed_off_slots_are_recorded_never_dropped(cli: Cli, tmp_path: Path) -> None:
    ocs = str(tmp_path / "ocs.db")
    db = OcsDb(ocs)
    # stopped for three hours: the hourly slots in between were missed
    db.job("hourly", schedule_cron="0 * * * *", next_run_at=text(NOW - 3 * 3600))
    # OCS's error backoff pushed the 5-minute job past two slots
    db.job(
        "backoff",
        schedule_cron="*/5 * * * *",
        next_run_at=text(NOW + 12 * 60),
        consecutive_errors=5,
    )
    # a run still running when OCS died: its slot is not run again
    crashed = db.job(
        "crashed",
        schedule_cron="0 * * * *",
        next_run_at=text(NOW - 1800),
        delivery_guarantee="at-least-once",
    )
    db.run(crashed, "running", started_at=text(NOW - 1800))
    db.close()
    _import(cli, ocs, code=0)
    skipped = cli.rows("SELECT job_name, reason FROM runs WHERE status = 'skipped' ORDER BY id")
    by_job: dict[str, list[str]] = {}
    for name, reason in skipped:
        by_job.setdefault(name, []).append(reason)
    # hourly: the slots at -3h, -2h, -1h and now (now is on time: it runs) → 3 missed
    assert by_job["hourly"] == ["missed"] * 3
    assert cli.json("jobs", "next", "hourly", "-n", "1")["next"] == [NOW]
    assert by_job["backoff"] == ["backoff"] * 2  # +5 and +10 minutes passed over
    assert cli.json("jobs", "next", "backoff", "-n", "1")["next"] == [NOW + 12 * 60]
    assert by_job["crashed"] == ["missed"]
    assert cli.json("jobs", "next", "crashed", "-n", "1")["next"] == [NOW]
    assert cli.rows("SELECT kind FROM dispatches WHERE job_name = 'crashed'") == [("replay",)]


def test_not_an_ocs_database_and_an_unknown_schema_version_exit_2(cli: Cli, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"hello, not sqlite" * 10)
    code, _, err = cli("import", "ocs", str(junk))
    assert code == 2 and "not an SQLite database" in err
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (id INTEGER)")
    code, _, err = cli("import", "ocs", str(other))
    assert code == 2 and "not an openclaw-scheduler database (no jobs table)" in err
    cli.ok("jobs", "add", "x", "--executor", "shell", "--target", "true")
    code, _, err = cli("import", "ocs", cli.db)
    assert code == 2 and "is a shepherd database" in err
    newer = str(tmp_path / "newer.db")
    OcsDb(newer, version=24).close()
    code, _, err = cli("import", "ocs", newer)
    assert code == 2 and "schema version 24 is not one this importer knows (it knows 23)" in err
    code, _, err = cli("import", "ocs", str(tmp_path / "missing.db"))
    assert code == 2 and "cannot read it" in err
    assert cli.rows("SELECT COUNT(*) FROM jobs") == [(1,)]  # nothing stored


def test_everything_mapped_exits_0(cli: Cli, tmp_path: Path) -> None:
    ocs = str(tmp_path / "ocs.db")
    db = OcsDb(ocs)
    job = db.cron_job(
        "plain", "0 9 * * *", "Europe/Berlin", NOW, session_target="shell", payload_message="true"
    )
    db.run(job, "ok")  # history: listed, needs no attention
    db.close()
    code, out, _ = cli("import", "ocs", ocs)
    assert code == 0, out
    assert "table runs (1 rows): not carried" in out


def test_a_name_taken_by_one_of_your_jobs_is_never_overwritten(cli: Cli, tmp_path: Path) -> None:
    cli.ok("jobs", "add", "nightly", "--executor", "shell", "--target", "mine")
    ocs = str(tmp_path / "ocs.db")
    db = OcsDb(ocs)
    parent = db.cron_job(
        "nightly",
        "0 3 * * *",
        "UTC",
        NOW,
        id="abcdef12-0000",
        session_target="shell",
        payload_message="theirs",
    )
    db.child("after", parent, "success", session_target="shell", payload_message="next")
    db.close()
    report = _import(cli, ocs, code=0)
    names = {j["ocs_name"]: j["name"] for j in report["jobs"]}
    assert names == {"nightly": "nightly-abcdef12", "after": "after"}
    jobs = {j["name"]: j for j in cli.json("jobs", "list")}
    assert jobs["nightly"]["target"] == "mine" and jobs["nightly-abcdef12"]["target"] == "theirs"
    after = cli.json("jobs", "show", "after")
    assert after.get("spec", after)["parent"] == "nightly-abcdef12"
    assert _import(cli, ocs, code=0)["summary"]["jobs"] == {"unchanged": 2}


def test_unknown_tables_and_columns_are_listed(cli: Cli, tmp_path: Path) -> None:
    ocs = str(tmp_path / "ocs.db")
    db = OcsDb(ocs)
    db.sql("ALTER TABLE jobs ADD COLUMN plugin_flag TEXT")
    db.sql("CREATE TABLE plugin_state (k TEXT, v TEXT)")
    db.sql("INSERT INTO plugin_state VALUES ('a', 'b')")
    db.cron_job("flagged", "0 9 * * *", "UTC", NOW, session_target="shell", plugin_flag="on")
    db.close()
    report = _import(cli, ocs, "--dry-run")
    [job] = report["jobs"]
    assert [(n["field"], n["value"]) for n in job["not_carried"]] == [("plugin_flag", "on")]
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["plugin_state"]["rows"] == 1 and not tables["plugin_state"]["history"]
    assert "unknown table" in tables["plugin_state"]["reason"]
    assert "plugin_flag" in tables["jobs"]["reason"]


def test_history_keeps_the_newest_runs_of_each_job_once(cli: Cli, tmp_path: Path) -> None:
    ocs = str(tmp_path / "ocs.db")
    db = OcsDb(ocs)
    job = db.cron_job("often", "*/5 * * * *", "UTC", NOW, session_target="shell")
    for k in range(5):
        db.run(
            job,
            "error" if k == 0 else "ok",
            id=f"r{k}",
            started_at=text(NOW - 600 + 60 * k),
            finished_at=text(NOW - 590 + 60 * k),
            summary=f"run {k}",
            shell_exit_code=k,
        )
    db.run(job, "awaiting_approval", id="r-wait")  # not finished: never a record
    db.close()
    report = _import(cli, ocs, "--history", "3", code=0)
    assert report["summary"]["runs"] == {"created": 3}
    rows = cli.rows("SELECT status, exit_code, reason, details FROM runs ORDER BY started_at")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("ok", 2, "imported"),
        ("ok", 3, "imported"),
        ("ok", 4, "imported"),
    ]
    assert json.loads(rows[0][3])["ocs_run_id"] == "r2"
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["runs"]["rows"] == 3 and tables["runs"]["history"]  # 6 - 3 carried
    again = _import(cli, ocs, "--history", "3", code=0)
    assert again["summary"]["runs"] == {"unchanged": 3}
    assert cli.rows("SELECT COUNT(*) FROM runs") == [(3,)]
