"""Supervision for real: a crashed actor is restarted and the runtime keeps serving; too
many crashes stop the runtime with an error naming the actor."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from shepherd.actors.dispatcher import Dispatcher
from shepherd.actors.messages import Probe
from shepherd.runtime import Config, JobSpec, RunContext, Runtime, SupervisorEscalation
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]

POISON = Probe("poisoned", healthy=True)  # harmless if it got through


async def noop(ctx: RunContext) -> str:
    return "ok"


def _poison(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """Make the dispatcher crash on ``POISON``, ``times`` times."""
    crashes: list[int] = []
    original = Dispatcher._handle

    async def handle(self: Dispatcher, msg: Any, tg: Any) -> None:
        if msg == POISON and len(crashes) < times:
            crashes.append(1)
            raise RuntimeError("poisoned message")
        await original(self, msg, tg)

    monkeypatch.setattr(Dispatcher, "_handle", handle)
    return crashes


async def test_a_crashed_actor_is_restarted_and_the_runtime_keeps_serving(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashes = _poison(monkeypatch, times=1)
    async with Runtime.open(Config(database=db_path), targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="noop", target="noop"))
        assert (await rt.wait(await rt.enqueue("noop"), timeout=10)).status == "done"
        rt._dispatcher.tell(POISON)
        await eventually(lambda: rt.statistics()["supervisor"]["restarts"] == 1)
        assert crashes == [1]
        crash = [e for e in rt.actor_events if e.kind == "exited" and e.reason == "crash"]
        assert crash[0].child == "dispatcher" and "poisoned message" in (crash[0].error or "")
        # rest_for_one: the dispatcher and the actors started after it were restarted
        starts = {k: v["starts"] for k, v in rt.statistics()["supervisor"]["children"].items()}
        assert starts["store"] == 1 and starts["dispatcher"] == 2 and starts["ingest"] == 2
        assert (await rt.wait(await rt.enqueue("noop"), timeout=10)).status == "done"


async def test_crashes_beyond_the_intensity_stop_the_runtime_naming_the_actor(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashes = _poison(monkeypatch, times=100)
    cfg = Config(database=db_path, restart_intensity=2, restart_period=60)
    with pytest.raises(SupervisorEscalation) as info:
        async with Runtime.open(cfg, targets={"noop": noop}) as rt:
            for n in range(1, 4):
                # one poisoned message at a time: a crash loses the batch in hand
                rt._dispatcher.tell(POISON)
                await eventually(lambda n=n: len(crashes) == n)
            await anyio.sleep_forever()  # the escalation ends this block
    assert info.value.child == "dispatcher"
    assert "RuntimeError: poisoned message" in str(info.value)
