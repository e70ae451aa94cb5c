"""``shepherd approvals ...`` and the approval job flags, through the CLI in-process."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from shepherd.runtime.cli import main

FLAGS = ["--executor", "shell", "--target", "true", "--delivery", "none"]


def run(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database", db, *args])
    out, err = capsys.readouterr()
    return code, out, err


def jrun(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> Any:
    code, out, err = run(capsys, db, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_gate_flags_list_approve_reject(db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, db_path, "jobs", "add", "deploy", *FLAGS, "--delivery-to", "@ops",
        "--approval-timeout", "30m", "--approval-on-timeout", "approve",
        "--approval-max-pending", "5", "--approval-sources", "enqueue,chain",
    )  # fmt: skip
    assert code == 0, err
    spec = jrun(capsys, db_path, "jobs", "show", "deploy")
    approval = (spec.get("spec") or spec)["approval"]
    assert approval == {
        "required": True, "timeout": 1800.0, "on_timeout": "approve", "max_pending": 5,
        "sources": ["enqueue", "chain"],
    }  # fmt: skip
    first = jrun(capsys, db_path, "enqueue", "deploy")["id"]
    second = jrun(capsys, db_path, "enqueue", "deploy")["id"]
    pending = jrun(capsys, db_path, "approvals", "list", "--status", "pending")
    assert [a["dispatch_id"] for a in pending] == [second, first]
    status = jrun(capsys, db_path, "status")
    assert status["dispatches"]["awaiting_approval"] == 2
    assert status["approvals_pending"] == 2
    code, out, _ = run(capsys, db_path, "status")
    assert "approvals" in out and "2 pending" in out
    a_first, a_second = pending[1]["id"], pending[0]["id"]
    got = jrun(capsys, db_path, "approvals", "approve", str(a_first), "--by", "alice")
    assert got["status"] == "approved" and got["dispatch"] == first
    code, _, err = run(capsys, db_path, "approvals", "approve", str(a_first), "--by", "bob")
    assert code == 1
    assert f"approval {a_first} is already approved by alice" in err
    code, out, err = run(
        capsys, db_path, "approvals", "reject", str(a_second), "--reason", "freeze", "--by", "bob"
    )
    assert code == 0, err
    assert "rejected" in out
    with sqlite3.connect(db_path) as conn:
        rows = dict(conn.execute("SELECT id, status FROM dispatches").fetchall())
        assert rows == {first: "queued", second: "cancelled"}
    code, out, _ = run(capsys, db_path, "approvals", "list", "--job", "deploy")
    assert "alice" in out and "freeze" in out
    code, _, err = run(capsys, db_path, "approvals", "approve", "99")
    assert code == 1 and "no approval 99" in err


def _jobs(db: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


def test_bad_input_exits_2_and_stores_nothing(
    db_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, db_path, "jobs", "add", "deploy", *FLAGS, "--approval")
    assert code == 2 and "options.delivery_to" in err
    code, _, err = run(
        capsys, db_path, "jobs", "add", "deploy", *FLAGS, "--delivery-to", "@ops",
        "--approval-sources", "nightly",
    )  # fmt: skip
    assert code == 2 and ("--approval-sources" in err or "approval.sources" in err), err
    code, _, err = run(
        capsys, db_path, "jobs", "add", "deploy", *FLAGS, "--delivery-to", "@ops",
        "--approval-timeout", "0s",
    )  # fmt: skip
    assert code == 2 and "approval" in err
    assert not Path(db_path).exists() or _jobs(db_path) == 0
    code, _, _ = run(capsys, db_path, "approvals", "reject", "1")  # --reason is required
    assert code == 2
    code, _, _ = run(capsys, db_path, "approvals", "list", "--status", "maybe")
    assert code == 2


def test_job_file_and_export_round_trip(
    db_path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(
        '[[jobs]]\nname = "deploy"\nexecutor = "shell"\ntarget = "true"\n'
        '[jobs.options]\ndelivery = "none"\ndelivery_to = "@ops"\n'
        '[jobs.approval]\ntimeout = "2h"\nmax_pending = 3\nsources = ["chain"]\n'
    )
    code, _, err = run(capsys, db_path, "jobs", "add", "--file", str(jobs))
    assert code == 0, err
    exported = tmp_path / "out.toml"
    code, _, err = run(capsys, db_path, "jobs", "export", "-o", str(exported))
    assert code == 0, err
    assert "[jobs.approval]" in exported.read_text()
    code, _, err = run(capsys, db_path, "jobs", "rm", "deploy")
    assert code == 0, err
    code, _, err = run(capsys, db_path, "jobs", "add", "--file", str(exported))
    assert code == 0, err
    spec = jrun(capsys, db_path, "jobs", "show", "deploy")
    approval = (spec.get("spec") or spec)["approval"]
    assert (approval["timeout"], approval["max_pending"], approval["sources"]) == (
        7200.0, 3, ["chain"],
    )  # fmt: skip
    # an enqueue is not gated by sources = ["chain"]; --no-approval removes the gate
    d = jrun(capsys, db_path, "enqueue", "deploy")
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT status FROM dispatches WHERE id = ?", (d["id"],)).fetchone()
        assert conn.execute("SELECT COUNT(*) FROM approvals").fetchone() == (0,)
    code, _, err = run(capsys, db_path, "jobs", "update", "deploy", "--no-approval")
    assert code == 0, err
    spec = jrun(capsys, db_path, "jobs", "show", "deploy")
    assert (spec.get("spec") or spec).get("approval") is None


def test_a_gated_job_with_default_sources_round_trips_through_export(
    db_path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``approval.sources`` unset (None: every kind but run_now) is left out of an export,
    as every unset optional field is: it is the default, and TOML has no null."""
    for name, extra in (("gated", ()), ("slow", ("--approval-timeout", "2h"))):
        code, _, err = run(
            capsys, db_path, "jobs", "add", name, *FLAGS, "--approval", "--delivery-to", "@ops",
            *extra,
        )  # fmt: skip
        assert code == 0, err
    specs = {n: jrun(capsys, db_path, "jobs", "show", n)["spec"] for n in ("gated", "slow")}
    assert specs["gated"]["approval"]["sources"] is None
    for fmt in ("toml", "json"):
        out = tmp_path / f"jobs.{fmt}"
        code, _, err = run(capsys, db_path, "jobs", "export", "-o", str(out))
        assert code == 0, err
        text = out.read_text()
        assert "sources" not in text and "null" not in text
        assert ("required = true" in text) == (fmt == "toml")
        for n in specs:
            assert run(capsys, db_path, "jobs", "rm", n)[0] == 0
        code, _, err = run(capsys, db_path, "jobs", "add", "--file", str(out))
        assert code == 0, err
        assert {n: jrun(capsys, db_path, "jobs", "show", n)["spec"] for n in specs} == specs
        code, again, _ = run(capsys, db_path, "jobs", "export", "--format", fmt)
        assert again == text


def test_export_names_the_field_that_holds_a_null(
    db_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, db_path, "jobs", "add", "n", *FLAGS, "--payload", '{"a": [1, {"b": null}]}'
    )
    assert code == 0, err
    code, out, err = run(capsys, db_path, "jobs", "export", "n")
    assert code == 2 and not out
    assert "job 'n': payload.a[1].b is null, which TOML cannot write; use --format json" in err
