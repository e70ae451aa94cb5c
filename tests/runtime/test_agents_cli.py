"""``shepherd agents ...`` in-process (``main(argv)``): the registry, bad input, status."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from shepherd.store.factory import is_postgres, open_store
from tests.runtime.test_cli import Cli

pytestmark = pytest.mark.engines("sqlite", "postgresql")


class _Cli(Cli):
    def rows(self, table: str) -> int:
        """How many agents / dispatches the database holds (through the store)."""
        if not is_postgres(self.db) and not Path(self.db).exists():
            return 0

        async def count() -> int:
            store = await open_store(self.db)
            try:
                if table == "agents":
                    return len(await store.agents())
                assert table == "dispatches"
                return len(await store.dispatches())
            finally:
                await store.close()

        return anyio.run(count)


@pytest.fixture
def cli(
    db_path: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    monkeypatch.chdir(tmp_path)  # no stray ./shepherd.toml
    for name in ("DATABASE", "CONCURRENCY", "LOG_LEVEL"):
        monkeypatch.delenv(f"SHEPHERD_{name}", raising=False)
    return _Cli(db_path, capsys)


def test_agents_lifecycle(cli: Cli) -> None:
    out = cli.json("agents", "add", "coder", "--capabilities", "Python,git", "--max-concurrent=2")
    assert (out["id"], out["capabilities"]) == ("coder", ["git", "python"])
    assert out["max_concurrent"] == 2
    assert out["status"] == "ready" and out["source"] == "api"
    cli.ok("agents", "add", "gpu", "--capabilities", "gpu", "--policy", "on-demand",
           "--status", "sleeping", "--model", "big")  # fmt: skip
    listed = cli.ok("agents", "list")
    assert "coder" in listed and "git,python" in listed and "0/2" in listed
    assert cli.json("agents", "update", "coder", "--capabilities", "docs")["capabilities"] == [
        "docs"
    ]
    assert cli.json("agents", "drain", "coder")["status"] == "draining"
    assert cli.json("agents", "undrain", "coder")["status"] == "ready"
    assert cli.json("agents", "update", "coder", "--status", "offline")["status"] == "offline"
    beat = cli.json("agents", "heartbeat", "coder")
    assert beat["status"] == "ready" and beat["last_seen"] is not None
    assert cli.json("agents", "heartbeat", "gpu", "--status", "busy")["status"] == "busy"
    status = cli.json("status")
    assert status["agents"] == {"count": 2, "by_status": {"ready": 1, "busy": 1}}
    assert "agents" in cli.ok("status")
    assert cli.json("agents", "rm", "gpu") == {"id": "gpu", "removed": True}
    assert [a["id"] for a in cli.json("agents", "list")] == ["coder"]
    assert cli.json("agents", "show", "coder")["name"] == "coder"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (("add", "a", "--capabilities", "ok,"), "--capabilities"),
        (("add", "a", "--capabilities", "has space"), "--capabilities"),
        (("add", "a", "--max-concurrent", "0"), "--max-concurrent"),
        (("add", "bad id"), "ID"),
        (("add", "a", "--wake-timeout", "0"), "--wake-timeout"),
    ],
)
def test_bad_input_exits_2_naming_the_flag(cli: Cli, argv: tuple[str, ...], flag: str) -> None:
    code, _, err = cli("agents", *argv)
    assert code == 2, err
    assert flag in err
    assert cli.rows("agents") == 0


def test_unknown_agent_exits_1_and_changes_nothing(cli: Cli) -> None:
    cli.ok("agents", "add", "a")
    for argv in (("drain", "ghost"), ("undrain", "ghost"), ("rm", "ghost"), ("show", "ghost"),
                 ("heartbeat", "ghost"), ("update", "ghost", "--model", "m")):  # fmt: skip
        code, _, err = cli("agents", *argv)
        assert code == 1, (argv, err)
        assert "ghost" in err
    code, _, err = cli("agents", "add", "a")
    assert code == 2 and "exists" in err
    code, _, err = cli("agents", "update", "a", "--max-concurrent", "0")
    assert code == 2
    assert cli.json("agents", "show", "a")["max_concurrent"] == 3


def test_enqueue_capabilities_flag(cli: Cli) -> None:
    cli.ok("jobs", "add", "j", "--executor", "shell", "--target", "true")
    code, _, err = cli("enqueue", "j", "--capabilities", "gpu,*")
    assert code == 2 and "--capabilities" in err
    assert cli.rows("dispatches") == 0
    dispatch_id = int(cli.ok("enqueue", "j", "--capabilities", "GPU", "--owner", "bob"))
    assert dispatch_id == 1 and cli.rows("dispatches") == 1
