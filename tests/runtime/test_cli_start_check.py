"""``start_check``: the integrity check the runtime runs at start (``auto``, ``full``,
``bounded``, ``off``), from the config file or ``SHEPHERD_START_CHECK``; a bad value is
bad input naming the field (exit 2) before anything opens the database; ``config
init`` writes it with its comment; ``status`` shows which check the runtime ran.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shepherd.runtime.cli import main
from shepherd.runtime.config import load_config
from shepherd.store.errors import ConfigError
from shepherd.store.sqlite import integrity


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # no stray ./shepherd.toml
    for name in ("DATABASE", "CONCURRENCY", "LOG_LEVEL", "START_CHECK"):
        monkeypatch.delenv(f"SHEPHERD_{name}", raising=False)
    return str(tmp_path / "cli.db")


def test_start_check_defaults_to_auto_and_takes_the_environment(db: str) -> None:
    assert load_config(env={}).start_check == "auto"
    for value in ("auto", "full", "bounded", "off"):
        assert load_config(env={"SHEPHERD_START_CHECK": value}).start_check == value
    with pytest.raises(ConfigError) as info:
        load_config(env={"SHEPHERD_START_CHECK": "sometimes"})
    assert "start_check" in str(info.value)


@pytest.mark.parametrize("where", ["env", "toml"])
def test_a_bad_start_check_names_the_field_and_exits_2(
    db: str,
    where: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--database", db]
    if where == "env":
        monkeypatch.setenv("SHEPHERD_START_CHECK", "quick")
    else:
        Path("shepherd.toml").write_text('start_check = "quick"\n')
        argv = ["--config", "shepherd.toml", *argv]
    assert main([*argv, "run", "--exit-when-idle", "--for", "10s"]) == 2
    err = capsys.readouterr().err
    assert "start_check" in err and "quick" in err
    assert not Path(db).exists()  # refused before the database was opened


def test_config_init_writes_start_check_with_its_comment(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "init", "shepherd.toml"]) == 0
    lines = Path("shepherd.toml").read_text().splitlines()
    at = lines.index('start_check = "auto"')
    comment = []
    for line in reversed(lines[:at]):
        if not line.startswith("#"):
            break
        comment.insert(0, line)
    text = " ".join(comment)
    for word in ("full", "bounded", "off", "auto", "256 MiB", "doctor"):
        assert word in text, word
    assert load_config("shepherd.toml", env={}).start_check == "auto"


@pytest.mark.parametrize(("setting", "shown"), [("bounded", "bounded"), ("off", "none (off)")])
def test_status_shows_which_start_check_the_daemon_ran(
    db: str,
    setting: str,
    shown: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--database", db, "jobs", "add", "a", "--target", "x"]) == 0  # the file exists
    monkeypatch.setattr(integrity, "FULL_UP_TO", 0)  # as if the file were large
    monkeypatch.setenv("SHEPHERD_START_CHECK", setting)
    assert main(["--database", db, "run", "--exit-when-idle", "--for", "20s"]) == 0
    err = capsys.readouterr().err
    assert f'start_check="{shown}' in err  # the daemon's ready line
    assert ("without an integrity check" in err) == (setting == "off")
    monkeypatch.delenv("SHEPHERD_START_CHECK")
    assert main(["--database", db, "status", "--json"]) == 0
    health = json.loads(capsys.readouterr().out)["instance"]["health"]
    assert health["start_check"].startswith(shown)
    assert main(["--database", db, "status"]) == 0
    assert re.search(rf"^start check\s+{re.escape(shown)}", capsys.readouterr().out, re.M)
