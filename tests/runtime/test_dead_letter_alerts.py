"""Dead-letter alerts: a dispatch that is dead-lettered gets exactly one alert delivery
(kind ``dead_letter``), committed in the same transaction as the dead letter and sent
through the delivery sinks like any other delivery.

- a job that exhausts its retries: one alert with the job, the target, a task excerpt
  (≤ 200 characters), the attempts, the last error and the commands to inspect it;
- the global ``[delivery] dead_letter_to``, and a job that turns it off;
- a crashed at-most-once dispatch (the daemon SIGKILLed mid-run): recovery in the next
  runtime dead-letters it ``crashed``, and its alert arrives once;
- the store: the alert row is written by the dead-lettering op itself, and an outcome
  that fencing rejects writes none.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from shepherd.actors.router.delivery import DeliveryConfig, DeliveryTarget
from shepherd.runtime import Config, JobSpec, RetryPolicy, Runtime
from shepherd.runtime._cli_store import daemon_pid
from shepherd.store.alerts import EXCERPT, alert_route, excerpt
from shepherd.store.errors import ConfigError
from shepherd.store.models import Delivery, Seconds
from shepherd.store.ops import DeadLetterAlert
from tests.helpers import eventually

pytestmark = pytest.mark.anyio

OPS = DeliveryConfig(aliases={"ops": DeliveryTarget(channel="cb", target="ops-room")})


async def boom(ctx: Any) -> None:
    raise ValueError("the gateway said no")


async def fine(ctx: Any) -> None:
    return None


def alerts_in(db_path: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT dispatch_id, channel, target FROM deliveries WHERE kind = 'dead_letter'"
        ).fetchall()


class Sink:
    def __init__(self) -> None:
        self.got: list[Delivery] = []

    async def __call__(self, d: Delivery) -> None:
        self.got.append(d)


def test_the_route_and_the_excerpt() -> None:
    glob = DeadLetterAlert(to="@ops", aliases={"ops": ("cb", "room")})
    assert alert_route({}, glob) == ("cb", "room")
    assert alert_route({"dead_letter_alert": False}, glob) is None
    assert alert_route({"dead_letter_alert": {"to": "lead"}}, glob) == (None, "lead")
    assert alert_route({}, DeadLetterAlert()) is None and alert_route({}, None) is None
    assert excerpt({"message": "hello  world"}) == "hello world"
    assert len(excerpt({"task": "x" * 1000})) == EXCERPT
    assert excerpt({"n": 1}) == '{"n":1}'
    blob = "QUJD" * 40 + "ZGVm0123"
    assert excerpt({"message": f"see {blob} here"}) == "see [base64] here"


async def test_an_exhausted_job_gets_exactly_one_alert_with_its_fields(db_path: str) -> None:
    sink = Sink()
    cfg = Config(database=db_path, delivery=OPS)
    async with Runtime.open(cfg, targets={"boom": boom, "fine": fine}) as rt:
        rt.register_delivery_sink("cb", sink)
        await rt.add_job(
            JobSpec(
                name="report",
                target="boom",
                retry=RetryPolicy(max_attempts=3, base=Seconds(0.001)),
                options={"dead_letter_alert": {"to": "@ops"}},
            )
        )
        await rt.add_job(JobSpec(name="ok", target="fine"))
        task = "Build the auth feature " + "x" * 400
        dead = await rt.wait(await rt.enqueue("report", {"message": task}), timeout=10)
        assert dead.status == "dead"
        assert (await rt.wait(await rt.enqueue("ok"), timeout=10)).status == "done"
        await eventually(lambda: len(sink.got) == 1, what="the alert")
        runs = await rt.runs(dispatch_id=dead.id)
        # later outcomes do not alert again
        assert (await rt.wait(await rt.enqueue("ok"), timeout=10)).status == "done"
        # of the five outcomes only the dead letter reaches the router: neither job
        # announces its runs (``OutcomeEvent.announce``), and later ones alert nothing
        await eventually(lambda: rt.statistics()["router"]["routed"] >= 1, what="the router")
        assert rt.statistics()["router"]["routed"] == 1
    [d] = sink.got
    assert (d.kind, d.channel, d.target, d.dispatch_id) == (
        "dead_letter",
        "cb",
        "ops-room",
        dead.id,
    )
    assert d.job_name == "report" and d.run_id == max(r.id for r in runs)
    lines = d.body.splitlines()
    assert lines[0] == f"🚨 Dead letter: job report (dispatch {dead.id})"
    assert lines[1] == "Target: boom"
    task_line = lines[2]
    assert task_line.startswith('Task: "Build the auth feature xxx')
    assert len(task_line) - len('Task: ""') == EXCERPT
    assert lines[3] == "Dispatched by: enqueue"
    assert lines[4].startswith("Attempts: 3/3")
    assert "ValueError: the gateway said no" in lines[5]
    assert "shepherd dlq list --job report" in lines[6]
    assert f"shepherd runs show {d.run_id}" in lines[6]
    assert len(lines) == 7
    assert alerts_in(db_path) == [(dead.id, "cb", "ops-room")]


async def test_the_global_target_and_a_job_that_opts_out(db_path: str) -> None:
    sink = Sink()
    delivery = DeliveryConfig(aliases=OPS.aliases, dead_letter_to="@ops", dead_letter_channel="")
    cfg = Config(database=db_path, delivery=delivery)
    async with Runtime.open(cfg, targets={"boom": boom}) as rt:
        rt.register_delivery_sink("cb", sink)
        once = RetryPolicy(max_attempts=1)
        await rt.add_job(JobSpec(name="loud", target="boom", retry=once))
        await rt.add_job(
            JobSpec(name="quiet", target="boom", retry=once, options={"dead_letter_alert": False})
        )
        quiet = await rt.wait(await rt.enqueue("quiet"), timeout=10)
        loud = await rt.wait(await rt.enqueue("loud", {"n": 7}), timeout=10)
        assert quiet.status == loud.status == "dead"
        await eventually(lambda: len(sink.got) == 1, what="the alert")
    assert [d.dispatch_id for d in sink.got] == [loud.id]
    assert 'Task: "{"n":7}"' in sink.got[0].body
    assert alerts_in(db_path) == [(loud.id, "cb", "ops-room")]


def test_a_bad_per_job_alert_option_names_the_field() -> None:
    from shepherd.actors.router.delivery import validate_delivery

    with pytest.raises(ConfigError, match=r"options\.dead_letter_alert\.too"):
        validate_delivery({"dead_letter_alert": {"too": "@ops"}})
    with pytest.raises(ConfigError, match=r"options\.dead_letter_alert"):
        validate_delivery({"dead_letter_alert": "ops"})


async def test_a_crashed_at_most_once_dispatch_alerts_once_after_recovery(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "crash.db")
    conf = tmp_path / "shepherd.toml"
    conf.write_text(
        'database = "crash.db"\n[delivery]\ndead_letter_to = "@ops"\n'
        '[delivery.aliases.ops]\nchannel = "cb"\ntarget = "ops-room"\n'
    )
    argv = [sys.executable, "-m", "shepherd", "--config", str(conf)]

    def cli(*args: str) -> str:
        out = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    cli("jobs", "add", "long", "--executor", "shell", "--target", "sleep 30")
    dispatch_id = int(cli("enqueue", "long", "--payload", '{"task": "a long one"}').split()[-1])
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen([*argv, "run"], stdout=log, stderr=log)  # noqa: ASYNC220
    try:

        def running() -> bool:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                row = conn.execute("SELECT status FROM runs").fetchone()
            return row is not None and row[0] == "running"

        await eventually(running, timeout=20, what="the run to start")
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=10)
        log.close()
    await eventually(lambda: daemon_pid(db) is None, what="the lock to be free")
    assert alerts_in(db) == []  # nothing is dead yet: the daemon died mid-run

    sink = Sink()
    from shepherd.runtime.config import load_config

    cfg = load_config(conf)
    for _ in range(2):  # a second start recovers nothing and alerts nothing
        async with Runtime.open(cfg) as rt:
            rt.register_delivery_sink("cb", sink)
            final = await rt.wait(dispatch_id, timeout=10)
            assert (final.status, final.dead_reason) == ("dead", "crashed")
            await eventually(lambda: len(sink.got) == 1, what="the alert")
            await anyio.lowlevel.checkpoint()
    [d] = sink.got
    assert d.kind == "dead_letter" and d.dispatch_id == dispatch_id
    assert "job long" in d.body and "Target: sleep 30" in d.body
    assert 'Task: "a long one"' in d.body and "crashed" in d.body
    assert alerts_in(db) == [(dispatch_id, "cb", "ops-room")]


async def test_the_dead_lettering_op_writes_its_alert_and_a_fenced_one_none(db_path: str) -> None:
    from shepherd.store.ops import FinishRun, FinishRuns
    from shepherd.store.sqlite import SqliteStore
    from tests.store.contract.helpers import add_job, claim, enqueue, new

    store = await SqliteStore.open(db_path)
    try:
        job_id = await add_job(store, "j", options={"dead_letter_alert": {"to": "lead"}})
        [(dispatch_id, _)] = await enqueue(store, new(job_id, "j", payload=b'{"task": "t"}'))
        run_id = await claim(store, dispatch_id, job_id=job_id)
        assert run_id
        f = FinishRun(
            run_id=run_id, dispatch_id=dispatch_id, outcome="error", next="dead",
            error="boom", dead_reason="attempts",
        )  # fmt: skip
        assert await store.apply_one(FinishRuns([f], 5.0, "t", alert=None)) == [0]
        assert alerts_in(db_path) == [(dispatch_id, None, "lead")]
        # the same outcome again is fenced (the run already ended): no second alert
        assert await store.apply_one(FinishRuns([f], 6.0, "t")) == [None]
        [pending] = await store.pending_deliveries()
        assert pending.kind == "dead_letter" and 'Task: "t"' in pending.body
        assert alerts_in(db_path) == [(dispatch_id, None, "lead")]
    finally:
        await store.close()
