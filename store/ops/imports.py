"""The write op of an import from another scheduler (``shepherd import ocs``): every
job, agent, message and queued dispatch of one import in ONE transaction, all or
nothing, keyed by the source's ids in the ``import_map`` table so that importing the
same source again creates nothing twice.

Per item the transaction decides (and a dry run only reports):

- ``created``: the source id is not mapped yet (or its job was removed since);
- ``updated``: mapped, and the source row changed since (its ``digest``);
- ``unchanged``: mapped with the same digest: nothing is written.

Runs (``--history N``) are written once, as read-only records of their job.

A new job whose wanted name is taken by a job this source did not create gets the
name ``<name>-<first 8 of the source id>``; its children's ``parent`` follow it.
"""

from __future__ import annotations

import msgspec

from shepherd.store.models import AgentSpec
from shepherd.store.ops.jobs import SkippedSlot
from shepherd.store.ops.messages import NewMessage

__all__ = [
    "IMPORT_OP_TYPES",
    "ImportAgent",
    "ImportBatch",
    "ImportDispatch",
    "ImportItem",
    "ImportJob",
    "ImportMessage",
    "ImportOp",
    "ImportRun",
    "Imported",
]


class ImportJob(msgspec.Struct, frozen=True, kw_only=True):
    """One job: ``spec`` is the JSON of a validated ``JobSpec`` named ``name`` whose
    ``parent`` (if any) is the wanted name of the job imported as ``parent_source``."""

    source_id: str
    digest: str
    name: str
    executor: str
    enabled: bool
    spec: bytes
    next_run_at: float | None
    parent_source: str | None = None
    skipped: list[SkippedSlot] = msgspec.field(default_factory=list)
    last_run_at: float | None = None
    last_status: str | None = None
    consecutive_errors: int = 0


class ImportDispatch(msgspec.Struct, frozen=True, kw_only=True):
    """A queued dispatch of the job imported as ``job_source``; ``gate``: its job's
    approval gate may hold it (False: it was approved already)."""

    source_id: str
    digest: str
    job_source: str
    kind: str
    priority: int
    not_before: float
    max_attempts: int
    attempt: int = 0
    gate: bool = True


class ImportMessage(msgspec.Struct, frozen=True, kw_only=True):
    source_id: str
    digest: str
    message: NewMessage
    reply_source: str | None = None  # the source id of the message it replies to
    created_at: float | None = None  # kept: the inbox orders by it


class ImportAgent(msgspec.Struct, frozen=True, kw_only=True):
    source_id: str
    digest: str
    spec: AgentSpec


class ImportRun(msgspec.Struct, frozen=True, kw_only=True):
    """A finished run of the job imported as ``job_source``, kept as a read-only record
    (no dispatch; ``details`` names its source)."""

    source_id: str
    job_source: str
    status: str  # an Outcome
    started_at: float
    finished_at: float | None = None
    attempt: int = 1
    error: str | None = None
    result: bytes | None = None  # JSON
    exit_code: int | None = None
    timed_out: bool = False
    stdout: str | None = None
    stderr: str | None = None
    details: bytes | None = None  # JSON


class ImportBatch(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Jobs are written in the order given (parents first). ``dry_run``: decide every
    item's status and name, write nothing."""

    source: str  # the id namespace ("ocs")
    now: float
    origin: str
    jobs: list[ImportJob] = msgspec.field(default_factory=list)
    dispatches: list[ImportDispatch] = msgspec.field(default_factory=list)
    messages: list[ImportMessage] = msgspec.field(default_factory=list)
    agents: list[ImportAgent] = msgspec.field(default_factory=list)
    runs: list[ImportRun] = msgspec.field(default_factory=list)
    dry_run: bool = False


class ImportItem(msgspec.Struct, frozen=True, kw_only=True):
    kind: str  # job | dispatch | message | agent | run
    source_id: str
    status: str  # created | updated | unchanged
    target: str  # the job's name, the agent's id, the dispatch's / message's id ("" dry)
    next_run_at: float | None = None  # jobs: the next fire time as stored


class Imported(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ImportItem]
    gated: int = 0  # dispatches held by an approval gate (the daemon sends the requests)


ImportOp = ImportBatch
IMPORT_OP_TYPES: tuple[type, ...] = (ImportBatch,)
