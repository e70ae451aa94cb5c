"""Spawn messages: a ``spawn`` message's body → a validated one-shot job, and the op
that stores both (SEMANTICS §2.6; store/ops/spawn.py).

The body is a JSON object in one of two shapes:

- shepherd's own ``JobSpec`` (``{"name": ..., "executor": "shell", "target": ...}``);
  it takes no schedule (``cron`` / ``every`` / ``at``: refused), ``name`` defaults to
  ``spawned-by-<from>-<message id>`` and ``delete_after_run`` to true;
- OCS's spawn shape, told apart by ``payload_message`` or ``session_target``:
  ``payload_message`` (required), ``session_target`` isolated → ``agent`` (target
  ``agent_id`` ‖ the message's ``to_agent`` ‖ ``main``), shell → ``shell`` (the
  message is the command), main → ``event``; any other value → isolated, as OCS;
  ``delivery_mode`` none / announce / announce-always (other values → none),
  ``delivery_channel``, ``delivery_to``; ``run_timeout_ms`` → ``timeout`` (default
  300 s); ``name``; ``delete_after_run`` (true unless false); ``schedule_cron`` is
  ignored (a spawn is a one-shot); other OCS keys are ignored.

Whatever fails (not JSON, not an object, a field ``validate_job`` refuses) becomes the
message's ``last_error`` and the message is ``failed``: visible in ``msg inbox --all``
and ``status``, never delivered silently. ``Spawner`` is the runtime's side (the API's
``send_message(kind="spawn")`` and the start pass over spawn messages a foreign writer
left pending); the CLI builds the same op with ``spawn_op``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from shepherd.actors.executors.base import Executor
from shepherd.actors.messages import (
    DispatcherMsg,
    Enqueued,
    Entry,
    JobsChanged,
    Poke,
    SchedulerMsg,
    entry_from_new,
)
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address
from shepherd.actors.writer import StoreMsg, write
from shepherd.runtime.jobs import validate_job
from shepherd.store.bounds import TOO_DEEP
from shepherd.store.errors import ConfigError, MailboxClosed, MailboxFull
from shepherd.store.json_errors import json_problem
from shepherd.store.models import JobSpec, decode_spec, encode_json, priority_rank
from shepherd.store.ops import NewDispatch, NewMessage, Spawned, SpawnMessage
from shepherd.store.protocol import Store

__all__ = ["Spawner", "spawn_op", "spawn_spec"]

_OCS_KEYS = ("payload_message", "session_target")
_TARGETS = {"isolated": "agent", "shell": "shell", "main": "event"}
_MODES = ("none", "announce", "announce-always")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@/-]+")
ID = "{id}"  # replaced by the message id when the row is written


def spawn_spec(body: str, *, from_agent: str, to_agent: str, now: float) -> JobSpec:
    """The one-shot job ``body`` asks for (not yet validated against the executors)."""
    try:
        data = msgspec.json.decode(body)
    except ValueError as exc:  # msgspec.DecodeError
        problem = json_problem(body.encode(errors="surrogatepass"), str(exc))
        raise ConfigError(
            f"a spawn body must be a JSON job spec ({problem})", field="body"
        ) from None
    except RecursionError:
        raise ConfigError(TOO_DEEP, field="body") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"a spawn body must be a JSON object, got {type(data).__name__}", field="body"
        )
    default_name = f"spawned-by-{_UNSAFE.sub('-', from_agent).strip('-') or 'agent'}-{ID}"
    if any(k in data for k in _OCS_KEYS):
        spec = _from_ocs(data, to_agent, default_name)
    else:
        for field in ("cron", "every", "at"):
            if data.get(field) is not None:
                raise ConfigError("a spawned job is a one-shot: it takes no schedule", field=field)
        data = {"name": default_name, "delete_after_run": True, **data}
        spec = decode_spec(data, JobSpec)
        if not spec.target.strip() and spec.executor != "event":
            raise ConfigError(
                f"a spawned {spec.executor} job needs a target (what to run)", field="target"
            )
    at = datetime.fromtimestamp(now, UTC).isoformat()
    return msgspec.structs.replace(spec, at=at, cron=None, every=None, enabled=True)


def _from_ocs(data: Mapping[str, Any], to_agent: str, default_name: str) -> JobSpec:
    message = data.get("payload_message")
    if not isinstance(message, str) or not message.strip():
        raise ConfigError("must be a non-empty string", field="payload_message")
    executor = _TARGETS.get(str(data.get("session_target") or "isolated"), "agent")
    mode = data.get("delivery_mode") or "none"
    options: dict[str, Any] = {"delivery": mode if mode in _MODES else "none"}
    for key in ("delivery_to", "delivery_channel"):
        if data.get(key):
            options[key] = data[key]
    timeout_ms = data.get("run_timeout_ms") or 300_000
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float):
        raise ConfigError("must be a number of milliseconds", field="run_timeout_ms")
    agent = data.get("agent_id") or to_agent or "main"
    fields: dict[str, Any] = {
        "name": data.get("name") or default_name,
        "executor": executor,
        "target": message if executor == "shell" else str(agent),
        "payload": {} if executor == "shell" else {"message": message},
        "timeout": float(timeout_ms) / 1000.0,
        "delete_after_run": data.get("delete_after_run") is not False,
        "options": options,
    }
    return decode_spec(fields, JobSpec)


def spawn_op(
    executors: Mapping[str, Executor],
    now: float,
    origin: str,
    *,
    message: NewMessage | None = None,
    message_id: int | None = None,
    from_agent: str = "",
    to_agent: str = "",
    body: str = "",
) -> SpawnMessage:
    """The op for a spawn message: the validated job, or the error it failed with."""
    if message is not None:
        from_agent, to_agent, body = message.from_agent, message.to_agent, message.body
    try:
        spec = spawn_spec(body, from_agent=from_agent, to_agent=to_agent, now=now)
        check = msgspec.structs.replace(spec, name=spec.name.replace(ID, "1"))
        validate_job(check, executors, now)
    except ConfigError as exc:
        return SpawnMessage(now=now, origin=origin, message=message, message_id=message_id,
                            error=str(exc))  # fmt: skip
    return SpawnMessage(
        now=now, origin=origin, message=message, message_id=message_id,
        spec=encode_json(spec), executor=spec.executor, priority=priority_rank(spec.priority),
        max_attempts=spec.retry.max_attempts,
        expires_at=now + float(spec.expires_in) if spec.expires_in is not None else None,
    )  # fmt: skip


class Spawner:
    """The runtime's side: commit a spawn op, then tell the scheduler (which ends the
    one-shot after its run) and the dispatcher (which runs it)."""

    def __init__(
        self,
        *,
        clock: Clock,
        store: Store,
        executors: Mapping[str, Executor],
        instance: str,
        writer: Address[StoreMsg],
        dispatcher: Address[DispatcherMsg],
        scheduler: Address[SchedulerMsg],
        approvals: Address[Poke] | None = None,
    ) -> None:
        self._clock = clock
        self._store = store
        self._executors = executors
        self._instance = instance
        self._writer = writer
        self._dispatcher = dispatcher
        self._scheduler = scheduler
        self._approvals = approvals

    async def send(self, message: NewMessage) -> Spawned:
        now = self._clock.wall()
        op = spawn_op(self._executors, now, self._instance, message=message)
        return await self._commit(op)

    async def adopt_pending(self) -> list[Spawned]:
        """Spawn messages another writer left pending (at start): the same validation."""
        out: list[Spawned] = []
        for msg_id, from_agent, body in await self._store.pending_spawns():
            rows = await self._store.message(msg_id)
            to_agent = rows.to_agent if rows is not None else ""
            op = spawn_op(
                self._executors, self._clock.wall(), self._instance, message_id=msg_id,
                from_agent=from_agent, to_agent=to_agent, body=body,
            )  # fmt: skip
            out.append(await self._commit(op))
        return out

    async def _commit(self, op: SpawnMessage) -> Spawned:
        done: Spawned = await write(self._writer, op)
        if done.status == "delivered" and done.job_id is not None:
            await self._scheduler.send(JobsChanged([done.job_id]))
            await self._dispatcher.send(JobsChanged([done.job_id]))
            if not done.gated and done.dispatch_id is not None and done.seq is not None:
                entry = _entry(op, done)
                await self._dispatcher.send(Enqueued([entry]))
            elif done.gated and self._approvals is not None:  # its timeout and request
                with contextlib.suppress(MailboxFull, MailboxClosed):  # one waiting covers it
                    self._approvals.tell(Poke(approvals=True))
        return done


def _entry(op: SpawnMessage, done: Spawned) -> Entry:
    assert done.job_id is not None and done.dispatch_id is not None and done.seq is not None
    new = NewDispatch(
        job_id=done.job_id, job_name=str(done.job_name), kind="spawn", priority=op.priority,
        not_before=op.now, max_attempts=op.max_attempts, expires_at=op.expires_at,
        slot=op.now,
    )  # fmt: skip
    return entry_from_new(new, done.dispatch_id, done.seq)
