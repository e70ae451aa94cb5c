"""``shepherd jobs export [NAME...] [--format toml|json] [-o FILE]``: stored jobs as the
file ``jobs add --file`` takes, so that export → import is a round trip (the same specs,
field by field; exporting the imported jobs gives the same text).

Each job is written with the fields that differ from a ``JobSpec``'s defaults (plus
``name``, ``executor``, ``target``), in the Struct's field order, and so are its
``retry`` and ``approval`` tables (``approval.required`` always: the table is the gate);
an unset optional field (``None``) is its default, so it is left out, at any depth;
durations as ``5m`` / ``30s`` when that decodes to exactly the stored value. TOML has no
null, so a ``null`` inside a payload or options is refused for TOML naming the job and
the field (``payload.a[0]``; ``--format json`` holds it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import msgspec
import tomli_w

from shepherd.runtime._cli_fmt import duration_keys, duration_literal, emit_json
from shepherd.runtime._cli_store import open_store
from shepherd.runtime.config import Config
from shepherd.store.errors import ConfigError, NotFound
from shepherd.store.models import ApprovalPolicy, JobSpec, RetryPolicy, to_builtins

__all__ = ["cmd_jobs_export", "export_data", "export_text"]

_KEEP = ("name", "executor", "target")
_DURATIONS = duration_keys(JobSpec, RetryPolicy, ApprovalPolicy)
# the Struct fields of a JobSpec, each leaned against its own defaults: (them, kept keys)
_TABLES: dict[str, tuple[msgspec.Struct, tuple[str, ...]]] = {
    "retry": (RetryPolicy(), ()),
    "approval": (ApprovalPolicy(), ("required",)),
}


def _lean(
    data: dict[str, Any], default: dict[str, Any], keep: tuple[str, ...] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        # None is an unset optional field: its default (every optional field's is None)
        if key not in keep and (value is None or value == default.get(key)):
            continue
        if key in _TABLES and isinstance(value, dict):
            table, kept = _TABLES[key]
            value = _lean(value, to_builtins(table), kept)
            if not value:  # retry as the default's: left out (approval keeps required)
                continue
        elif key in _DURATIONS and isinstance(value, int | float):
            value = duration_literal(value)
        out[key] = value
    return out


def export_data(spec: JobSpec) -> dict[str, Any]:
    """The builtins of ``spec`` that a job file needs to decode back to it."""
    default = to_builtins(JobSpec(name=spec.name))
    return _lean(to_builtins(spec), default, _KEEP)


def _null_at(value: Any, where: str) -> str | None:
    """The path of the first null in ``value`` (``payload.a[0]``), or None."""
    stack = [(value, where)]
    while stack:
        item, path = stack.pop(0)
        if item is None:
            return path
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
    return None


def export_text(specs: list[JobSpec], fmt: str) -> str:
    jobs = [export_data(s) for s in specs]
    if fmt == "json":
        return msgspec.json.format(msgspec.json.encode({"jobs": jobs}), indent=2).decode() + "\n"
    for job in jobs:
        null = _null_at(job, "")
        if null is not None:
            raise ConfigError(
                f"{null} is null, which TOML cannot write; use --format json",
                field=f"job {job['name']!r}",
            )
    return tomli_w.dumps({"jobs": jobs})


async def _specs(cfg: Config, names: list[str]) -> list[JobSpec]:
    async with open_store(cfg, create=False) as store:
        if not names:
            return sorted((r.spec for r in await store.jobs()), key=lambda s: s.name)
        out: list[JobSpec] = []
        missing: list[str] = []
        for name in names:
            row = await store.job(name)
            if row is None:
                missing.append(name)
            else:
                out.append(row.spec)
    if missing:
        raise NotFound(f"no job named {', '.join(map(repr, missing))}")
    return out


def cmd_jobs_export(args: argparse.Namespace, cfg: Config) -> int:
    to_json = args.output and Path(args.output).suffix.lower() == ".json"
    fmt = args.format or ("json" if to_json or (args.json and not args.output) else "toml")
    specs = anyio.run(_specs, cfg, list(dict.fromkeys(args.names)))
    text = export_text(specs, fmt)
    if not args.output or args.output == "-":
        sys.stdout.write(text)
        return 0
    _write(Path(args.output), text)
    if args.json:
        emit_json({"path": args.output, "jobs": [s.name for s in specs], "format": fmt})
    else:
        print(f"wrote {len(specs)} job(s) to {args.output}")
    return 0


def _write(path: Path, text: str) -> None:
    """Atomically: a reader never sees half a file, a failure leaves the old one."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write it ({exc.strerror})", field=str(path)) from None
