"""The request and answer types of the REST resources (``rest_*.py``), as msgspec Structs.

The query Structs forbid unknown fields, so a misspelt filter is a 422 naming it; their
bounds are ``msgspec.Meta`` (a request is never stored, so a tightened bound cannot make
old rows unreadable). Job and agent bodies are *mirrors* of ``JobSpec`` / ``AgentSpec``
(``mirror``): the same fields, a duration typed ``number | string`` (``"30s"``), so the
document can describe them; the handler then decodes the mirror's value with
``decode_spec``, the validation job files get. Listings answer a ``Page``:
``{"items": [...], "next_cursor": "..." | null}``; the cursor is opaque (the id to
continue below, keyset pagination).

The module is long because it declares every request shape of the API in one place;
the answers are in ``runtime.http.answers``.
"""

from __future__ import annotations

import base64
import types
import typing
from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType

from shepherd.runtime.http.api import ApiError
from shepherd.store.bounds import MAX_ID
from shepherd.store.models import (
    AgentSpec,
    JobSpec,
    Priority,
    Seconds,
)

__all__ = [
    "AgentBody",
    "AgentPatch",
    "BatchBody",
    "EnqueueBody",
    "JobBody",
    "JobView",
    "decode_cursor",
    "encode_cursor",
    "mirror",
    "page",
    "path_id",
]

Limit = Annotated[int, Meta(ge=1, le=500, description="at most 500 per page")]
Id = Annotated[int, Meta(ge=1, le=MAX_ID)]
Epoch = Annotated[float, Meta(ge=0, le=253402300799.0)]
DispatchState = Literal["queued", "awaiting_approval", "running", "done", "cancelled", "dead"]
RunState = Literal["running", "ok", "error", "timeout", "crashed", "cancelled", "skipped"]
ApprovalState = Literal["pending", "approved", "rejected", "timed_out"]
MessageState = Literal["pending", "delivered", "read", "expired", "failed"]


# -- mirrors of the specs with durations -------------------------------------------------


def _plain(tp: Any, made: dict[type, type]) -> Any:
    """``tp`` with ``Seconds`` as ``float | str`` and Structs mirrored."""
    origin = typing.get_origin(tp)
    if tp is Seconds:
        return float | str
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return mirror(tp, made=made)
    if origin is Annotated:
        return _plain(typing.get_args(tp)[0], made)  # our Range markers: checked later
    if origin in (Union, types.UnionType):
        args = tuple(_plain(a, made) for a in typing.get_args(tp))
        out = args[0]
        for a in args[1:]:
            out = out | a
        return out
    if origin in (list, dict):
        args = tuple(_plain(a, made) for a in typing.get_args(tp))
        return origin[args] if len(args) > 1 else origin[args[0]]
    return tp


def mirror(struct: type, *, made: dict[type, type] | None = None) -> type:
    """A Struct with ``struct``'s fields for the document and the first decode:
    ``Seconds`` become ``float | str``, nested Structs their mirrors, defaults kept."""
    made = {} if made is None else made
    if struct in made:
        return made[struct]
    fields: list[Any] = []
    for f in msgspec.structs.fields(struct):
        tp = _plain(f.type, made)
        if f.default is not msgspec.NODEFAULT:
            d = float(f.default) if isinstance(f.default, Seconds) else f.default
            fields.append((f.name, tp, d))
        elif f.default_factory is not msgspec.NODEFAULT:
            factory = f.default_factory
            if isinstance(factory, type) and issubclass(factory, msgspec.Struct):
                factory = mirror(factory, made=made)  # RetryPolicy() -> RetryPolicyBody()
            fields.append((f.name, tp, msgspec.field(default_factory=factory)))
        else:
            fields.append((f.name, tp))
    out = msgspec.defstruct(
        f"{struct.__name__}Body", fields, kw_only=True, forbid_unknown_fields=True
    )
    made[struct] = out
    return out


_MADE: dict[type, type] = {}
JobBody: Any = mirror(JobSpec, made=_MADE)  # POST / PUT /api/v1/jobs
AgentBody: Any = mirror(AgentSpec, made=_MADE)  # POST /api/v1/agents


class JobView(msgspec.Struct, kw_only=True):
    """A stored job (``JobRow``): its spec and the scheduler's bookkeeping."""

    id: int
    spec: JobBody
    next_run_at: float | None = None
    anchor: float | None = None
    last_run_at: float | None = None
    last_status: str | None = None
    consecutive_errors: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0


# -- ids and cursors ----------------------------------------------------------------------


def path_id(params: dict[str, str], name: str = "id") -> int:
    """An integer path parameter from 1 to 2^62 (``Id``), or 422 naming it."""
    raw = params.get(name, "")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_ID:
        raise ApiError(422, f"expected an id from 1 to {MAX_ID} (2^62), got {raw!r}", field=name)
    return int(raw)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"b{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id a page continues below; 422 naming ``cursor`` for a bad one."""
    if cursor is None or cursor == "":
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        text = ""
    if not (text.startswith("b") and text[1:].isdigit() and 0 < int(text[1:]) <= MAX_ID):
        raise ApiError(422, "not a cursor this API gave out", field="cursor")
    return int(text[1:])


def page(rows: list[Any], limit: int) -> tuple[list[Any], str | None]:
    """``rows`` read with ``limit + 1``: the page, and a cursor when there is more."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].id)


# -- queries ---------------------------------------------------------------------------------


class _Query(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class NextQuery(_Query):
    count: Annotated[int, Meta(ge=1, le=1000)] = 5


class CancelQuery(_Query):
    cascade: bool = False


class DispatchesQuery(_Query):
    job: str | None = None
    state: list[DispatchState] | None = None
    priority: Priority | None = None
    agent: str | None = None
    since: Epoch | None = None  # created_at >= since
    until: Epoch | None = None  # created_at < until
    limit: Limit = 100
    cursor: str | None = None


class RunsQuery(_Query):
    job: str | None = None
    state: list[RunState] | None = None
    dispatch_id: Id | None = None
    agent: str | None = None
    since: Epoch | None = None  # started_at >= since
    until: Epoch | None = None
    limit: Limit = 100
    cursor: str | None = None


class DeadQuery(_Query):
    job: str | None = None
    limit: Limit = 100
    cursor: str | None = None


class ApprovalsQuery(_Query):
    status: ApprovalState | None = None
    job: str | None = None
    limit: Limit = 100


class MessagesQuery(_Query):
    """``inbox``: that agent's inbox (and broadcasts) in inbox order, unexpired;
    otherwise every message matching ``to_agent`` / ``from_agent`` / ``status``."""

    inbox: str | None = None
    to_agent: str | None = None
    from_agent: str | None = None
    status: MessageState | None = None
    limit: Limit = 100


# -- bodies ------------------------------------------------------------------------------------


class _Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class EnqueueBody(_Body):
    """One dispatch. ``delay`` / ``not_before`` (epoch seconds) exclude each other, as do
    ``expires_in`` / ``expires_at``; unset fields take the job's values."""

    job: str
    payload: dict[str, Any] | None = None
    priority: Priority | None = None
    not_before: float | None = None
    delay: float | None = None
    expires_at: float | None = None
    expires_in: float | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None
    capabilities: list[str] | None = None
    owner: str | None = None


class BatchBody(_Body):
    """Many dispatches: each item is checked alone, so one bad item does not take the
    others down (``BatchResult`` answers per item)."""

    items: Annotated[
        # each item decoded alone (rest_queue.enqueue_batch): whatever is wrong with one
        # (not an object, a number out of range, too deep) is that item's error
        list[msgspec.Raw],
        Meta(
            min_length=1,
            max_length=1000,
            description="each item an EnqueueBody (POST /api/v1/dispatches)",
        ),
    ]


class RunNowBody(_Body):
    payload: dict[str, Any] | None = None


class RejectBody(_Body):
    reason: Annotated[str, Meta(min_length=1, max_length=1000)]
    by: str | None = None


class ApproveBody(_Body):
    by: str | None = None


class RetryManyBody(_Body):
    """``ids``, or ``all`` (every dead letter; ``job``: only that job's)."""

    ids: list[Id] | None = None
    all: bool = False
    job: str | None = None


class PurgeBody(_Body):
    """Exactly one of ``ids``, ``older_than`` (seconds) or ``all``."""

    ids: list[Id] | None = None
    older_than: Annotated[float, Meta(ge=0)] | None = None
    all: bool = False


class AgentPatch(_Body):
    name: str | UnsetType = UNSET
    capabilities: list[str] | UnsetType = UNSET
    policy: Literal["always-on", "on-demand"] | UnsetType = UNSET
    max_concurrent: int | UnsetType = UNSET
    delivery: str | UnsetType | None = UNSET
    model: str | UnsetType | None = UNSET
    wake: str | UnsetType | None = UNSET
    wake_timeout: float | str | UnsetType = UNSET
    status: Literal["ready", "sleeping", "busy", "degraded", "offline"] | UnsetType = UNSET


class SendBody(_Body):
    """A message; an agent token sends as its own agent (``from_agent`` defaults to it)."""

    to_agent: str
    body: str
    from_agent: str | None = None
    kind: str = "text"
    subject: str | None = None
    priority: int = 0
    expires_in: float | None = None
    metadata: dict[str, Any] | None = None
    channel: str | None = None
    delivery_to: str | None = None
    reply_to: Id | None = None


class PauseBody(_Body):
    scope: Literal["runtime", "job", "pool", "executor", "agent"]
    name: str | None = None
    reason: str | None = None


class ResumeBody(_Body):
    scope: Literal["all", "runtime", "job", "pool", "executor", "agent"]
    name: str | None = None
