"""``python -m bench [--quick] [--only NAME ...] [--sizes N ...] [--json PATH]``.

Prints a markdown table on stdout (progress goes to stderr) and optionally writes the
same report as JSON. Exits 1 if any scenario failed; a skipped scenario is not a
failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from bench.context import DEFAULT_SIZES, QUICK_SIZES, BenchContext
from bench.report import render_json, render_markdown
from bench.scenarios import REGISTRY, USE_UVLOOP, resolve, run

_RESULTS = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    p.add_argument("--quick", action="store_true", help=f"small sizes {list(QUICK_SIZES)}")
    p.add_argument("--only", nargs="+", metavar="NAME", help="these scenarios (+ their needs)")
    p.add_argument("--sizes", nargs="+", type=int, metavar="N", help="job counts to run at")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the report as JSON")
    p.add_argument("--workdir", type=Path, help="scratch dir on a real disk (default: temp)")
    p.add_argument("--keep-workdir", action="store_true", help="keep the database files")
    p.add_argument("--list", action="store_true", help="list scenarios and exit")
    return p


def _fs_type(path: Path) -> str:
    best = max(
        (p for p in psutil.disk_partitions(all=True) if str(path).startswith(p.mountpoint)),
        key=lambda p: len(p.mountpoint),
        default=None,
    )
    return best.fstype if best else "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for s in REGISTRY.values():
            needs = f" (needs {', '.join(s.needs)})" if s.needs else ""
            print(f"{s.name}: {s.description}{needs}")
        return 0
    try:
        scenarios = resolve(args.only)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    sizes = tuple(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))
    if args.workdir:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        _RESULTS.mkdir(exist_ok=True)  # in the repo, on a real disk; /tmp may be tmpfs
        workdir = Path(tempfile.mkdtemp(prefix="work-", dir=_RESULTS))
    ctx = BenchContext(sizes=sizes, quick=args.quick, workdir=str(workdir))
    meta: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": f"{platform.platform()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "aiosqlite": _version("aiosqlite"),
        "huey": _version("huey"),
        "event_loop": "uvloop" if USE_UVLOOP else "asyncio",
        "sizes": list(sizes),
        "quick": args.quick,
        "workdir_fs": _fs_type(workdir),
    }
    try:
        report = run(scenarios, ctx, meta, lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        if not args.keep_workdir and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.write(render_markdown(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(render_json(report))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
