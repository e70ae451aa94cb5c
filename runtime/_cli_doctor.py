"""``shepherd doctor``: is this database file healthy, and who serves it.

Read-only (a read-only SQLite connection: it never checkpoints the WAL into the file).
It reports the file and WAL sizes, the schema version of the file and of this runtime,
a full integrity check (per table when it fails), who holds
the lock file, and whether a daemon serves the file (the lock, its wake socket and the
heartbeat of its ``instances`` row). Exit 0 when healthy, 3 when the file is missing,
foreign, damaged or of a newer schema. A PostgreSQL database is refused (exit 2): the
server checks its own pages; ``status`` and ``nodes`` report on a cluster.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from shepherd.actors.ingest import wake_path
from shepherd.actors.socket_path import lock_path
from shepherd.runtime._cli_fmt import CliError, emit_json, human_duration, print_fields, when
from shepherd.runtime._cli_store import daemon_pid, wall
from shepherd.runtime.config import Config
from shepherd.store.errors import ConfigError
from shepherd.store.factory import diagnose, is_postgres

__all__ = ["cmd_doctor"]

_STORE_ERROR = 3


def cmd_doctor(args: argparse.Namespace, cfg: Config) -> int:
    if is_postgres(cfg.database):
        raise ConfigError(
            "shepherd doctor checks a SQLite file; the database is a PostgreSQL URL (the"
            " server checks its own pages): see shepherd status and shepherd nodes",
            field="database",
        )
    report = diagnose(cfg.database)
    instance = report.pop("instance", None)
    report["lock"] = _lock(cfg.database)
    report["daemon"] = _daemon(cfg, instance)
    if args.json:
        emit_json(report)
    else:
        print_fields(_lines(report))
    if not report["healthy"]:
        raise CliError(f"{cfg.database}: {report['problem']}", code=_STORE_ERROR)
    return 0


def _lock(database: str) -> dict[str, Any]:
    path = lock_path(database)
    holder = daemon_pid(database)  # also a runtime under another name (a hard link)
    try:
        with open(path) as f:
            words = f.read().split()
    except OSError:
        return {"file": path, "exists": False, "pid": holder, "held": holder is not None}
    recorded = int(words[1]) if len(words) >= 2 and words[1].isdigit() else None
    pid = recorded if holder is None else holder
    return {"file": path, "exists": True, "pid": pid, "held": holder is not None}


def _daemon(cfg: Config, instance: dict[str, Any] | None) -> dict[str, Any]:
    pid = daemon_pid(cfg.database)
    socket = wake_path(cfg.database)
    out: dict[str, Any] = {
        "serving": pid is not None,
        "pid": pid,
        "wake_socket": socket,
        "wake_socket_exists": os.path.exists(socket),
        "instance": None,
    }
    if instance is not None:
        out["instance"] = {
            "instance": instance["instance"],
            "pid": instance["pid"],
            "started_at": instance["started_at"],
            "heartbeat_at": instance["updated_at"],
            "heartbeat_age": round(wall() - float(instance["updated_at"]), 3),
            "stopped_at": instance["stopped_at"],
        }
    return out


def _lines(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"database": r["database"]}
    if not r["exists"]:
        return {**out, "health": f"PROBLEM: {r['problem']}"}
    if "pages" in r:
        out["file"] = (
            f"{r['file_bytes']:,} bytes ({r['pages']:,} pages of {r['page_size']},"
            f" {r['free_pages']:,} free)"
        )
    out["wal"] = f"{r['wal_bytes']:,} bytes"
    if r.get("schema_version") is not None:
        out["schema"] = (
            f"version {r['schema_version']} (this runtime: {r['runtime_schema_version']})"
        )
    check = r.get("integrity")
    if check is not None:
        took = f"full check, {human_duration(check['seconds'])}"
        out["integrity"] = (
            f"ok ({took})"
            if check["ok"]
            else f"DAMAGED in {', '.join(check['damaged']) or '?'} ({took}): {check['problems'][0]}"
        )
    lock = r["lock"]
    if lock["held"]:
        out["lock"] = f"held by pid {lock['pid']} ({lock['file']})"
    elif lock["exists"]:
        out["lock"] = f"free (last holder pid {lock['pid']}, gone)"
    else:
        out["lock"] = "free (no lock file)"
    d = r["daemon"]
    inst = d["instance"]
    beat = f", heartbeat {human_duration(round(inst['heartbeat_age'], 1))} ago" if inst else ""
    if d["serving"]:
        sock = "wake socket bound" if d["wake_socket_exists"] else "NO wake socket"
        out["daemon"] = f"serving (pid {d['pid']}), {sock}{beat}"
    elif inst is not None and inst["stopped_at"] is not None:
        out["daemon"] = f"not running (last: pid {inst['pid']}, stopped {when(inst['stopped_at'])})"
    elif inst is not None:
        out["daemon"] = f"not running (last: pid {inst['pid']}, did not stop cleanly{beat})"
    else:  # the instances table is read only from a healthy file
        out["daemon"] = "not running" + (" (never served)" if r["healthy"] else "")
    out["health"] = "healthy" if r["healthy"] else f"PROBLEM: {r['problem']}"
    return out
