"""``shepherd --url URL ...`` against a real served runtime (in a thread of its own,
through an anyio blocking portal): the remote commands print what the local ones print
on the same database; a command without a remote form exits 2 naming --url; a refused
token exits 1; and one real ``python -m shepherd --url`` subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest

from shepherd import Discard, JobSpec
from shepherd.store.models import ApprovalPolicy
from tests.cli_helpers import Cli, clean_cli
from tests.http_helpers import ADMIN, READ, Served, serve


async def ok(payload: dict[str, Any]) -> None:
    return None


async def dies(payload: dict[str, Any]) -> None:
    raise Discard("no")


class Remote:
    def __init__(self, srv: Served, portal: Any, cli: Cli) -> None:
        self.srv, self.portal, self.cli = srv, portal, cli

    def __call__(self, *argv: str, token: str = ADMIN) -> tuple[int, str, str]:
        return self.cli("--url", self.srv.url, "--token", token, *argv)

    def call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        return self.portal.call(lambda: fn(*args, **kw))


@pytest.fixture
def remote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Remote]:
    cli = clean_cli(tmp_path, capsys, monkeypatch, "remote.db")
    monkeypatch.delenv("SHEPHERD_TOKEN", raising=False)
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(serve(cli.db, shutdown_grace=1)) as srv,
    ):
        srv.rt.register("ok", ok)
        srv.rt.register("dies", dies)
        gate = ApprovalPolicy()
        for spec in (JobSpec(name="j", target="ok"), JobSpec(name="d", target="dies"),
                     JobSpec(name="g", target="ok", approval=gate,
                             options={"delivery_to": "@ops"})):  # fmt: skip
            portal.call(srv.rt.add_job, spec)
        yield Remote(srv, portal, cli)


def test_remote_commands_print_what_local_ones_do(remote: Remote) -> None:
    code, out, err = remote("enqueue", "j", "--payload", '{"a": 1}', "--priority", "high")
    assert code == 0, err
    first = int(out)
    keyed = remote("enqueue", "j", "--idempotency-key", "k1", "--json")[1]
    again = remote("enqueue", "j", "--idempotency-key", "k1")[1]
    assert (
        again.strip()
        == f"{json.loads(keyed)['id']} (the existing dispatch of idempotency key 'k1')"
    )
    assert json.loads(keyed)["duplicate"] is False
    assert remote.call(remote.srv.rt.wait, first, timeout=10).status == "done"
    doomed = [int(remote("enqueue", "d")[1]) for _ in range(3)]
    for i in doomed:
        remote.call(remote.srv.rt.wait, i, timeout=10)

    local = remote.cli
    for argv in (("runs", "list"), ("runs", "list", "--job", "d", "--status", "error"),
                 ("runs", "show", "1"), ("dlq", "list"), ("runs", "list", "--json")):  # fmt: skip
        code, out, err = remote(*argv)
        assert code == 0, err
        assert out == local.ok(*argv), argv
    code, out, _ = remote("status")
    lines = dict(line.split("  ", 1) for line in out.splitlines() if "  " in line)
    assert code == 0 and lines["dead letters"].strip() == "3"
    assert lines["daemon"].strip() == f"serving (pid {os.getpid()})"
    here = local.ok("status").splitlines()
    assert out.splitlines()[:6] == here[:6]  # database ... jobs: as the local command
    assert remote("status", "--json")[0] == 0

    code, out, err = remote("dlq", "retry", str(doomed[0]), "999999")
    assert code == 1 and f"retried 1 dead letter(s): {doomed[0]}" in out
    assert "not dead letters: 999999" in err
    remote.call(remote.srv.rt.wait, doomed[0], timeout=10)
    code, out, err = remote("dlq", "purge", "--all")
    assert code == 0 and out.strip() == "purged 3 dead letter(s)", err
    assert remote.call(remote.srv.rt.stats)["dispatches"]["dead"] == 0
    assert remote("dlq", "purge")[0] == 2  # nothing chosen: bad input

    gated = [int(remote("enqueue", "g")[1]) for _ in range(2)]
    code, out, _ = remote("approvals", "list", "--status", "pending")
    assert code == 0 and out == local.ok("approvals", "list", "--status", "pending")
    pending = {a.dispatch_id: a.id for a in remote.call(remote.srv.rt.approvals, "pending")}
    code, out, _ = remote("approvals", "approve", str(pending[gated[0]]), "--by", "alice")
    assert code == 0 and out.strip() == (
        f"approval {pending[gated[0]]} approved: dispatch {gated[0]} queued"
    )
    assert remote("approvals", "approve", str(pending[gated[0]]))[0] == 1  # conflict
    code, out, _ = remote("approvals", "reject", str(pending[gated[1]]), "--reason", "no")
    assert code == 0 and "rejected" in out
    assert remote.call(remote.srv.rt.dispatch, gated[1]).status == "cancelled"


def test_remote_refusals(remote: Remote) -> None:
    before = remote.call(remote.srv.rt.stats)
    code, _, err = remote("jobs", "list")
    assert code == 2 and "--url" in err and "jobs list" in err
    code, _, err = remote("enqueue", "j", token="wrong")
    assert code == 1 and "unknown token" in err
    code, _, err = remote("enqueue", "j", token=READ)
    assert code == 1 and "scope" in err
    code, _, err = remote("enqueue", "nope")
    assert code == 1 and "no job named 'nope'" in err
    code, _, err = remote("enqueue", "j", "--delay", "1s", "--not-before", "2030-01-01T00:00Z")
    assert code == 2
    code, _, err = remote("enqueue", "j", "--idempotency-key", " ")
    assert code == 2 and "--idempotency-key" in err, err
    code, _, err = remote("runs", "show", "999999")
    assert code == 1 and "no run 999999" in err
    assert remote.call(remote.srv.rt.stats) == before
    code, _, err = remote.cli("--url", "http://127.0.0.1:9", "status")
    assert code == 1 and "--url http://127.0.0.1:9" in err


def test_a_real_subprocess_with_the_token_from_the_environment(remote: Remote) -> None:
    env = {**os.environ, "SHEPHERD_TOKEN": ADMIN}
    done = subprocess.run(
        [sys.executable, "-m", "shepherd", "--url", remote.srv.url, "enqueue", "j", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"job": "j"' in done.stdout or '"job":"j"' in done.stdout
    assert ADMIN not in done.stdout + done.stderr


def test_cancel_twice_exits_1_the_second_time_remote_and_local(remote: Remote) -> None:
    """The second cancel of a dispatch finds it ended (cancelled): exit 1 and the same
    message with ``--url`` (the API's 409) as on the local database."""
    for via, cli in (("remote", remote), ("local", remote.cli)):  # local: the file served
        code, out, err = cli("enqueue", "j", "--delay", "1h")
        assert code == 0, (via, err)
        dispatch_id = int(out)
        code, out, err = cli("cancel", str(dispatch_id))
        assert (code, out.strip()) == (0, f"dispatch {dispatch_id} cancelled"), (via, err)
        code, out, err = cli("cancel", str(dispatch_id))
        assert code == 1 and out == "", via
        assert f"dispatch {dispatch_id} already ended (cancelled); nothing to cancel" in err, via


def test_a_job_name_with_a_slash_remote_and_local(remote: Remote) -> None:
    """``--url`` sends job names in bodies and query strings: ``a/b`` works as ``j`` does."""
    remote.call(remote.srv.rt.add_job, JobSpec(name="a/b", target="ok"))
    code, out, err = remote("enqueue", "a/b")
    assert code == 0, err
    assert remote.call(remote.srv.rt.wait, int(out), timeout=10).status == "done"
    argv = ("runs", "list", "--job", "a/b")
    code, out, err = remote(*argv)
    assert code == 0 and "a/b" in out and out == remote.cli.ok(*argv), err


def test_remote_status_json_is_the_local_one(remote: Remote) -> None:
    """``--url status --json`` prints what the local command prints on the file the
    daemon serves: the same keys in the same order, times as ISO text; only the live
    health snapshot may have moved on between the two reads."""
    remote.call(remote.srv.rt.pause, "job", "j", "maintenance")
    code, out, err = remote("status", "--json")
    assert code == 0, err
    got, here = json.loads(out), json.loads(remote.cli.ok("status", "--json"))
    assert list(got) == list(here)
    assert "extra" not in got and "breakers" not in got and "pauses" in got
    assert got["pauses"][0]["paused_at"] == here["pauses"][0]["paused_at"]
    assert isinstance(got["pauses"][0]["paused_at"], str)  # ISO, as the local one
    snapshot = got.pop("instance")
    here.pop("instance")
    assert snapshot is None or isinstance(snapshot["updated_at"], str)
    assert got == here
