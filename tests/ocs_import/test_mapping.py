"""The importer's pure parts: an OCS row → a spec and what is not carried
(``mapping``, ``extras``), and where a schedule continues (``schedule``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shepherd.runtime.ocs_import import extras, mapping
from shepherd.runtime.ocs_import.schedule import continue_schedule
from shepherd.store.models import JobSpec
from tests.ocs_import.fixture import text

NOW = datetime(2026, 3, 7, 12, 0, tzinfo=UTC).timestamp()


def _row(**cols: Any) -> dict[str, Any]:
    return {
        "id": "j1",
        "name": "Daily digest!",
        "enabled": 1,
        "schedule_cron": "0 9 * * *",
        "schedule_tz": "UTC",
        "payload_message": "hello",
        "delivery_mode": "none",
        **cols,
    }


def _spec(**cols: Any) -> JobSpec:
    plan = mapping.map_job(_row(**cols), {"j1": "daily", "p1": "parent-job"})
    assert plan.spec is not None, plan.error
    return plan.spec


def test_session_targets_choose_the_executor() -> None:
    agent = _spec(agent_id="coder", payload_model="m", payload_timeout_seconds=60)
    assert (agent.executor, agent.target, agent.payload) == ("agent", "coder", {"message": "hello"})
    assert agent.options["model"] == "m" and agent.idle_timeout == 120
    shell = _spec(session_target="shell", payload_message="make", output_store_limit_bytes=1024)
    assert (shell.executor, shell.target, shell.options["output_store"]) == ("shell", "make", 1024)
    event = _spec(session_target="main")
    assert (event.executor, event.payload, event.options["mode"]) == (
        "event",
        {"message": "hello"},
        "now",
    )
    dog = _spec(
        job_type="watchdog",
        watchdog_check_cmd="check",
        watchdog_timeout_min=5,
        watchdog_self_destruct=0,
        watchdog_alert_target="@ops",
    )
    assert dog.executor == "watchdog"
    assert dog.options == {
        "check_cmd": "check",
        "timeout_min": 5,
        "self_destruct": False,
        "alert_to": "@ops",
    }


def test_retries_keep_ocs_ladder_and_the_rest_maps_field_by_field() -> None:
    spec = _spec(
        max_retries=10,
        overlap_policy="queue",
        max_queued_dispatches=3,
        resource_pool=" gpu ",
        delivery_guarantee="at-least-once",
        run_timeout_ms=1500,
        delivery_mode="announce-always",
        delivery_to="@ops",
        delivery_channel="telegram",
        delivery_opt_out_reason="x",
        origin="user",
    )
    assert spec.retry.max_attempts == 11 and spec.retry.base == 30 and spec.retry.factor == 2
    assert spec.retry.max_delay == 30 * 2**9  # the 10th retry waits 30·2^9 s, uncapped as OCS
    assert (spec.overlap, spec.max_queued, spec.pool) == ("queue", 3, "gpu")
    assert spec.delivery_guarantee == "at-least-once" and spec.timeout == 1.5
    assert spec.options["delivery"] == "announce-always"
    assert spec.options["delivery_to"] == "@ops" and spec.options["delivery_channel"] == "telegram"
    assert "'Daily digest!'" in spec.description and "origin user" in spec.description
    assert spec.name == "daily" and spec.misfire == "skip" and spec.cron == "0 9 * * *"
    assert mapping.slug("Daily digest!", "x") == "Daily-digest" and mapping.slug("!!", "x") == "x"


def test_chains_and_approvals() -> None:
    child = _spec(
        parent_id="p1",
        trigger_on="failure",
        trigger_delay_s=30,
        trigger_condition="regex:err(or)?",
        approval_required=1,
        approval_timeout_s=60,
        approval_auto="approve",
        max_pending_approvals=2,
    )
    assert (child.parent, child.trigger_on, child.trigger_delay) == ("parent-job", "failure", 30)
    assert child.cron is None and child.trigger_condition == "regex:err(or)?"
    assert child.approval is not None
    assert (child.approval.timeout, child.approval.on_timeout) == (60, "approve")
    assert (child.approval.max_pending, child.approval.sources) == (2, ["chain"])


def test_what_is_not_carried_is_listed_with_the_reason() -> None:
    plan = mapping.map_job(
        _row(
            identity_subject="svc",
            authorization_proof="jwt",
            brand_new_column=7,
            context_retrieval="recent",
            ttl_hours=None,
            evidence_mode="",
        ),
        {"j1": "daily"},
    )
    lost = {n.field: n.reason for n in plan.not_carried}
    assert set(lost) == {
        "identity_subject",
        "authorization_proof",
        "brand_new_column",
        "context_retrieval",
    }
    assert "D12" in lost["identity_subject"] and "unknown column" in lost["brand_new_column"]


def test_agents_messages_and_queue_rows() -> None:
    agent = extras.map_agent(
        {
            "id": "coder",
            "name": "Coder",
            "status": "offline",
            "capabilities": '["Python", "bad name", "*"]',
        }
    )
    assert agent.spec is not None and agent.spec.capabilities == ["*", "python"]
    assert {n.field for n in agent.not_carried} == {"status", "capabilities"}
    msg = extras.map_message(
        {
            "id": "m1",
            "from_agent": "a",
            "to_agent": "b",
            "body": "x",
            "kind": "fact",
            "priority": 9,
            "metadata": "not json",
        }
    )
    assert msg.message is not None and msg.message.priority == 2
    assert extras.map_message(
        {"id": "m2", "from_agent": "a", "to_agent": "b", "body": "x", "kind": "gossip"}
    ).error
    runs = {"r1": {"id": "r1", "retry_count": 2}}
    retry = extras.map_dispatch(
        {
            "id": "d1",
            "job_id": "j1",
            "dispatch_kind": "retry",
            "status": "pending",
            "retry_of_run_id": "r1",
            "scheduled_for": text(NOW + 60),
        },
        runs,
        set(),
        NOW,
    )
    assert (retry.kind, retry.attempt, retry.not_before) == ("retry", 2, NOW + 60)
    held = extras.map_dispatch(
        {"id": "d2", "job_id": "j1", "dispatch_kind": "chain", "status": "awaiting_approval"},
        {},
        {"d2"},
        NOW,
    )
    assert held.kind == "chain" and held.gate is False  # approved already: not held again
    odd = extras.map_dispatch(
        {"id": "d3", "job_id": "j1", "dispatch_kind": "cosmic", "status": "pending"}, {}, set(), NOW
    )
    assert odd.kind is None and odd.error is not None and "cosmic" in odd.error


def test_where_a_schedule_continues() -> None:
    hourly = JobSpec(name="h", executor="shell", target="t", cron="0 * * * *")
    on_grid = continue_schedule(hourly, {"next_run_at": text(NOW + 3600)}, NOW)
    assert on_grid.next_run_at == NOW + 3600 and on_grid.skipped == []
    pushed = continue_schedule(hourly, {"next_run_at": text(NOW + 3 * 3600 + 30)}, NOW)
    assert pushed.next_run_at == NOW + 3 * 3600 + 30
    assert [s.slot for s in pushed.skipped] == [NOW + 3600, NOW + 7200, NOW + 3 * 3600]
    assert {s.reason for s in pushed.skipped} == {"backoff"}
    late = continue_schedule(hourly, {"next_run_at": text(NOW - 2 * 3600)}, NOW + 30)
    assert late.next_run_at == NOW  # 30 s late: on time, it runs
    assert [s.slot for s in late.skipped] == [NOW - 7200, NOW - 3600]
    stale = continue_schedule(hourly, {"next_run_at": text(NOW - 3600)}, NOW + 600)
    assert stale.next_run_at == NOW + 3600  # 10 min late: missed, as every slot before it
    assert [s.slot for s in stale.skipped] == [NOW - 3600, NOW]
    assert continue_schedule(hourly, {"next_run_at": None}, NOW + 1).next_run_at == NOW + 3600
    at = JobSpec(name="a", executor="shell", target="t", at="2026-03-07T11:00:00+00:00")
    assert continue_schedule(at, {"schedule_at": text(NOW - 3600)}, NOW).next_run_at == NOW - 3600
    ran = continue_schedule(
        at, {"schedule_at": text(NOW - 3600), "last_run_at": text(NOW - 3500)}, NOW
    )
    assert ran.disable and ran.next_run_at is None
    child = JobSpec(name="c", executor="shell", target="t", parent="p", trigger_on="success")
    assert continue_schedule(child, {"next_run_at": text(NOW + 60)}, NOW).next_run_at is None
    off = JobSpec(name="o", executor="shell", target="t", cron="0 * * * *", enabled=False)
    assert continue_schedule(off, {"next_run_at": text(NOW + 60)}, NOW).next_run_at is None
