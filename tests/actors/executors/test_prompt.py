from __future__ import annotations

from typing import Any

from shepherd.actors.executors.prompt import (
    InboxMessage,
    build_prompt,
    inbox_order_key,
    trigger_context_text,
)
from shepherd.store.models import JobSpec


def job(**kw: Any) -> JobSpec:
    base: dict[str, Any] = {
        "name": "daily-report",
        "executor": "agent",
        "target": "main",
        "payload": {"message": "Write the daily report."},
    }
    base.update(kw)
    return JobSpec(**base)


def msg(i: int, kind: str = "text", body: str = "hi", **kw: Any) -> InboxMessage:
    return InboxMessage(
        id=i,
        from_agent=kw.pop("from_agent", "ops"),
        kind=kind,
        subject=kw.pop("subject", f"s{i}"),
        body=body,
        priority=kw.pop("priority", 0),
        created_at=kw.pop("created_at", float(i)),
        **kw,
    )


def prompt(j: JobSpec, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "job_id": 7,
        "inbox": [],
        "trigger_context": None,
        "idempotency_key": None,
    }
    args.update(kw)
    return build_prompt(j, **args)


def test_minimal_prompt_is_header_and_message() -> None:
    res = prompt(job())
    assert res.text == "[scheduler:7 daily-report]\n\nWrite the daily report."
    assert res.sections == ["header", "message"]
    assert res.delivered_message_ids == []


def test_message_falls_back_to_target_and_payload_override_wins() -> None:
    assert prompt(job(payload={})).text.endswith("\n\nmain")
    res = prompt(job(), payload={"message": "from the dispatch"})
    assert res.text.endswith("\n\nfrom the dispatch")


def test_plan_intent_note() -> None:
    res = prompt(job(options={"execution_intent": "plan"}))
    assert "[SYSTEM NOTE \u2014 execution boundary]" in res.text
    assert "This run is planning-only." in res.text
    assert "do not execute external side effects" in res.text
    assert "forbidden" not in res.text
    assert res.sections == ["header", "execution_boundary", "message"]


def test_read_only_note_forbids_side_effects() -> None:
    res = prompt(job(options={"read_only": True}))
    assert "This run is read-only. Inspect and summarize state" in res.text
    assert (
        "Treat every write, send, post, mutation, or shelling out for side effects as forbidden."
        in res.text
    )


def test_model_policy_note() -> None:
    res = prompt(job(options={"thinking": "high"}))
    assert (
        "\n\n[SYSTEM NOTE -- model policy]\nPrefer reasoning depth: high.\n[END SYSTEM NOTE]"
        in res.text
    )
    assert "model_policy" in res.sections


def test_flush_preamble_asks_for_no_flush_sentinel() -> None:
    res = prompt(job(options={"job_class": "pre_compaction_flush"}))
    assert "[SYSTEM: Pre-compaction flush required]" in res.text
    assert "If nothing needs flushing, respond with exactly: NO_FLUSH" in res.text
    assert "flush_preamble" in res.sections


def test_no_notes_without_options() -> None:
    text = prompt(job()).text
    assert "SYSTEM" not in text


def test_inbox_messages_are_injected_in_given_order_up_to_five() -> None:
    inbox = [msg(i) for i in (9, 3, 5, 1, 2, 8, 4)]
    res = prompt(job(), inbox=inbox)
    assert res.delivered_message_ids == [9, 3, 5, 1, 2]
    assert res.text.count("From: ops | text |") == 5
    assert res.text.index("| s9") < res.text.index("| s3") < res.text.index("| s2")
    assert "| s8" not in res.text
    assert "\n\n--- Pending Messages ---\nFrom: ops | text | s9\nhi\n---\n" in res.text
    assert res.sections == ["header", "inbox", "message"]


def test_body_of_501_chars_is_cut_and_500_is_not() -> None:
    res = prompt(job(), inbox=[msg(1, body="a" * 501), msg(2, body="b" * 500)])
    assert "a" * 500 + "\n[... message truncated]" in res.text
    assert "a" * 501 not in res.text
    assert "b" * 500 + "\n---" in res.text


def test_typed_kinds_get_a_label_with_owner() -> None:
    res = prompt(
        job(),
        inbox=[
            msg(1, kind="task", body="ship it", owner="alice"),
            msg(2, kind="constraint", body="no prod"),
        ],
    )
    assert "[task] (owner: alice) ship it" in res.text
    assert "[constraint] no prod" in res.text


def test_missing_subject_is_shown_as_placeholder() -> None:
    res = prompt(job(), inbox=[msg(1, subject=None)])
    assert "From: ops | text | (no subject)" in res.text


def test_trigger_context_block() -> None:
    body = trigger_context_text("parent-job", "ok", summary="42 rows")
    res = prompt(job(), trigger_context=body)
    assert (
        "\n\n--- Trigger Context ---\nTriggered by: parent-job\nParent run status: ok\n"
        "Parent run output:\n42 rows\n---\n" in res.text
    )
    assert "trigger_context" in res.sections


def test_trigger_context_shows_error_when_no_summary() -> None:
    body = trigger_context_text("p", "error", summary="  ", error_message="e" * 3000)
    assert body.endswith("Parent run error:\n" + "e" * 2000)


def test_idempotency_key_only_for_at_least_once() -> None:
    alo = prompt(job(delivery_guarantee="at-least-once"), idempotency_key="k-123")
    assert "\n\n[IDEMPOTENCY KEY: k-123]\nThis is an at-least-once job." in alo.text
    assert alo.text.count("IDEMPOTENT_SKIP") == 1
    assert "idempotency" in alo.sections
    amo = prompt(job(), idempotency_key="k-123")
    assert "IDEMPOTENCY KEY" not in amo.text
    none = prompt(job(delivery_guarantee="at-least-once"), idempotency_key=None)
    assert "IDEMPOTENCY KEY" not in none.text


def test_section_order_matches_ocs_layout() -> None:
    res = prompt(
        job(
            delivery_guarantee="at-least-once",
            options={
                "execution_intent": "plan",
                "thinking": "low",
                "job_class": "pre_compaction_flush",
                "scope": "global",
            },
        ),
        inbox=[msg(1)],
        trigger_context="Triggered by: p",
        idempotency_key="key",
    )
    assert res.sections == [
        "header",
        "execution_boundary",
        "model_policy",
        "flush_preamble",
        "scope_global",
        "inbox",
        "trigger_context",
        "idempotency",
        "message",
    ]
    t = res.text
    markers = [
        "[scheduler:7",
        "execution boundary",
        "model policy",
        "Pre-compaction flush",
        "scope=global",
        "--- Pending Messages ---",
        "--- Trigger Context ---",
        "[IDEMPOTENCY KEY",
        "Write the daily report.",
    ]
    positions = [t.index(m) for m in markers]
    assert positions == sorted(positions)


def test_inbox_order_key_kind_then_priority_desc_then_oldest() -> None:
    msgs = [
        msg(1, kind="text", priority=2, created_at=1.0),
        msg(2, kind="preference", created_at=1.0),
        msg(3, kind="task", priority=0, created_at=1.0),
        msg(4, kind="task", priority=2, created_at=5.0),
        msg(5, kind="task", priority=2, created_at=3.0),
        msg(6, kind="fact", created_at=9.0),
        msg(7, kind="decision", created_at=9.0),
        msg(8, kind="constraint", created_at=9.0),
    ]
    ordered = [m.id for m in sorted(msgs, key=inbox_order_key)]
    assert ordered == [8, 7, 6, 5, 4, 3, 2, 1]
