"""Bad input at the edges, from an outside tester's matrix: input nested deeper than a
payload may be (``store.bounds.MAX_DEPTH``), or deeper than a decoder's recursion limit,
is refused at every edge with an error naming what carried it, nothing stored and
nothing crashed (the enqueue socket's frame, the spool's file, an HTTP body, a CLI flag
or file, a config file); files that are not UTF-8 text, or are directories, are named;
JSON strings that are not Unicode (an unpaired surrogate) and command-line words that
are not UTF-8 exit 2 naming the flag or file, before anything is encoded; every
one-value top-level key comes from ``SHEPHERD_<KEY>``, checked as in a file; a string
the OS cannot take (NUL, not UTF-8) is refused where an executor would hand it to the
OS, and text that is not UTF-8 wherever it would be stored."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest

from shepherd.actors.ingest_wire import Answer, decode_item
from shepherd.actors.spool import formats
from shepherd.runtime import Config, ConfigError, JobSpec, RunContext, Runtime
from shepherd.runtime.config import load_config
from shepherd.store.bounds import MAX_DEPTH, TOO_DEEP, check_json
from shepherd.store.models import RetryPolicy
from tests.cli_helpers import clean_cli

pytestmark = pytest.mark.anyio


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def deep_json(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def test_check_json_takes_max_depth_levels_and_refuses_one_more() -> None:
    check_json(nested(MAX_DEPTH), field="payload")
    with pytest.raises(ConfigError) as info:
        check_json(nested(MAX_DEPTH + 1), field="payload")
    assert info.value.field == "payload" + ".a" * MAX_DEPTH and TOO_DEEP in str(info.value)
    with pytest.raises(ConfigError, match="nested too deeply"):
        check_json([nested(MAX_DEPTH)], field="payload")  # arrays count as levels too


def test_a_socket_frame_past_the_decoders_limit_is_an_error_answer() -> None:
    body = b"\x83\xa2id\x05\xa3job\xa1j\xa7payload" + b"\x81\xa1a" * 5000 + b"\x01"
    got = decode_item(body)
    assert isinstance(got, Answer) and got.kind == "ConfigError"
    assert got.error is not None and TOO_DEEP in got.error
    ok = decode_item(msgspec.msgpack.encode({"id": 6, "job": "j", "payload": {"a": 1}}))
    assert not isinstance(ok, Answer) and ok.id == 6


def test_a_spool_file_past_the_decoders_limit_is_refused_as_the_file() -> None:
    data = ('{"job":"j","payload":' + deep_json(5000) + "}").encode()
    with pytest.raises(ConfigError) as info:
        formats.parse("x.json", data, default_job=None)
    assert info.value.field == "file" and TOO_DEEP in str(info.value)


async def ok(ctx: RunContext) -> None:
    return None


async def test_enqueue_and_add_job_refuse_a_deep_payload_naming_it(db_path: str) -> None:
    async with Runtime.open(Config(database=db_path), targets={"ok": ok}) as rt:
        await rt.add_job(JobSpec(name="ok", target="ok"))
        with pytest.raises(ConfigError, match="nested too deeply") as info:
            await rt.enqueue("ok", nested(MAX_DEPTH + 5))
        assert info.value.field is not None and info.value.field.startswith("payload.a.a")
        with pytest.raises(ConfigError, match="nested too deeply"):
            await rt.add_job(JobSpec(name="deep", target="ok", payload=nested(MAX_DEPTH + 1)))
        assert await rt.dispatches() == [] and [j.name for j in await rt.list_jobs()] == ["ok"]


def test_the_cli_refuses_deep_payloads_files_and_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = clean_cli(tmp_path, capsys, monkeypatch, "x.db")
    cli.ok("jobs", "add", "j", "--executor", "shell", "--target", "true")
    for levels in (MAX_DEPTH + 1, 3000):  # refused by the bound / by the decoder's limit
        code, _, err = cli("enqueue", "j", "--payload", deep_json(levels))
        assert code == 2 and "nested too deeply" in err, err
    deep = tmp_path / "deep.json"
    deep.write_text(json.dumps({"name": "k", "executor": "shell", "target": "true"})[:-1]
                    + ', "payload": ' + deep_json(3000) + "}")  # fmt: skip
    code, _, err = cli("jobs", "add", "--file", str(deep))
    assert code == 2 and "nested too deeply" in err and str(deep) in err, err
    toml = tmp_path / "deep.toml"
    toml.write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(toml)
    assert info.value.field == "config" and "nested too deeply" in str(info.value)
    assert [j["name"] for j in cli.json("jobs", "list")] == ["j"]  # nothing else stored


def test_files_that_are_not_utf8_text_or_are_directories_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = clean_cli(tmp_path, capsys, monkeypatch, "x.db")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    for argv in (
        ("jobs", "add", "--file", str(binary)),
        ("--config", str(binary), "jobs", "list"),
        ("--config", str(tmp_path), "jobs", "list"),  # a directory
        ("spool", "enqueue", "--file", str(binary), "--dir", str(tmp_path / "spool")),
    ):
        code, _, err = cli(*argv)
        assert code == 2, (argv, code, err)
        assert "not UTF-8 text" in err or "is a directory" in err, (argv, err)
        assert str(binary) in err or str(tmp_path) in err, (argv, err)


def test_every_one_value_top_level_key_comes_from_the_environment() -> None:
    from shepherd.runtime.config import _ENV_BOOL, _ENV_INT, _ENV_STR

    one_value = {  # a table or a list has a default factory; an optional table None
        f.name
        for f in msgspec.structs.fields(Config)
        if f.default_factory is msgspec.NODEFAULT and f.default is not None
    }
    assert "database" in one_value and "http" not in one_value and "spool" not in one_value
    assert one_value <= _ENV_INT | _ENV_BOOL | _ENV_STR, one_value - (
        _ENV_INT | _ENV_BOOL | _ENV_STR
    )
    cfg = load_config(env={"SHEPHERD_HEALTH_INTERVAL": "250ms", "SHEPHERD_USE_UVLOOP": "off"})
    assert (float(cfg.health_interval), cfg.use_uvloop) == (0.25, False)
    with pytest.raises(ConfigError) as info:
        load_config(env={"SHEPHERD_USE_UVLOOP": "maybe"})
    assert info.value.field == "SHEPHERD_USE_UVLOOP"
    with pytest.raises(ConfigError) as info:
        load_config(env={"SHEPHERD_SCHEDULE_LEAD": "2h"})  # past its bound: named
    assert "schedule_lead" in str(info.value)


def test_the_default_data_dir_is_beside_the_resolved_file(tmp_path: Path) -> None:
    """Every name of one database file (a symlink, a relative path) has the same data
    directory, where a crashed runtime's process journals are found again."""
    real = tmp_path / "real.db"
    real.touch()
    (tmp_path / "alias.db").symlink_to(real)
    for name in (tmp_path / "alias.db", tmp_path / "sub" / ".." / "real.db"):
        assert Config(database=str(name)).artifacts_dir == f"{real}.d"


def test_strings_that_are_not_unicode_are_refused_naming_the_flag_or_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = clean_cli(tmp_path, capsys, monkeypatch, "x.db")
    cli.ok("jobs", "add", "j1", "--executor", "shell", "--target", "true")
    spool = str(tmp_path / "spool")
    job_file = tmp_path / "f.json"
    job_file.write_text('{"name":"j9","executor":"shell","target":"x","payload":{"a":"\\ud800"}}')
    event = tmp_path / "b5.json"
    event.write_text('{"kind":"agentTurn","message":"\\ud800"}')
    shell = ("jobs", "add", "j5", "--executor", "shell", "--target", "x")
    unpaired = "--payload: holds an unpaired surrogate"
    url = ("--url", "http://127.0.0.1:9")  # refused before anything is sent
    for argv, names in (
        ((*shell, "--payload", '{"\\ud800":1}'), f"{unpaired} (\\ud800) in a key"),
        ((*shell, "--payload", '{"a":"\\udc00"}'), f"{unpaired} (\\udc00) in a"),
        (("enqueue", "j1", "--payload", '{"a":"\\ud800"}'), unpaired),
        (("enqueue", "j1", *url, "--payload", '{"a":"\\ud800"}'), unpaired),
        (("jobs", "run", "j1", "--payload", '{"a":[1,"\\udfff"]}'), "(\\udfff) in a[1]"),
        (("jobs", "add", "--file", str(job_file)), f"{job_file}: holds an unpaired surrogate"),
        (("spool", "enqueue", "--file", str(event), "--dir", spool), "--file"),
        # a word that was not UTF-8, as Python decodes argv (surrogateescape)
        (("spool", "enqueue", "--message", "\udcff\udcfe", "--dir", spool), "--message"),
        (("jobs", "add", "\udcff", *shell[3:]), "argument NAME: is not valid UTF-8 (byte 0xff)"),
        ((*shell, "--description=a\udcff"), "--description: is not valid UTF-8"),
    ):  # fmt: skip
        code, _, err = cli(*argv)
        assert code == 2 and names in err, (argv, code, err)
        assert "Traceback" not in err
    assert [j["name"] for j in cli.json("jobs", "list")] == ["j1"]  # nothing stored
    assert not (tmp_path / "spool").exists() or not list((tmp_path / "spool").glob("*.json"))
    assert cli.rows("SELECT COUNT(*) FROM dispatches") == [(0,)]
    paired = tmp_path / "ok.json"  # a surrogate pair escapes one character: taken
    paired.write_text('{"kind":"agentTurn","message":"\\ud83d\\ude00"}')
    cli.ok("spool", "enqueue", "--file", str(paired), "--dir", spool)


def test_a_non_utf8_argv_word_exits_2_naming_its_flag(tmp_path: Path) -> None:
    import subprocess
    import sys

    argv = [sys.executable, "-m", "shepherd", "spool", "enqueue", "--dir", str(tmp_path)]
    got = subprocess.run([*argv, "--message", b"\xff\xfe"], capture_output=True, cwd=tmp_path)
    assert got.returncode == 2, got.stderr
    assert b"--message/-m: is not valid UTF-8 (byte 0xff)" in got.stderr
    assert b"Traceback" not in got.stderr and list(tmp_path.iterdir()) == []


def test_a_message_body_file_that_is_not_utf8_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    cli = clean_cli(tmp_path, capsys, monkeypatch, "x.db")
    (tmp_path / "bad.txt").write_bytes(b"hi \xff")
    send = ("msg", "send", "--from", "a", "--to", "b", "--file")
    code, _, err = cli(*send, "bad.txt")
    assert code == 2 and "--file bad.txt: is not valid UTF-8 (byte 3" in err, err
    # standard input as a POSIX locale decodes it: each bad byte a surrogate
    stdin = io.TextIOWrapper(io.BytesIO(b"hi \xff"), encoding="utf-8", errors="surrogateescape")
    monkeypatch.setattr(sys, "stdin", stdin)
    code, _, err = cli(*send, "-")
    assert code == 2 and "--file -: is not valid UTF-8 (byte 0xff)" in err, err
    assert "Traceback" not in err and not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("text", [b"\xff\xfe garbage", b"pid 99999999999999999999999\n", b""])
def test_a_damaged_lock_file_names_no_daemon(tmp_path: Path, text: bytes) -> None:
    """``status`` / ``doctor`` read the pid a runtime wrote in its lock file: bytes that
    are not text, or a pid no process can have, mean that no daemon serves the file."""
    from shepherd.runtime._cli_store import daemon_pid

    db = tmp_path / "x.db"
    db.touch()
    (tmp_path / "x.db.lock").write_bytes(text)
    assert daemon_pid(str(db)) is None


class _Opaque:
    pass


async def deep_result(ctx: RunContext) -> Any:
    return nested(MAX_DEPTH + 1)


async def odd_result(ctx: RunContext) -> Any:
    return {"x": _Opaque()}


async def test_a_result_too_deep_or_not_json_ends_the_run_an_error(db_path: str) -> None:
    targets = {"deep": deep_result, "odd": odd_result, "ok": ok}
    async with Runtime.open(Config(database=db_path), targets=targets) as rt:
        for name in targets:
            await rt.add_job(JobSpec(name=name, target=name, retry=RetryPolicy(max_attempts=1)))
        deep = await rt.wait(await rt.enqueue("deep"), timeout=10)
        odd = await rt.wait(await rt.enqueue("odd"), timeout=10)
        fine = await rt.wait(await rt.enqueue("ok"), timeout=10)
        runs = {r.dispatch_id: r for r in await rt.runs()}
    assert (deep.status, deep.result) == ("dead", None)
    assert deep.last_error is not None and "result cannot be stored" in deep.last_error
    assert TOO_DEEP in deep.last_error and runs[deep.id].status == "error"
    assert odd.status == "dead" and odd.last_error is not None
    assert "result: not a JSON value" in odd.last_error and "_Opaque" in odd.last_error
    assert fine.status == "done"


def test_the_cli_shows_a_result_stored_deeper_than_the_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row stored before results were bounded (950 levels) is shown, cut at the bound."""
    cli = clean_cli(tmp_path, capsys, monkeypatch, "x.db")
    cli.ok("jobs", "add", "j", "--executor", "shell", "--target", "true")
    cli.ok("enqueue", "j")
    with sqlite3.connect(cli.db) as conn:
        conn.execute(
            "INSERT INTO runs (dispatch_id, job_id, job_name, attempt, status, started_at,"
            " result) SELECT id, job_id, 'j', 1, 'ok', 1.0, ? FROM dispatches",
            (b"[" * 950 + b"]" * 950,),
        )
        (run_id,) = conn.execute("SELECT max(id) FROM runs").fetchone()
    assert "not shown" in cli.ok("runs", "show", str(run_id))
    assert "not shown" in json.dumps(cli.json("runs", "show", str(run_id)))
    assert [r["id"] for r in cli.json("runs", "list")] == [run_id]


async def test_text_the_os_cannot_take_is_refused_naming_the_field(db_path: str) -> None:
    async with Runtime.open(Config(database=db_path), targets={"ok": ok}) as rt:
        for spec, field in (
            (JobSpec(name="s", executor="shell", target="echo \x00 hi"), "target"),
            (JobSpec(name="s", executor="shell", target="echo \udcff"), "target"),
            (JobSpec(name="s", executor="shell", target="pwd", options={"cwd": "/\x00"}),
             "options.cwd"),
            (JobSpec(name="w", executor="watchdog", target="x",
                     options={"check_cmd": "true \x00"}), "options.check_cmd"),
            (JobSpec(name="w", executor="watchdog", target="true \x00"), "target"),
            (JobSpec(name="p", target="ok", description="\ud800"), "description"),
            (JobSpec(name="p", target="ok", payload={"x": ["\ud800"]}), "payload.x[0]"),
            (JobSpec(name="p", target="ok", payload={"\ud800": 1}), "payload"),
        ):  # fmt: skip
            with pytest.raises(ConfigError) as info:
                await rt.add_job(spec)
            assert info.value.field == field, info.value
            assert "NUL" in str(info.value) or "not UTF-8 text" in str(info.value)
        await rt.add_job(JobSpec(name="s", executor="shell", target="echo hi"))
        with pytest.raises(ConfigError) as info:
            await rt.enqueue("s", idempotency_key="k\x00")  # its run's environment
        assert info.value.field == "idempotency_key" and "NUL" in str(info.value)
        with pytest.raises(ConfigError) as info:
            await rt.enqueue("s", {"x": "\ud800"})
        assert info.value.field == "payload.x"
        assert await rt.dispatches() == [] and [j.name for j in await rt.list_jobs()] == ["s"]


def test_the_cli_refuses_a_command_that_is_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-UTF-8 argument (Python decodes it with surrogateescape) is named."""
    cli = clean_cli(tmp_path, capsys, monkeypatch, "x.db")
    code, _, err = cli("jobs", "add", "j", "--executor", "shell", "--target", "echo \udcff")
    assert code == 2 and "argument --target: is not valid UTF-8" in err, err
    code, _, err = cli("jobs", "add", "j", "--executor", "shell", "--target", "true",
                       "--options", '{"cwd": "/tmp\\u0000"}')  # fmt: skip
    assert code == 2 and "NUL" in err and "cwd" in err, err
    assert not Path(cli.db).exists()  # refused before the database was even created


def test_bad_paths_urls_and_numbers_exit_2_naming_them_and_create_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = clean_cli(tmp_path, capsys, monkeypatch, "x.db")
    for url in ("http://[::1", "ftp://x", "http://127.0.0.1:99999", "http:// x"):
        code, _, err = cli("--url", url, "status")
        assert code == 2 and "argument --url:" in err, (url, err)
    gateway = tmp_path / "gw.toml"
    gateway.write_text('[gateway]\nurl = "http://[::1"\n')
    code, _, err = cli("--config", str(gateway), "status")
    assert code == 2 and "gateway.url: not a valid URL" in err, err
    (tmp_path / "afile").touch()
    code, _, err = cli("demo", "--dir", str(tmp_path / "afile"))
    assert code == 2 and "--dir: cannot use" in err, err
    for word in ("1_0", " 1", "+1", "\u0661"):  # int() takes each; an id is ASCII digits
        code, _, err = cli("cancel", word)
        assert code == 2 and "expected an integer" in err, (word, err)
    # no database: nothing to read or enqueue into, and nothing is created
    code, _, err = cli("enqueue", "nosuch")
    assert code == 1 and "does not exist yet" in err, err
    (tmp_path / "empty.db").touch()  # SQLite would make an empty file a database
    code, _, err = cli("--database", str(tmp_path / "empty.db"), "runs", "list")
    assert code == 1 and "does not exist yet" in err, err
    assert not Path(cli.db).exists() and (tmp_path / "empty.db").stat().st_size == 0


def test_doctor_reports_a_file_with_two_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = clean_cli(tmp_path, capsys, monkeypatch, "x.db")
    assert cli("jobs", "add", "j", "--executor", "shell", "--target", "true")[0] == 0
    os.link(cli.db, tmp_path / "other.db")
    code, out, _ = cli("doctor")
    assert code != 0 and "has 2 names (hard links)" in out, out


def test_a_repeated_json_cancel_prints_only_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = clean_cli(tmp_path, capsys, monkeypatch, "x.db")
    assert cli("jobs", "add", "j", "--executor", "shell", "--target", "true")[0] == 0
    dispatch_id = cli.json("enqueue", "j", "--delay", "1h")["id"]
    assert cli.json("cancel", str(dispatch_id))["result"] == "cancelled"
    code, out, err = cli("--json", "cancel", str(dispatch_id))
    assert (code, out) == (1, "") and "already ended (cancelled)" in err


def test_jobs_update_without_a_flag_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = clean_cli(tmp_path, capsys, monkeypatch, "x.db")
    assert cli("jobs", "add", "j", "--executor", "shell", "--target", "true")[0] == 0
    before = cli.json("jobs", "show", "j")
    code, _, err = cli("jobs", "update", "j")
    assert code == 2 and "nothing to change" in err, err
    assert cli.json("jobs", "show", "j") == before
    assert cli.json("jobs", "update", "j", "--priority", "high")["name"] == "j"
