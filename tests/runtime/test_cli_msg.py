"""``shepherd msg ...`` in-process (``main(argv)``): send, inbox order, read, ack,
thread, ``--json``; spawn messages from the CLI (run by the daemon path, then the
one-shot is gone) and a bad spawn body failed visibly (also in ``status``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import pytest

from shepherd.store.factory import open_store
from shepherd.store.models import Dispatch, JobRow, Message
from tests.cli_helpers import Cli, clean_cli

pytestmark = pytest.mark.engines("sqlite", "postgresql")


@pytest.fixture
def cli(
    db_path: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    clean_cli(tmp_path, capsys, monkeypatch, "unused.db")  # the clean environment
    return Cli(db_path, capsys)


def _stored(cli: Cli) -> tuple[list[Message], list[Dispatch], list[JobRow]]:
    """What the database holds (through the store, on either engine)."""

    async def read() -> tuple[list[Message], list[Dispatch], list[JobRow]]:
        store = await open_store(cli.db)
        try:
            return await store.messages(limit=1000), await store.dispatches(), await store.jobs()
        finally:
            await store.close()

    return anyio.run(read)


def _messages(cli: Cli) -> list[str]:
    return [m.status for m in _stored(cli)[0]]


def _dispatches(cli: Cli) -> list[tuple[str, str]]:
    return [(d.kind, d.status) for d in _stored(cli)[1]]


def _jobs(cli: Cli) -> list[str]:
    return [j.spec.name for j in _stored(cli)[2]]


def test_send_inbox_read_ack_and_thread(cli: Cli) -> None:
    first = int(cli.ok("msg", "send", "--from", "ops", "--to", "main", "hello").strip())
    rule = cli.json("msg", "send", "--from", "lead", "--to", "main", "--kind", "constraint",
                    "no deploys on friday")["id"]  # fmt: skip
    urgent = cli.json("msg", "send", "--from", "ops", "--to", "main", "--priority", "urgent",
                      "--reply-to", str(first), "--subject", "re", "disk full")["id"]  # fmt: skip
    cli.ok("msg", "send", "--from", "ops", "--to", "other", "not for main")
    inbox = cli.json("msg", "inbox", "main")
    # OCS order: constraint first, then priority high → low, then oldest first
    assert [m["id"] for m in inbox] == [rule, urgent, first]
    assert inbox[1]["priority"] == 2 and inbox[1]["reply_to"] == first
    assert "no deploys on friday" in cli.ok("msg", "inbox", "main")
    assert cli.json("msg", "read", str(first))["read"] == 1
    assert cli.json("msg", "ack", str(urgent), str(rule))["ack"] == 2
    assert cli.json("msg", "inbox", "main") == []
    every = cli.json("msg", "inbox", "main", "--all")
    assert {m["status"] for m in every} == {"read"}
    assert all(m["ack_at"] for m in every if m["id"] in (urgent, rule))
    thread = cli.json("msg", "thread", str(urgent))
    assert [m["id"] for m in thread] == [first, urgent]
    assert "disk full" in cli.ok("msg", "thread", str(first))


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["--from", "a", "--to", "b", "   "], 2, "BODY"),
        (["--from", " ", "--to", "b", "x"], 2, "--from"),
        (["--from", "a", "--to", "b", "--priority", "top", "x"], 2, "--priority"),
        (["--from", "a", "--to", "b", "--kind", "memo", "x"], 2, "--kind"),
        (["--from", "a", "--to", "b", "--reply-to", "999", "x"], 2, "--reply-to"),
        (["--from", "a", "--to", "b"], 2, "BODY"),
    ],
)
def test_bad_send_flags_name_the_flag_and_store_nothing(
    cli: Cli, argv: list[str], code: int, needle: str
) -> None:
    cli.ok("msg", "send", "--from", "a", "--to", "b", "the one stored")
    got, _, err = cli("msg", "send", *argv)
    assert got == code and needle in err, err
    assert len(_messages(cli)) == 1


def test_unknown_ids_exit_1_and_mark_nothing(cli: Cli) -> None:
    msg_id = cli.ok("msg", "send", "--from", "a", "--to", "b", "x").strip()
    for argv in (("read", msg_id, "999"), ("ack", "999"), ("thread", "999")):
        code, _, err = cli("msg", *argv)
        assert code == 1 and "no message 999" in err
    assert _messages(cli) == ["pending"]


# sqlite only for now: on PostgreSQL, ``run --exit-when-idle`` may stop before the
# scheduler commits the one-shot's removal (the next start repairs it)
@pytest.mark.engines("sqlite")
def test_a_spawn_from_the_cli_runs_once_under_the_daemon_then_is_gone(
    cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "spawned.txt"
    body = json.dumps({"payload_message": f"echo ran >> {out}", "session_target": "shell"})
    sent = cli.json("msg", "send", "--from", "planner", "--to", "main", "--kind", "spawn", body)
    assert sent["status"] == "delivered" and sent["job"] == f"spawned-by-planner-{sent['id']}"
    assert _dispatches(cli) == [("spawn", "queued")]
    cli.ok("run", "--exit-when-idle", "--for", "20s")
    assert out.read_text() == "ran\n"
    assert _jobs(cli) == []  # removed after its run
    assert _dispatches(cli) == [("spawn", "done")]


def test_a_bad_spawn_body_fails_the_message_visibly(cli: Cli) -> None:
    code, out, err = cli("msg", "send", "--from", "w", "--to", "main", "--kind", "spawn",
                         "--json", '{"executor": "shell"}')  # fmt: skip
    assert code == 1 and "failed: target" in err
    assert json.loads(out)["status"] == "failed"
    code, _, err = cli("msg", "send", "--from", "w", "--to", "main", "--kind", "spawn", "{no")
    assert code == 1 and "failed: body" in err
    code, _, err = cli("msg", "send", "--from", "w", "--to", "main", "--kind", "spawn",
                       '{"name": "x"}')  # fmt: skip
    assert code == 1 and "failed: target" in err  # a python job with nothing to run
    assert _jobs(cli) == []
    assert _messages(cli) == ["failed"] * 3
    status = cli.json("status")
    assert status["spawn_failed"]["count"] == 3
    assert status["spawn_failed"]["latest"][0]["error"].startswith("target")  # newest first
    assert re.search(r"failed spawns +3 ", cli.ok("status"))  # labels padded to the longest
    listed = cli.ok("msg", "inbox", "main", "--all")
    assert "[target:" in listed
