"""Logs: ``shepherd run --log-format json`` writes one JSON object per line with ts,
level, logger, msg and the run's dispatch_id / run_id / job; tokens and Authorization
values never reach a log, even at DEBUG with every logger on.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from shepherd import JobSpec
from shepherd.runtime._logs import JsonFormatter, TextFormatter, fields_of, redact
from tests.cli_helpers import clean_cli
from tests.http_helpers import ADMIN, AGENT, READ, serve


def test_run_log_format_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = clean_cli(tmp_path, capsys, monkeypatch, "logs.db")
    cli.ok("jobs", "add", "hello", "--executor", "shell", "--target", "true")
    cli.ok("jobs", "run", "hello")
    code, _, err = cli("run", "--exit-when-idle", "--log-format", "json")
    assert code == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines, err
    for line in lines:
        assert {"ts", "level", "logger", "msg"} <= set(line)
        assert line["ts"].endswith("Z")
    finished = [x for x in lines if x.get("event") == "run.finished"]
    assert len(finished) == 1
    f = finished[0]
    assert f["job"] == "hello" and f["outcome"] == "ok" and f["status"] == "done"
    assert isinstance(f["dispatch_id"], int) and isinstance(f["run_id"], int)
    assert f["logger"] == "shepherd.events" and f["level"] == "INFO"
    assert any(x.get("event") == "daemon.ready" for x in lines)


def test_json_lines_carry_extra_and_exceptions() -> None:
    fmt = JsonFormatter()
    rec = logging.LogRecord("shepherd.x", logging.ERROR, __file__, 1, "plain %s", ("text",), None)
    rec.dispatch_id = 5  # extra={"dispatch_id": 5}
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        rec.exc_info = sys.exc_info()
    out = json.loads(fmt.format(rec))
    assert out["msg"] == "plain text" and out["dispatch_id"] == 5 and out["level"] == "ERROR"
    assert "ValueError: bad" in out["exc"]
    assert fields_of('run.finished dispatch=3 run=4 job=a error="x y"') == {
        "event": "run.finished", "dispatch_id": 3, "run_id": 4, "job": "a", "error": "x y",
    }  # fmt: skip


def test_redaction() -> None:
    for text in (
        "Authorization: Bearer s3cret-value",
        "headers={'authorization': 'Bearer s3cret-value'}",
        "token=s3cret-value",
        "calling with bearer s3cret-value now",
    ):
        assert "s3cret-value" not in redact(text), text
        assert "[redacted]" in redact(text)
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "Bearer %s", ("s3cret-value",), None)
    assert "s3cret-value" not in TextFormatter().format(rec)


@pytest.mark.anyio
async def test_requests_with_tokens_log_nothing_of_them(db_path: str) -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        async with serve(db_path) as srv:
            await srv.rt.add_job(JobSpec(name="a", executor="shell", target="true"))
            for token in (ADMIN, READ, AGENT, "wrong-token-value"):
                async with srv.client(token, agent="a1" if token == AGENT else None) as c:
                    await c.get("/metrics")
                    await c.get("/readyz")
                    await c.get("/api/v1/no-such")
                    async with c.stream("GET", "/api/v1/events") as resp:
                        async for _ in resp.aiter_lines():
                            break
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    text = buf.getvalue()
    assert "shepherd" in text  # DEBUG logging was on and heard the runtime
    for token in (ADMIN, READ, AGENT, "wrong-token-value"):
        assert token not in text
