"""The answer types of the REST resources (``rest_*.py``): pages, per-item batch
results, and the small acknowledgements; the rows themselves are the store's Structs
(``Dispatch``, ``Run``, ``Approval``...), so the API answers what the Runtime API
returns."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from shepherd.runtime.http.api import ErrorBody
from shepherd.runtime.http.schemas import JobView
from shepherd.store.models import Agent, Approval, Dispatch, Message, Pause, Run

# -- answers -----------------------------------------------------------------------------------


class DispatchPage(msgspec.Struct, kw_only=True):
    items: list[Dispatch]
    next_cursor: str | None = None


class RunPage(msgspec.Struct, kw_only=True):
    items: list[Run]
    next_cursor: str | None = None


class RunDetail(msgspec.Struct, kw_only=True):
    """A run, and every run of its dispatch (its attempts), newest first."""

    run: Run
    attempts: list[Run]


class Enqueued(msgspec.Struct, kw_only=True):
    """``duplicate``: the idempotency key was bound to this dispatch already."""

    id: int
    job: str
    duplicate: bool = False


class BatchItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    index: int
    id: int | None = None
    error: ErrorBody | None = None


class BatchResult(msgspec.Struct, kw_only=True):
    """Per item, in order: an ``id`` or an ``error`` (status, message, field)."""

    results: list[BatchItem]
    enqueued: int
    failed: int


class Cancelled(msgspec.Struct, kw_only=True):
    id: int
    result: Literal["cancelled", "cancel_requested"]
    children_cancelled: list[int] = []


class Ids(msgspec.Struct, kw_only=True):
    ids: list[int]
    not_found: list[int] = []


class Count(msgspec.Struct, kw_only=True):
    count: int
    not_found: list[int] = []


class Fires(msgspec.Struct, kw_only=True):
    """The next fire times: epoch seconds, and ISO 8601 in the job's zone (``tz``)."""

    job: str
    tz: str
    fires: list[float]
    local: list[str]


class Removed(msgspec.Struct, kw_only=True):
    removed: str


class MessageSent(msgspec.Struct, kw_only=True):
    id: int


class Status(msgspec.Struct, kw_only=True):
    """The data of ``shepherd status --json``, from the daemon itself: times as epoch
    seconds (the CLI prints them as ISO text), the other sections (agents, unmatched,
    pauses, rates, spawn_failed, groups_open, cluster, spool) in ``extra``;
    ``breakers`` and ``actors`` are live, the rest as the CLI reads the database."""

    database: str
    daemon: dict[str, Any]
    dispatches: dict[str, int]
    dead_letters: int
    runs_running: int
    running: list[Run]
    jobs: int
    jobs_enabled: int
    instance: dict[str, Any] | None = None  # before approvals_pending: the CLI's order
    approvals_pending: int
    breakers: dict[str, Any] = {}
    actors: dict[str, Any] = {}
    extra: dict[str, Any] = {}


class Resumed(msgspec.Struct, kw_only=True):
    resumed: list[str]


class Stats(msgspec.Struct, kw_only=True):
    store: dict[str, Any]
    runtime: dict[str, Any]


# list answers, for the endpoint modules' ``response=`` declarations
Jobs = list[JobView]
Dispatches = list[Dispatch]
Approvals = list[Approval]
Agents = list[Agent]
Messages = list[Message]
Pauses = list[Pause]
