"""The CLI's human side, through the real CLI (a subprocess): times in local time or
``--tz`` (UTC in ``--json``), human durations, progress bars only on a terminal, shell
completion, an example in every ``--help``, the first-run hint, and ``config init``
with every key of ``Config`` at its real default."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest

from shepherd.runtime.cli import build_parser, main
from shepherd.runtime.config import Config, load_config
from tests.runtime.test_cli_jobfields import Sh, _with_pty_stderr


@pytest.fixture
def sh(tmp_path: Path) -> Sh:
    return Sh(tmp_path)


AT = "2030-01-01T00:00:00Z"


def test_times_in_local_time_or_tz_and_utc_in_json(sh: Sh) -> None:
    sh.ok("jobs", "add", "once", "--executor", "shell", "--target", "true", "--at", AT)
    assert "2030-01-01 00:00:00 UTC" in sh.ok("jobs", "next", "once")  # TZ=UTC: local
    sh.env["TZ"] = "America/New_York"
    assert "2029-12-31 19:00:00 EST" in sh.ok("jobs", "next", "once")
    out = sh.ok("--tz", "Asia/Tokyo", "jobs", "next", "once")
    assert "2030-01-01 09:00:00 JST" in out and "T00:00:00" not in out
    assert "2030-01-01 09:00:00 JST" in sh.ok("jobs", "list", "--tz", "Asia/Tokyo")
    shown = sh.ok("--tz", "Asia/Tokyo", "jobs", "show", "once")
    assert "2030-01-01 09:00:00 JST" in shown
    data = json.loads(sh.ok("--tz", "Asia/Tokyo", "jobs", "show", "once", "--json"))
    assert data["next_run_at"] == "2030-01-01T00:00:00.000Z"
    # on jobs add / update --tz is the job's zone; the display zone goes first
    out = sh.ok("--tz", "Asia/Tokyo", "jobs", "add", "c", "--executor", "shell",
                "--target", "true", "--cron", "0 9 * * *", "--tz", "Asia/Tokyo")  # fmt: skip
    assert "09:00:00 JST" in out and sh.spec("c")["tz"] == "Asia/Tokyo"
    proc = sh("--tz", "Mars/Olympus", "jobs", "list")
    assert proc.returncode == 2 and "--tz: unknown time zone 'Mars/Olympus'" in proc.stderr


def test_durations_are_human_in_tables(sh: Sh) -> None:
    sh.ok("jobs", "add", "d", "--executor", "shell", "--target", "exit 1", "--every", "90s",
          "--timeout", "1h30m" if False else "5400", "--retry-max-attempts", "1")  # fmt: skip
    assert "every 1m30s" in sh.ok("jobs", "list")
    shown = sh.ok("jobs", "show", "d")
    assert "1h30m" in shown and '"base":"30s"' in shown and "5400" not in shown
    assert json.loads(sh.ok("jobs", "show", "d", "--json"))["spec"]["timeout"] == 5400.0
    sh.ok("jobs", "run", "d")
    sh.ok("run", "--exit-when-idle", "--for", "30s")
    runs = sh.ok("runs", "list")
    took = runs.splitlines()[1].split()
    assert any(w.endswith(("ms", "s")) and not w.endswith(".000s") for w in took), runs


def _dead_letters(sh: Sh, n: int) -> None:
    sh.ok("jobs", "add", "bad", "--executor", "shell", "--target", "exit 3",
          "--retry-max-attempts", "1")  # fmt: skip
    for _ in range(n):
        sh.ok("enqueue", "bad")
    sh.ok("run", "--exit-when-idle", "--for", "60s")
    assert len(json.loads(sh.ok("dlq", "list", "--json"))) == n


def test_dlq_retry_and_purge_all_show_progress_only_on_a_terminal(sh: Sh) -> None:
    _dead_letters(sh, 3)
    code, out, tty = _with_pty_stderr(sh, "dlq", "retry", "--all")
    assert code == 0 and "retried 3 dead letter(s)" in out
    assert "retrying dead letters [" in tty and "3/3 100%" in tty
    sh.ok("run", "--exit-when-idle", "--for", "60s")
    code, out, tty = _with_pty_stderr(sh, "dlq", "purge", "--all")
    assert code == 0 and "purged 3 dead letter(s)" in out
    assert "purging dead letters [" in tty and "3/3 100%" in tty
    _dead_letters(sh, 2)
    proc = sh("dlq", "retry", "--all")  # stderr a pipe
    assert proc.returncode == 0 and proc.stderr == ""


def _commands(
    p: argparse.ArgumentParser, path: str = "", *, groups: bool = False
) -> dict[str, argparse.ArgumentParser]:
    """Every command under ``p`` by its path; with ``groups``, the groups too."""
    out: dict[str, argparse.ArgumentParser] = {}
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: p}
    if groups and path:
        out[path] = p
    for name, child in subs[0].choices.items():
        out.update(_commands(child, f"{path} {name}".strip(), groups=groups))
    return out


def test_every_command_help_has_an_example(sh: Sh) -> None:
    commands = _commands(build_parser(), groups=True)
    assert {"jobs export", "completion", "jobs add", "dlq purge", "jobs", "spool"} <= set(commands)
    missing = [c for c, p in commands.items() if "example:\n  " not in (p.epilog or "")]
    assert not missing, f"no example in --help of: {missing}"
    out = sh.ok("jobs", "export", "--help")
    assert "example:\n  shepherd jobs export -o jobs.toml" in out and "exit codes:" in out


def test_completion_scripts_follow_the_parser(sh: Sh) -> None:
    script = sh.ok("completion", "bash")
    (sh.tmp / "c.bash").write_text(script)

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        probe = (
            f"source c.bash; COMP_WORDS=(shepherd {line}); COMP_CWORD={len(words)};"
            ' _shepherd; printf "%s\\n" "${COMPREPLY[@]}"'
        )
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, cwd=sh.tmp)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("jo") == ["jobs"]
    assert complete("jobs", "ex") == ["export"]
    assert {"--retry-factor", "--retry-jitter"} <= set(complete("jobs", "add", "x", "--retry-"))
    assert complete("jobs", "add", "x", "--misfire", "run_") == ["run_all", "run_once"]
    assert complete("completion", "") == ["bash", "zsh", "fish"]
    assert "--tz" in complete("status", "--")
    zsh = sh.ok("completion", "zsh")
    assert zsh.startswith("#compdef shepherd") and "bashcompinit" in zsh
    fish = sh.ok("completion", "fish")
    assert "complete -c shepherd" in fish and "case 'jobs add'" in fish
    assert "--retry-max-delay" in fish
    for shell, text in (("zsh", zsh), ("fish", fish)):
        if shutil.which(shell):  # syntax check where the shell is installed
            (sh.tmp / f"c.{shell}").write_text(text)
            done = subprocess.run([shell, "-n", f"c.{shell}"], capture_output=True, cwd=sh.tmp)
            assert done.returncode == 0, done.stderr
    assert sh("completion", "tcsh").returncode == 2


def test_first_run_hint_when_the_database_does_not_exist(sh: Sh) -> None:
    for argv in (["jobs", "list"], ["status"], ["dlq", "list"], ["jobs", "export"]):
        proc = sh(*argv)
        assert proc.returncode == 1, (argv, proc.stderr)
        assert "jobs.db does not exist yet: run `shepherd run` (creates it)" in proc.stderr
        assert "store error" not in proc.stderr
    assert not Path(sh.db).exists()  # nothing was created by asking


def _names(struct: type[msgspec.Struct]) -> list[str]:
    return [f.name for f in msgspec.structs.fields(struct)]


def test_config_init_writes_every_key_with_its_real_default(sh: Sh) -> None:
    out = sh.ok("config", "init", "conf/shepherd.toml")
    assert "wrote conf/shepherd.toml" in out
    path = sh.tmp / "conf/shepherd.toml"
    text = path.read_text()
    lines = {line.lstrip("# ").split(" =")[0].strip("[]") for line in text.splitlines()}
    for f in msgspec.structs.fields(Config):
        assert f.name in lines, f"config init omits {f.name}"
        kind = f.type if isinstance(f.type, type) else None
        for t in [kind, *getattr(f.type, "__args__", ())]:
            if isinstance(t, type) and issubclass(t, msgspec.Struct) and t is not Config:
                missing = [k for k in _names(t) if k not in lines]
                if f.name != "jobs":
                    assert not missing, f"[{f.name}] omits {missing}"
    assert "gpu = 1" not in [line.strip() for line in text.splitlines()]  # not a default
    for key in ("health_interval", "breaker_fail_max", "breaker_reset", "data_dir"):
        assert f"\n{key} = " in text
    assert "\n# [gateway]\n" in text and "\n[delivery]\n" in text
    assert load_config(path, env={}) == Config(database=sh.db)


def test_config_init_in_process_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["config", "init", "a.toml", "--database", "/tmp/x.db"]) == 0
    assert load_config("a.toml", env={}) == Config(database="/tmp/x.db")
