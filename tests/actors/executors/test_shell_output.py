"""The shell executor's OCS output handling: limits, offload, UTF-8 cuts, summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shepherd.actors.executors.shell import ShellExecutor, artifact_path
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec
from tests.actors.executors.conftest import make_ctx

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("spawning")]


def sh(cmd: str, **options: Any) -> JobSpec:
    return JobSpec(name="sh", executor="shell", target=cmd, options=options)


async def test_small_output_is_stored_whole_with_an_ocs_summary(tmp_path: Path) -> None:
    ctx = make_ctx(sh("echo hello; echo warn >&2"), data_dir=str(tmp_path))
    res = await ShellExecutor().execute(ctx)
    assert res.ok
    assert res.result == {"exit_code": 0, "summary": "stdout:\nhello\n\nstderr:\nwarn"}
    assert (ctx.reported["stdout"], ctx.reported["stderr"]) == ("hello", "warn")
    assert ctx.reported["details"] == {"stdout_bytes": 6, "stderr_bytes": 5}
    assert not (tmp_path / "runs").exists()


async def test_large_output_is_offloaded_and_only_an_excerpt_stored(tmp_path: Path) -> None:
    job = sh(
        "yes 'é line' | head -c 300000", output_offload=1024, output_excerpt=200, output_summary=300
    )
    ctx = make_ctx(job, run_id=12, data_dir=str(tmp_path))
    res = await ShellExecutor().execute(ctx)
    assert res.ok
    path = artifact_path(str(tmp_path), 12, "stdout")
    assert path == tmp_path / "runs" / "12" / "stdout.txt"
    assert path.stat().st_size == 300000  # the whole stream, not just what was kept
    stored = ctx.reported["stdout"]
    assert len(stored.encode()) <= 200 and stored.endswith("\n...[truncated]")
    stored.encode("utf-8").decode("utf-8")  # never a split character
    details = ctx.reported["details"]
    assert details["stdout_bytes"] == 300000
    assert details["stdout_path"] == str(path)
    assert details["stdout_truncated"] is True
    summary = res.result["summary"]
    assert len(summary.encode()) <= 300
    assert summary.startswith("stdout:\n\u00e9 line")


async def test_store_limit_cuts_utf8_safely_without_offload(tmp_path: Path) -> None:
    job = sh("printf '%0.s\u00e9' $(seq 1 400)", output_store=101, output_excerpt=50)
    ctx = make_ctx(job, data_dir=str(tmp_path))
    await ShellExecutor().execute(ctx)
    stored = ctx.reported["stdout"]
    assert len(stored.encode()) <= 101 and stored.endswith("\n...[truncated]")
    assert set(stored.removesuffix("\n...[truncated]")) == {"\u00e9"}


async def test_failure_has_the_ocs_message_and_stderr_tail(tmp_path: Path) -> None:
    ctx = make_ctx(sh("echo boom >&2; exit 3"), data_dir=str(tmp_path))
    res = await ShellExecutor().execute(ctx)
    assert not res.ok
    assert res.error == "Shell exited with code 3: boom"
    assert res.result == {"exit_code": 3, "summary": "stderr:\nboom"}
    res = await ShellExecutor().execute(make_ctx(sh("exit 4"), data_dir=str(tmp_path)))
    assert res.error == "Shell exited with code 4"
    assert res.result == {"exit_code": 4, "summary": "Shell exited with code 4"}


def test_limits_are_validated() -> None:
    with pytest.raises(ConfigError) as info:
        ShellExecutor().validate(sh("true", output_excerpt=5000, output_store=100))
    assert info.value.field == "options.output_excerpt"
    with pytest.raises(ConfigError) as info:
        ShellExecutor().validate(sh("true", output_offload=0))
    assert info.value.field == "options.output_offload"


async def test_a_command_the_os_cannot_take_ends_the_run_unretried(tmp_path: Path) -> None:
    """A job stored before NUL was refused (``check_shell``): its run ends ``error``,
    not retried, and nothing is started."""
    for job, field in (
        (sh("echo \x00 hi"), "target"),
        (sh("pwd", cwd="/tmp\x00x"), "options.cwd"),
        (sh("echo \udcff"), "target"),
    ):
        res = await ShellExecutor().execute(make_ctx(job, data_dir=str(tmp_path)))
        assert (res.ok, res.retry) == (False, False)
        assert res.error is not None and res.error.startswith(f"cannot start the command: {field}:")
    with pytest.raises(ConfigError) as info:
        ShellExecutor().validate(sh("echo \x00 hi"))
    assert info.value.field == "target" and "NUL" in str(info.value)
    with pytest.raises(ConfigError) as info:
        ShellExecutor().validate(sh("pwd", cwd="/tmp\x00x"))
    assert info.value.field == "options.cwd"
