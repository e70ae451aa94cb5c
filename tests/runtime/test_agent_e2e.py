"""Agent turns, events, watchdogs and announce delivery through ``Runtime.open``.

The gateway is the real stand-in over HTTP on 127.0.0.1 (no mocked transport); a fake
clock drives every wait that is about time (retries, deferrals, idle timeouts), except
the slow-trickle test, which is about real streaming and uses the real clock.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from shepherd.actors.executors.gateway import GatewayConfig
from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.router.delivery import DeliveryConfig, DeliveryTarget
from shepherd.runtime import (
    Config,
    ConfigError,
    EnqueueRequest,
    JobSpec,
    NotFound,
    RetryPolicy,
    Runtime,
)
from shepherd.store.models import Delivery, Seconds
from tests.gateway_standin import StandIn
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]
CHAT = "/v1/chat/completions"
W = "\u26a0\ufe0f"


class Sink:
    """A delivery sink registered by the 'embedding gateway' (this test)."""

    def __init__(self) -> None:
        self.got: list[Delivery] = []

    async def __call__(self, d: Delivery) -> None:
        self.got.append(d)

    @property
    def bodies(self) -> list[str]:
        return [d.body for d in self.got]


def open_rt(
    db_path: str, gw: StandIn | None, clock: FakeClock | None = None, **kw: Any
) -> AbstractAsyncContextManager[Runtime]:
    kw.setdefault(
        "delivery",
        DeliveryConfig(
            aliases={"ops": DeliveryTarget(channel="cb", target="room-1")},
            webhooks={"hook": gw.url + "/webhook"} if gw else {},
            retry_base=Seconds(5.0),
        ),
    )
    cfg = Config(
        database=db_path, shutdown_grace=0, gateway=GatewayConfig(url=gw.url) if gw else None, **kw
    )
    return Runtime.open(cfg, clock=clock, targets={"fetch": fetch})


async def fetch(ctx: Any) -> str:
    return "fetched 12 rows"


def agent(name: str = "report", attempts: int = 1, **kw: Any) -> JobSpec:
    kw.setdefault("payload", {"message": "Write the daily report."})
    return JobSpec(
        name=name,
        executor="agent",
        target="main",
        retry=RetryPolicy(max_attempts=attempts, base=Seconds(30.0)),
        **kw,
    )


async def test_normal_turn_injects_the_inbox_and_marks_it_delivered(
    db_path: str, gw: StandIn
) -> None:
    gw.set_mode(reply="Report written and sent.")
    async with open_rt(db_path, gw) as rt:
        row = await rt.add_job(agent())
        await rt.send_message("lead", "main", "deploy freeze after 5pm", kind="constraint")
        await rt.send_message("ops", "main", "fyi: disk at 80%", subject="disk")
        await rt.send_message("ops", "other", "not for main")
        d = await rt.wait(await rt.enqueue("report"), timeout=10)
        assert (d.status, d.outcome) == ("done", "ok")
        [run] = await rt.runs(dispatch_id=d.id)
        assert run.result == {"summary": "Report written and sent."}
        assert d.result == {"summary": "Report written and sent."}
        prompt = run.details["prompt"]
        assert prompt.startswith(f"[scheduler:{row.id} report]")
        assert "--- Pending Messages ---" in prompt
        assert prompt.index("deploy freeze") < prompt.index("disk at 80%")  # constraint first
        assert "not for main" not in prompt
        assert run.details["context"]["messages_injected"] == 2
        assert run.details["chunks"] >= 4
        assert await rt.inbox("main") == []
        assert len(await rt.messages(to_agent="main", status="delivered")) == 2
        assert [m.body for m in await rt.inbox("other")] == ["not for main"]
        [req] = gw.requests
        assert req.headers["x-openclaw-session-key"] == f"scheduler:{row.id}"
        assert req.json["model"] == "openclaw:main"


async def test_sentinels_end_ok_without_delivery(db_path: str, gw: StandIn) -> None:
    sink = Sink()
    gw.queue_replies("HEARTBEAT_OK", "NO_FLUSH", "IDEMPOTENT_SKIP: seen it", "Real news.")
    async with open_rt(db_path, gw) as rt:
        rt.register_delivery_sink("cb", sink)
        await rt.add_job(agent(options={"delivery": "announce-always", "delivery_to": "@ops"}))
        for _ in range(4):
            d = await rt.wait(await rt.enqueue("report"), timeout=10)
            assert (d.status, d.outcome) == ("done", "ok")
        await eventually(lambda: sink.got, what="the one real reply to be announced")
        assert sink.bodies == ["Real news."]
        assert (sink.got[0].channel, sink.got[0].target) == ("cb", "room-1")


@pytest.mark.parametrize(
    "first", ["TASK_FAILED: upstream flaky", "Error: rate limit exceeded, retry later"]
)
async def test_error_replies_retry_with_a_soft_failed_announce(
    db_path: str, gw: StandIn, first: str
) -> None:
    clock = FakeClock()
    sink = Sink()
    gw.queue_replies(first, "second time lucky")
    async with open_rt(db_path, gw, clock) as rt:
        rt.register_delivery_sink("cb", sink)
        await rt.add_job(agent(attempts=2, options={"delivery_to": "@ops"}))  # announce
        dispatch_id = await rt.enqueue("report")
        await eventually(lambda: sink.got, what="the soft-failed announce")
        assert sink.bodies == [f"{W} Job soft-failed (will retry): report\n\n{first}"]
        d = await rt.dispatch(dispatch_id)
        assert (d.status, d.attempt, d.outcome) == ("queued", 1, "error")
        assert d.not_before == clock.wall() + 30.0
        await clock.advance_when_blocked(30.0)
        d = await rt.wait(dispatch_id, timeout=10)
        assert (d.status, d.outcome, d.attempt) == ("done", "ok", 2)
        assert len(sink.got) == 1  # announce: the ok run is not announced


async def test_a_hanging_response_ends_in_an_idle_timeout(db_path: str, gw: StandIn) -> None:
    clock = FakeClock()
    gw.set_mode(hang=True)
    async with open_rt(db_path, gw, clock) as rt:
        await rt.add_job(agent(idle_timeout=Seconds(5.0)))
        dispatch_id = await rt.enqueue("report")
        await eventually(
            lambda: [r for r in gw.requests if r.path == CHAT], what="the turn to reach the gateway"
        )
        await clock.advance_when_blocked(5.0)
        d = await rt.wait(dispatch_id, timeout=10)
        assert (d.status, d.outcome, d.dead_reason) == ("dead", "timeout", "attempts")
        [run] = await rt.runs(dispatch_id=dispatch_id)
        assert run.error == "no activity for 5s (idle timeout)"


async def test_a_slow_trickle_is_activity_not_idleness(db_path: str, gw: StandIn) -> None:
    gw.set_mode(trickle=(0.2, 8))  # 1.6 s in all, never 1 s quiet
    async with open_rt(db_path, gw) as rt:
        await rt.add_job(agent(idle_timeout=Seconds(1.0)))
        d = await rt.wait(await rt.enqueue("report"), timeout=20)
        assert (d.status, d.outcome) == ("done", "ok")
        assert d.result == {"summary": "".join(f"chunk{i} " for i in range(8))}


async def test_gateway_down_defers_without_spending_an_attempt(db_path: str, gw: StandIn) -> None:
    clock = FakeClock()
    sink = Sink()
    gw.set_mode(down=True)
    async with open_rt(db_path, gw, clock) as rt:
        rt.register_delivery_sink("cb", sink)
        await rt.add_job(agent(options={"delivery_to": "@ops"}))
        dispatch_id = await rt.enqueue("report")

        async def deferred() -> bool:
            return (await rt.dispatch(dispatch_id)).outcome == "error"

        await eventually(deferred, what="the deferral")
        d = await rt.dispatch(dispatch_id)
        assert (d.status, d.attempt) == ("queued", 0)  # the attempt was refunded
        assert d.not_before == clock.wall() + 60.0
        assert d.last_error is not None and "Gateway unavailable" in d.last_error
        [run] = await rt.runs(dispatch_id=dispatch_id)
        assert (run.status, run.reason) == ("error", "deferred")
        gw.set_mode(down=False)
        await clock.advance_when_blocked(60.0)
        d = await rt.wait(dispatch_id, timeout=10)
        assert (d.status, d.outcome, d.attempt) == ("done", "ok", 1)
        assert sink.got == []  # a deferral is not a failure to announce


async def test_webhook_delivery_fails_twice_then_succeeds(db_path: str, gw: StandIn) -> None:
    clock = FakeClock()
    gw.set_mode(webhook_fail_first=2)
    async with open_rt(db_path, gw, clock) as rt:
        await rt.add_job(
            JobSpec(
                name="build",
                executor="shell",
                target="echo built",
                options={
                    "delivery": "announce-always",
                    "delivery_to": "C-9",
                    "delivery_channel": "hook",
                },
            )
        )
        d = await rt.wait(await rt.enqueue("build"), timeout=10)
        assert (d.status, d.outcome) == ("done", "ok")

        async def attempts(n: int, status: str) -> None:
            async def check() -> bool:
                got = await rt.deliveries(job="build")
                return bool(got) and (got[0].attempts, got[0].status) == (n, status)

            await eventually(check, what=f"{n} delivery attempts, {status}")

        await attempts(1, "pending")
        await clock.advance_when_blocked(5.0)
        await attempts(2, "pending")
        await clock.advance_when_blocked(10.0)
        await attempts(3, "sent")
        [delivery] = await rt.deliveries(status="sent")
        assert (delivery.body, delivery.sink, delivery.run_id) == (
            "stdout:\nbuilt",
            "hook",
            (await rt.runs(job="build"))[0].id,
        )
        assert (await rt.dispatch(d.id)).outcome == "ok"  # the run never changed
        posts = [r.json for r in gw.requests if r.path == "/webhook"]
        assert [p["attempt"] for p in posts] == [1, 2, 3]


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ({"status": 500}, "gateway failed the agent turn (HTTP 500: stand-in error 500)"),
        ({"status": 404}, "gateway rejected the agent turn (HTTP 404: stand-in error 404)"),
        (
            {"raw_body": "<h1>oops</h1>"},
            "gateway returned a non-JSON reply (text/html; charset=utf-8): '<h1>oops</h1>'",
        ),
    ],
)
async def test_bad_gateway_responses_are_clear_run_errors(
    db_path: str, gw: StandIn, mode: dict[str, Any], error: str
) -> None:
    gw.set_mode(**mode)
    async with open_rt(db_path, gw) as rt:
        await rt.add_job(agent(options={"stream": False}))
        d = await rt.wait(await rt.enqueue("report"), timeout=10)
        assert (d.status, d.outcome, d.last_error) == ("dead", "error", error)


async def test_a_chained_turn_gets_its_parent_run_as_trigger_context(
    db_path: str, gw: StandIn
) -> None:
    async with open_rt(db_path, gw) as rt:
        await rt.add_job(JobSpec(name="fetch", target="fetch"))
        await rt.add_job(agent())
        parent = await rt.wait(await rt.enqueue("fetch"), timeout=10)
        [parent_run] = await rt.runs(dispatch_id=parent.id)
        [child_id] = await rt.enqueue_many(
            [EnqueueRequest(job="report", parent_run_id=parent_run.id, kind="chain")]
        )
        await rt.wait(child_id, timeout=10)
        [run] = await rt.runs(dispatch_id=child_id)
        assert (
            "--- Trigger Context ---\nTriggered by: fetch\nParent run status: ok\n"
            "Parent run output:\nfetched 12 rows\n---"
        ) in run.details["prompt"]


async def test_event_jobs_are_fire_and_forget(db_path: str, gw: StandIn) -> None:
    sink = Sink()
    async with open_rt(db_path, gw) as rt:
        rt.register_delivery_sink("cb", sink)
        await rt.add_job(
            JobSpec(
                name="nudge",
                executor="event",
                payload={"message": "check the queue"},
                options={"delivery_to": "@ops"},
            )
        )  # announce: never
        await rt.add_job(
            JobSpec(
                name="nudge-loud",
                executor="event",
                payload={"message": "check again"},
                options={"delivery": "announce-always", "delivery_to": "@ops"},
            )
        )
        for name in ("nudge", "nudge-loud"):
            d = await rt.wait(await rt.enqueue(name), timeout=10)
            assert d.result == {"summary": "System event dispatched"}
        await eventually(lambda: sink.got, what="the announce-always delivery")
        assert [(d.job_name, d.body) for d in sink.got] == [
            ("nudge-loud", "System event dispatched")
        ]
    assert [r.json["text"] for r in gw.requests if r.path == "/v1/system-event"] == [
        "check the queue",
        "check again",
    ]


async def test_watchdog_alerts_and_removes_itself(db_path: str, gw: StandIn) -> None:
    sink = Sink()
    async with open_rt(db_path, None) as rt:  # a watchdog needs no gateway
        rt.register_delivery_sink("cb", sink)
        await rt.add_job(
            JobSpec(
                name="wd",
                executor="watchdog",
                target="echo finished",
                options={"alert_to": "@ops", "label": "import"},
            )
        )
        d = await rt.wait(await rt.enqueue("wd"), timeout=10)
        assert (d.status, d.outcome) == ("done", "ok")
        await eventually(lambda: sink.got, what="the watchdog alert")
        assert sink.bodies == ['\u2705 [watchdog] Task "import" completed -- watchdog disarmed']
        assert sink.got[0].kind == "alert"
        with pytest.raises(NotFound):
            await rt.get_job("wd")


async def test_bad_job_specs_are_rejected_naming_the_field(db_path: str) -> None:
    async with open_rt(db_path, None) as rt:
        for spec, field, words in (
            (agent(), "executor", "agent job needs [gateway] url in config"),
            (
                JobSpec(name="e", executor="event", payload={"message": "x"}),
                "executor",
                "event job needs [gateway] url in config",
            ),
            (
                JobSpec(
                    name="s", executor="shell", target="true", options={"delivery": "announce"}
                ),
                "options.delivery_to",
                "needs a target",
            ),
            (
                JobSpec(
                    name="s", executor="shell", target="true", options={"output_excerpt": 10**6}
                ),
                "options.output_excerpt",
                "must not",
            ),
        ):
            with pytest.raises(ConfigError) as info:
                await rt.add_job(spec)
            assert info.value.field == field
            assert words in str(info.value)
        assert await rt.list_jobs() == []
