"""Building the prompt of an agent turn. Pure: the caller fetches and marks inbox rows.

Layout and wording follow OCS ``buildJobPrompt`` (SEMANTICS.md §2.4), parts joined by
newlines, each section opening with a blank line:

    [scheduler:<job_id> <name>]
    execution-boundary note        options.execution_intent == "plan" / options.read_only
    model-policy note              options.thinking
    pre-compaction flush preamble  options.job_class == "pre_compaction_flush"
    global-scope note              options.scope == "global"
    --- Pending Messages ---       up to 5 inbox messages, bodies cut at 500 chars
    --- Trigger Context ---        the parent run, when this run was triggered
    [IDEMPOTENCY KEY: <key>]       at-least-once jobs only
    <payload message>              payload["message"], else job.target

OCS's retrieval context (``--- Prior Run Context ---``) is not built here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec

__all__ = [
    "INBOX_LIMIT",
    "MESSAGE_BODY_LIMIT",
    "OPTIONS",
    "SHELL_EXCERPT",
    "InboxMessage",
    "PromptResult",
    "ShellParent",
    "build_prompt",
    "inbox_order_key",
    "trigger_context_text",
    "validate_options",
]

INBOX_LIMIT = 5
#: the job options the prompt reads (the table in this module's docstring)
OPTIONS = frozenset({"execution_intent", "read_only", "thinking", "job_class", "scope"})
MESSAGE_BODY_LIMIT = 500
_BODY_MARKER = "\n[... message truncated]"
# Kinds shown without a "[kind] " label in front of the body.
_PLAIN_KINDS = frozenset({"text", "result", "status", "system", "spawn"})
_KIND_RANK = {"constraint": 0, "decision": 1, "fact": 2, "task": 3, "preference": 4}


class InboxMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A pending message for the agent, as read from the messages table."""

    id: int
    from_agent: str
    kind: str
    subject: str | None
    body: str
    priority: int = 0  # 0 normal, 1 high, 2 urgent
    created_at: float = 0.0
    owner: str | None = None  # shown for typed kinds: "[task] (owner: ops) …"


class PromptResult(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    sections: list[str]  # what was injected, in order: "header", "inbox", …
    delivered_message_ids: list[int]  # inbox rows to mark delivered after sending


def inbox_order_key(msg: InboxMessage) -> tuple[int, int, float]:
    """OCS inbox order: constraint, decision, fact, task, preference, rest;
    then priority high→low; then oldest first. Use as ``sorted(..., key=...)``."""
    return (_KIND_RANK.get(msg.kind, 5), -msg.priority, msg.created_at)


class ShellParent(msgspec.Struct, frozen=True, kw_only=True):
    """What a shell parent's run left: shown line by line in its child's trigger
    context (OCS ``buildTriggeredRunContext``)."""

    timed_out: bool = False
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    stdout_path: str | None = None  # the full stream, when it was offloaded
    stderr_path: str | None = None


SHELL_EXCERPT = 3000  # characters of each stream of a shell parent


def trigger_context_text(
    parent_job_name: str,
    parent_status: str,
    *,
    summary: str | None = None,
    error_message: str | None = None,
    shell: ShellParent | None = None,
) -> str:
    """The body of the trigger-context block for a run started by a parent run: for a
    shell parent its timed-out flag, exit code, signal, error and each stream (≤ 3000
    characters, or where it was offloaded); else its summary (≤ 5000) or its error
    (≤ 2000)."""
    lines = [f"Triggered by: {parent_job_name}", f"Parent run status: {parent_status}"]
    if shell is not None:
        lines.append(f"Timed out: {'yes' if shell.timed_out else 'no'}")
        if shell.exit_code is not None:
            lines.append(f"Exit code: {shell.exit_code}")
        if shell.signal is not None:
            lines.append(f"Signal: {shell.signal}")
        if shell.error and shell.error.strip():
            lines.append(f"Error: {shell.error[:2000]}")
        for name, text, path in (
            ("stdout", shell.stdout, shell.stdout_path),
            ("stderr", shell.stderr, shell.stderr_path),
        ):
            if path:
                lines.append(f"{name} offloaded: {path}")
            elif text and text.strip():
                lines += [f"{name}:", text.strip()[:SHELL_EXCERPT]]
    elif summary and summary.strip():
        lines += ["Parent run output:", summary[:5000]]
    elif error_message and error_message.strip():
        lines += ["Parent run error:", error_message[:2000]]
    return "\n".join(lines)


def _execution_note(intent: object, read_only: bool) -> str | None:
    if intent != "plan" and not read_only:
        return None
    lines = [
        "[SYSTEM NOTE \u2014 execution boundary]",
        "This run is planning-only. Analyze, reason, and propose actions, "
        "but do not execute external side effects."
        if intent == "plan"
        else "This run is read-only. Inspect and summarize state, "
        "but do not execute external side effects.",
    ]
    if read_only:
        lines.append(
            "Treat every write, send, post, mutation, or shelling out for side effects "
            "as forbidden."
        )
    lines.append(
        "If a concrete change is needed, describe it as a recommendation instead of performing it."
    )
    lines.append("[END SYSTEM NOTE]")
    return "\n".join(lines)


_FLUSH_PREAMBLE = (
    "\n[SYSTEM: Pre-compaction flush required]",
    "Write a structured summary of: active decisions, constraints, task owners, open questions.",
    "Format as labeled sections. If nothing needs flushing, respond with exactly: NO_FLUSH",
    "[END SYSTEM]",
)

_GLOBAL_SCOPE_NOTE = (
    "\n[SYSTEM NOTE -- scope=global]",
    "This job has cross-session sub-agent visibility enabled.",
    "When you need to list or inspect sub-agents, do NOT use `subagents list`",
    "(which only shows sub-agents spawned by the current session).",
    "Instead, call `sessions_list` with no session filter to enumerate ALL active",
    "sessions across every requester, then filter by session key prefix or agent id.",
    "This lets you observe sub-agents spawned from the main Telegram session or any",
    "other session -- not just this isolated scheduler session.",
    "[END SYSTEM NOTE]",
)


def _inbox_lines(msg: InboxMessage) -> list[str]:
    label = ""
    if msg.kind and msg.kind not in _PLAIN_KINDS:
        label = f"[{msg.kind}]" + (f" (owner: {msg.owner})" if msg.owner else "") + " "
    body = msg.body
    if len(body) > MESSAGE_BODY_LIMIT:
        body = body[:MESSAGE_BODY_LIMIT] + _BODY_MARKER
    return [
        f"From: {msg.from_agent} | {msg.kind} | {msg.subject or '(no subject)'}",
        label + body,
        "---",
    ]


def _message(job: JobSpec, payload: Mapping[str, Any]) -> str:
    message = payload.get("message")
    if message is None or message == "":
        return job.target
    return message if isinstance(message, str) else str(message)


def validate_options(options: Mapping[str, Any]) -> None:
    """ConfigError naming the field for a prompt option of the wrong type."""
    for key in ("execution_intent", "thinking", "job_class", "scope"):
        value = options.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError("must be a string", field=f"options.{key}")
    if not isinstance(options.get("read_only", False), bool):
        raise ConfigError("must be true or false", field="options.read_only")


def build_prompt(
    job: JobSpec,
    *,
    job_id: int,
    inbox: Sequence[InboxMessage],
    trigger_context: str | None,
    idempotency_key: str | None,
    payload: Mapping[str, Any] | None = None,
) -> PromptResult:
    """The prompt for one agent turn of ``job``.

    ``inbox`` is taken in the order given (sort with :func:`inbox_order_key`); at most
    5 are injected. ``trigger_context`` is the block body (see
    :func:`trigger_context_text`). ``payload`` overrides ``job.payload`` (a dispatch's
    own payload).
    """
    opts = job.options
    parts = [f"[scheduler:{job_id} {job.name}]"]
    sections = ["header"]

    note = _execution_note(opts.get("execution_intent"), bool(opts.get("read_only")))
    if note:
        parts.append("\n" + note)
        sections.append("execution_boundary")
    thinking = opts.get("thinking")
    if thinking:
        parts += [
            "\n[SYSTEM NOTE -- model policy]",
            f"Prefer reasoning depth: {thinking}.",
            "[END SYSTEM NOTE]",
        ]
        sections.append("model_policy")
    if opts.get("job_class") == "pre_compaction_flush":
        parts += _FLUSH_PREAMBLE
        sections.append("flush_preamble")
    if opts.get("scope") == "global":
        parts += _GLOBAL_SCOPE_NOTE
        sections.append("scope_global")

    injected = list(inbox[:INBOX_LIMIT])
    if injected:
        parts.append("\n--- Pending Messages ---")
        for msg in injected:
            parts += _inbox_lines(msg)
        sections.append("inbox")

    if trigger_context is not None and trigger_context.strip():
        parts.append("\n".join(["", "--- Trigger Context ---", trigger_context, "---"]))
        sections.append("trigger_context")

    if idempotency_key and job.delivery_guarantee == "at-least-once":
        parts += [
            f"\n[IDEMPOTENCY KEY: {idempotency_key}]",
            "This is an at-least-once job. Before performing side effects, verify this key",
            "has not already been processed. If you've already handled this exact execution,",
            "respond with: IDEMPOTENT_SKIP",
        ]
        sections.append("idempotency")

    parts.append("\n" + _message(job, job.payload if payload is None else payload))
    sections.append("message")
    return PromptResult(
        text="\n".join(parts),
        sections=sections,
        delivered_message_ids=[m.id for m in injected],
    )
