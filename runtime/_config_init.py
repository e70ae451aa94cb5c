"""The file ``shepherd config init`` writes, generated from the defaults of ``Config``
and of its section Structs, so that it names every key with its real default and cannot
drift from them (a test loads it back and compares with ``Config()``).

Top-level values first, then one ``[section]`` per Struct-valued field; a section whose
default is "none" (``[gateway]``) and the ``[[jobs]]`` list are written commented out,
with each key's default. Durations are written as ``30s`` / ``1h`` (``duration_literal``).
"""

from __future__ import annotations

from typing import Any

import msgspec
import tomli_w

from shepherd.runtime._cli_fmt import duration_keys, duration_literal
from shepherd.runtime.config import Config
from shepherd.store.models import to_builtins

__all__ = ["default_config_toml"]

# key (or "section.key") -> comment; a key without one is written without comment
_COMMENTS = {
    "database": "SQLite file (WAL). Relative paths are relative to this file.",
    "data_dir": 'Artifacts (offloaded output); "" means "<database>.d" beside the database.',
    "app": 'Python targets the daemon imports, "package.module:attr" ("": none).',
    "synchronous": "NORMAL survives any process crash; FULL also survives power loss.",
    "concurrency": "Runs at once, across all jobs.",
    "shutdown_grace": "On SIGTERM: how long running runs may finish before they are cancelled.",
    "busy_timeout": "How long a write waits for another writer's lock.",
    "start_check": "Integrity check at start, before anything writes: full (every page:\n"
    "~1.1-1.7 s per GB warm, ~15 s cold), bounded (the small tables whole, probes of\n"
    "the large ones: milliseconds; what every CLI command runs), off (logs a warning),\n"
    "or auto: full up to 256 MiB, bounded above. `shepherd doctor` always runs full.",
    "restart_intensity": "A supervisor gives up after this many restarts ...",
    "restart_period": "... within this many seconds, and the runtime exits non-zero.",
    "health_interval": "Heartbeat flush, stale-run check, gateway probes, status snapshot.",
    "breaker_fail_max": "Per-executor circuit breaker: opens after this many failures in a row ...",
    "breaker_reset": "... and lets one run through again after this long.",
    "log_level": "DEBUG, INFO, WARNING or ERROR.",
    "use_uvloop": "Run on uvloop when it is installed.",
    "pools": "Resource pools: name = how many runs of jobs in the pool at once\n"
    "(none by default; an undeclared pool is a mutex), e.g.  gpu = 1",
    "rates": "Rate limits (token buckets on admissions), none by default, e.g.\n"
    'executor.shell = { rate = "10/s", burst = 20 }, pool.db = { rate = "100/m" }',
    "jobs": "Jobs can be declared here too (or added with `shepherd jobs add`):",
    "gateway": "The agent gateway (agent / event executors, the gateway delivery sink).\n"
    "None by default: uncomment and set url to use one.",
    "delivery": "Announce delivery: aliases.<name> = {channel, target}, webhooks.<name> = URL.",
    "retention": "The pruner: how long history is kept. 0 turns a rule off.",
    "backup": 'Scheduled backups: every (0: off), keep, dir ("": <database>.backups).',
    "backup.every": 'How often the daemon backs the database up ("1h"; 0: never).',
    "backup.keep": "The newest backups kept in dir; older ones are removed.",
    "backup.dir": "Where backups go, relative to this file (each <stem>-<UTC time>.db).",
    "delivery.dead_letter_to": "Dead-letter alerts for jobs without options.dead_letter_alert:\n"
    '"@alias" or a target ("": none).',
    "cluster": "This runtime as a node of a database shared by several runtimes (PostgreSQL;\n"
    "a SQLite file has one node). Pool limits and rates hold cluster-wide (shares per node).",
    "cluster.node": 'Node name ("": host:pid:<8 hex>, unique per process). A stable name\n'
    "lets a restarted runtime recover its own runs at once instead of after a rescue.",
    "cluster.lease": "Heartbeat lease, renewed every lease/3; a node silent this long is\n"
    "declared dead and its running runs are rescued by another (1s..300s).",
    "cluster.concurrency": "Cluster-wide cap on running runs, split between the live nodes\n"
    "(0: none; each node's own concurrency caps it anyway).",
    "retention.interval": "How often a retention pass runs (the first a minute after start).",
    "retention.batch_size": "Rows deleted per write op; each batch is its own commit.",
    "retention.runs_per_job": "Finished runs kept per job, newest first (0: no count limit).",
    "retention.runs_max_age": "Finished runs older than this go (0: no age limit).",
    "retention.dispatches_max_age": "Done / cancelled dispatches (a keyed one: not before\n"
    "its key).",
    "retention.dead_max_age": "Dead letters and their runs (0: kept until purged).",
    "retention.messages_max_age": "Read / expired / failed inbox messages.",
    "retention.messages_delivered_max_age": "Delivered, unread inbox messages.",
    "retention.deliveries_max_age": "Failed deliveries.",
    "retention.deliveries_sent_max_age": "Sent deliveries.",
    "retention.approvals_max_age": "Approved / rejected / timed-out approvals (never a pending\n"
    "one, nor one whose dispatch still waits).",
    "retention.groups_max_age": "Ended (completed / failed) task groups with their members\n"
    "(never an open one).",
}
_EXAMPLES = {"gateway.url": "http://127.0.0.1:18789"}  # required keys, no default
_JOB_EXAMPLE = (
    "[[jobs]]",
    'name = "nightly-report"',
    'executor = "shell"',
    'target = "echo report"',
    'cron = "0 3 * * *"',
    'tz = "Europe/Berlin"',
    'timeout = "10m"',
)


def _struct_fields(t: type[msgspec.Struct]) -> list[msgspec.inspect.Field]:
    info = msgspec.inspect.type_info(t)
    assert isinstance(info, msgspec.inspect.StructType)
    return list(info.fields)


def _struct_of(t: msgspec.inspect.Type) -> type[msgspec.Struct] | None:
    kinds = t.types if isinstance(t, msgspec.inspect.UnionType) else (t,)
    for k in kinds:
        if isinstance(k, msgspec.inspect.StructType):
            return k.cls
    return None


def _comment(key: str) -> list[str]:
    text = _COMMENTS.get(key)
    return [f"# {line}" for line in text.split("\n")] if text else []


def _line(key: str, value: Any, durations: frozenset[str]) -> str:
    if key in durations and isinstance(value, int | float) and not isinstance(value, bool):
        value = duration_literal(value)
    if isinstance(value, dict) and not value:
        return f"{key} = {{}}"
    return tomli_w.dumps({key: value}).strip()


def _section(name: str, struct: type[msgspec.Struct], values: dict[str, Any] | None) -> list[str]:
    """``[name]`` with every key of ``struct``; commented out when ``values`` is None."""
    durations = duration_keys(struct)
    body = [f"[{name}]"]
    for f in _struct_fields(struct):
        path = f"{name}.{f.name}"
        if values is not None:
            value = values.get(f.name)
        elif f.default is not msgspec.NODEFAULT:
            value = to_builtins(f.default)
        elif f.default_factory is not msgspec.NODEFAULT:
            value = to_builtins(f.default_factory())
        else:
            value = _EXAMPLES.get(path, "")
        body += _comment(path)
        body.append(_line(f.name, value, durations) if value is not None else f"# {f.name} =")
    if values is None:
        body = [line if line.startswith("#") else f"# {line}" for line in body]
    return body


def default_config_toml(database: str = "shepherd.db") -> str:
    """The commented default config written by ``config init``."""
    defaults = msgspec.structs.replace(Config(), database=database)
    data = to_builtins(defaults)
    durations = duration_keys(Config)
    top: list[str] = []
    tables: list[str] = []
    for f in _struct_fields(Config):
        value = data.get(f.name)
        struct = _struct_of(f.type)
        if f.name == "jobs":
            tables += ["", *_comment("jobs"), *(f"# {line}" for line in _JOB_EXAMPLE)]
        elif struct is not None:
            tables += ["", *_comment(f.name), *_section(f.name, struct, value)]
        elif isinstance(value, dict):
            tables += ["", *_comment(f.name), f"[{f.name}]"]
            tables += [_line(k, v, frozenset()) for k, v in value.items()]
        else:
            top += _comment(f.name)
            top.append(_line(f.name, value, durations) if value is not None else f"# {f.name} =")
    head = [
        "# shepherd configuration. Every key is optional; these are the defaults.",
        "# Environment variables SHEPHERD_<KEY> override top-level keys.",
        "",
    ]
    return "\n".join([*head, *top, *tables, ""])
