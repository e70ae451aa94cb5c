"""CLI commands on job definitions (``jobs add | list | show | rm``) and ``config init``.

A job comes from flags or from a file (one job table, or a list under ``[[jobs]]`` /
``"jobs"``). Every job is decoded and validated (``runtime.jobs.validate_job``) before
the store is opened, so a bad spec stores nothing; an error names the flag, or the
file, the job and its field.

The module is longer than most because the job-file loader and its per-field errors
sit beside the four commands that share them.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from shepherd.actors.ingest import send_wake
from shepherd.runtime._chains import check_graph, config_error, parents_first
from shepherd.runtime._cli_enqueue import as_flag
from shepherd.runtime._cli_fmt import (
    CliError,
    emit_json,
    human,
    human_duration,
    plain,
    print_fields,
    table,
    when,
)
from shepherd.runtime._cli_jobflags import FLAGS, flag_data
from shepherd.runtime._cli_progress import Progress, progress
from shepherd.runtime._cli_store import (
    NotUnicode,
    builtin_executors,
    loads_json,
    open_store,
    wall,
)
from shepherd.runtime._config_init import default_config_toml
from shepherd.runtime._config_jobs import check_config_jobs  # re-exported
from shepherd.runtime.config import Config, read_text
from shepherd.runtime.jobs import job_from_data, save_op, validate_job
from shepherd.store.bounds import TOO_DEEP
from shepherd.store.errors import ConfigError, NotFound, StoreError
from shepherd.store.models import JobRow, JobSpec
from shepherd.store.ops import DeleteJob

__all__ = [
    "check_config_jobs",
    "cmd_config_init",
    "cmd_jobs_add",
    "cmd_jobs_list",
    "cmd_jobs_rm",
    "cmd_jobs_show",
    "flag_data",
    "load_job_file",
    "save_jobs",
    "spec_from_data",
]

# -- jobs add ----------------------------------------------------------------------------


def cmd_jobs_add(args: argparse.Namespace, cfg: Config) -> int:
    if (args.name is None) == (args.file is None):
        raise CliError("give a job NAME with flags, or --file FILE (not both)", code=2)
    now = wall()
    if args.file:
        # a bar (on a terminal) over checking each job, then storing them all at once
        with progress(0, f"adding jobs from {args.file}") as bar:
            specs = load_job_file(args.file, now, cfg, bar=bar)
            index = {s.name: i for i, s in enumerate(specs)}
            path = args.file
            rows = anyio.run(
                save_jobs, cfg, specs, now, lambda s: f"{path}: jobs[{index[s.name]}] ({s.name})"
            )
            bar.advance(len(specs))
    else:
        specs = [spec_from_data(flag_data(args, {"name": args.name}), now, cfg)]
        rows = anyio.run(save_jobs, cfg, specs, now, lambda s: FLAGS["parent"])
    send_wake(cfg.database, "j")
    if args.json:
        emit_json([_job_summary(r) for r in rows])
        return 0
    for row in rows:
        nxt = when(row.next_run_at)
        print(f"saved job {row.name!r} (id {row.id})" + (f", next run {nxt}" if nxt else ""))
    if not cfg.app and any(r.spec.executor == "python" for r in rows):
        print(
            "note: a python job runs in a process that has its target: the daemon "
            "started with --app MODULE:ATTR (or app in the config), or an embedded Runtime",
            file=sys.stderr,
        )
    return 0


def spec_from_data(
    data: dict[str, Any], now: float, cfg: Config, previous: JobSpec | None = None
) -> JobSpec:
    """Decode and validate; an error names the flag that set the bad field (a field
    inside ``--options`` / ``--payload`` as ``--options: foo``)."""
    try:
        spec = job_from_data(data)
        validate_job(spec, builtin_executors(cfg), now, previous=previous)
    except ConfigError as exc:
        flagged = as_flag(exc, FLAGS)  # capabilities[0] is --capabilities: item 1
        if flagged is not None:
            raise flagged from None
        field = exc.field or ""
        head, _, rest = field.partition(".")
        flag = f"{FLAGS[head]}: {rest}" if head in ("options", "payload") and rest else field
        text = str(exc).removeprefix(f"{exc.field}: ") if exc.field else str(exc)
        raise ConfigError(text, field=flag or None) from None
    return spec


def load_job_file(
    path: str, now: float, cfg: Config, *, bar: Progress | None = None
) -> list[JobSpec]:
    """Decode and validate every job in a TOML or JSON file; nothing is stored here.
    ``bar`` (its total set here: two steps a job) advances once per job checked."""
    p = Path(path)
    text = read_text(p, field=path)
    is_json = p.suffix.lower() == ".json"  # any other name is read as TOML
    try:
        data: Any = loads_json(text) if is_json else tomllib.loads(text)
    except NotUnicode as exc:
        raise ConfigError(str(exc), field=path) from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:  # JSONDecodeError is a ValueError
        kind = "JSON" if is_json else "TOML (a file not named *.json is read as TOML)"
        raise ConfigError(f"not valid {kind}: {exc}", field=path) from None
    except RecursionError:
        raise ConfigError(TOO_DEEP, field=path) from None
    if isinstance(data, dict) and "jobs" in data and "name" not in data:
        extra = sorted(set(data) - {"jobs"})
        if extra:
            raise ConfigError(
                f"unknown top-level key(s) {extra}; expected only [[jobs]]", field=path
            )
        items = data["jobs"]
    elif isinstance(data, dict):
        items = [data]
    else:
        items = data
    if not isinstance(items, list) or not items:
        raise ConfigError("expected a job table or a non-empty list of jobs", field=path)
    specs: list[JobSpec] = []
    executors = builtin_executors(cfg)
    if bar is not None:
        bar.total = 2 * len(items)
    for i, item in enumerate(items):
        where = f"{path}: jobs[{i}]"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            where += f" ({item['name']})"
        try:
            if not isinstance(item, dict):
                raise ConfigError(f"expected a table, got {type(item).__name__}")
            spec = job_from_data(item)
            validate_job(spec, executors, now)
        except ConfigError as exc:
            raise ConfigError(str(exc), field=where) from None
        specs.append(spec)
        if bar is not None:
            bar.advance()
    counts = Counter(s.name for s in specs)
    dupes = sorted(n for n, k in counts.items() if k > 1)
    if dupes:
        raise ConfigError(f"job name(s) given twice: {', '.join(dupes)}", field=path)
    return specs


async def save_jobs(
    cfg: Config,
    specs: list[JobSpec],
    now: float,
    field: Callable[[JobSpec], str] = lambda s: "parent",
) -> list[JobRow]:
    """Store validated specs in one transaction (a job of the same name is replaced),
    parents first; a chain's graph is checked against the stored jobs before anything
    is written (an error names ``field(spec)``)."""
    specs = parents_first(specs)
    async with open_store(cfg) as store:
        check_graph(specs, [r.spec for r in await store.jobs()], field=field)
        results = await store.apply([save_op(s, now) for s in specs])
        for result in results:
            if isinstance(result, StoreError):
                raise config_error(result)
            if isinstance(result, Exception):
                raise result
        if len(specs) == 1:
            row = await store.job(specs[0].name)
            return [row] if row is not None else []
        stored = {r.name: r for r in await store.jobs()}
    return [stored[s.name] for s in specs if s.name in stored]


def _schedule(spec: JobSpec) -> str | None:
    if spec.cron is not None:
        return f"cron {spec.cron}" + (f" ({spec.tz})" if spec.tz != "UTC" else "")
    if spec.at is not None:
        return f"at {spec.at}"
    if spec.every is not None:
        return f"every {human_duration(spec.every)}"
    return None


def _job_summary(row: JobRow) -> dict[str, Any]:
    s = row.spec
    return {
        "id": row.id,
        "name": s.name,
        "executor": s.executor,
        "target": s.target,
        "schedule": _schedule(s),
        "enabled": s.enabled,
        "priority": s.priority,
        "next_run_at": row.next_run_at,
        "last_status": row.last_status,
    }


# -- jobs list / show / rm ----------------------------------------------------------------


def cmd_jobs_list(args: argparse.Namespace, cfg: Config) -> int:
    rows = anyio.run(_list, cfg)
    if args.json:
        emit_json([_job_summary(r) for r in rows])
        return 0
    table(
        [human(_job_summary(r)) for r in rows],
        (
            "id",
            "name",
            "executor",
            "schedule",
            "enabled",
            "priority",
            "next_run_at",
            "last_status",
            "target",
        ),
    )
    return 0


async def _list(cfg: Config) -> list[JobRow]:
    async with open_store(cfg, create=False) as store:
        return await store.jobs()


async def _get(cfg: Config, name: str) -> JobRow:
    async with open_store(cfg, create=False) as store:
        row = await store.job(name)
    if row is None:
        raise NotFound(f"no job named {name!r}")
    return row


def cmd_jobs_show(args: argparse.Namespace, cfg: Config) -> int:
    row = anyio.run(_get, cfg, args.name)
    if args.json:
        data = plain(row)
        data["spec"] = plain(row.spec)
        emit_json(data)
        return 0
    data = human(row)
    spec = data.pop("spec")
    print_fields({**spec, **{k: v for k, v in data.items() if k != "spec"}})
    return 0


def cmd_jobs_rm(args: argparse.Namespace, cfg: Config) -> int:
    anyio.run(_remove, cfg, args.name)
    send_wake(cfg.database, "jc")
    if args.json:
        emit_json({"removed": args.name})
    else:
        print(f"removed job {args.name!r} (its queued dispatches are cancelled)")
    return 0


async def _remove(cfg: Config, name: str) -> None:
    async with open_store(cfg, create=False) as store:
        row = await store.job(name)
        if row is None:
            raise NotFound(f"no job named {name!r}")
        try:
            await store.apply_one(DeleteJob(row.id, wall(), refuse_parent=True))
        except StoreError as exc:
            raise config_error(exc) from None


# -- config init --------------------------------------------------------------------------


def cmd_config_init(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        raise CliError(f"{path} exists; use --force to overwrite it")
    text = default_config_toml(args.database or "shepherd.db")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    if args.json:
        emit_json({"path": str(path)})
    else:
        print(f"wrote {path}")
    return 0
