"""``shepherd spool ...``: the spool directory from the command line, as OpenClaw's CLI.

    spool enqueue (--message TEXT | --file F) [--agent A] [--session K] [--model M]
                  [--thinking T] [--priority P] [--max-retries N] [--expires-in DUR]
                  [--deliver] [--channel C] [--to T]            writes one event file
    spool status                           directories, counts, the first pending events
    spool rejected list | retry NAME... | purge NAME... / --all

These commands touch only the directory (``[spool] dir`` of the config, or ``--dir``),
never the database: the daemon or an embedded runtime watching the directory turns a
file into a dispatch. So they work with or without a daemon, and a file written while
none runs is taken when one starts.

``enqueue`` writes an OpenClaw spool event v1 (built in ``_cli_spool_event``), atomically
(``formats.write_event``: a ``<id>.json.tmp.<hex>`` file, fsynced, renamed over
``<id>.json``), so a watcher never sees half a file. Bad input exits 2 naming the flag,
nothing written; a directory that cannot be read or written exits 3 naming it.

``rejected retry`` moves a rejected file back into the pending directory (its
``.error.json`` removed) without overwriting a pending file of that name; ``purge``
deletes rejected files and their error files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shepherd.actors.spool import formats
from shepherd.runtime._cli_fmt import CliError, emit_json, iso, print_fields, table
from shepherd.runtime._cli_spool_event import event_from_args, expires_in, retries
from shepherd.runtime._cli_store import loads_json, positive_int
from shepherd.runtime.config import Config

__all__ = ["add_spool_commands"]

_SHOWN = 10  # pending events listed by `status` in text mode (as OpenClaw's)


def add_spool_commands(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """The ``spool`` group in ``build_parser`` (``cmd`` adds one command)."""
    spool = sub.add_parser("spool", help="the spool directory").add_subparsers(
        dest="spool_command", required=True, metavar="ACTION"
    )
    p = cmd(spool, "enqueue", cmd_enqueue, "write one agent-turn event file; prints its id")
    _dir_flag(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--message", "-m", metavar="TEXT", help="the agent's message")
    src.add_argument(
        "--file", "-f", metavar="FILE", help="an event, request or payload (- = stdin)"
    )
    p.add_argument("--agent", metavar="ID", help="payload.agentId")
    p.add_argument("--session", metavar="KEY", help="payload.sessionKey (default spool:<id>)")
    p.add_argument("--model", metavar="MODEL")
    p.add_argument("--thinking", metavar="LEVEL")
    p.add_argument("--priority", choices=formats.OPENCLAW_PRIORITIES, help="default normal")
    p.add_argument("--max-retries", type=retries, metavar="N", help="retries after the first")
    p.add_argument("--expires-in", type=expires_in, metavar="DUR", help="e.g. 30m, 2h, 1d")
    p.add_argument("--deliver", action="store_true", help="deliver the reply (delivery.enabled)")
    p.add_argument("--channel", metavar="CHANNEL", help="delivery.channel")
    p.add_argument("--to", metavar="TARGET", help="delivery.to")
    p = cmd(spool, "status", cmd_status, "directories, pending and rejected counts")
    _dir_flag(p)
    p.add_argument(
        "--limit", type=positive_int, default=_SHOWN, metavar="N", help="pending events shown"
    )
    rejected = spool.add_parser("rejected", help="rejected files").add_subparsers(
        dest="rejected_command", required=True, metavar="ACTION"
    )
    p = cmd(rejected, "list", cmd_rejected_list, "rejected files with their errors")
    _dir_flag(p)
    p = cmd(rejected, "retry", cmd_rejected_retry, "move rejected files back to be ingested")
    _dir_flag(p)
    p.add_argument("names", nargs="+", metavar="NAME")
    p = cmd(rejected, "purge", cmd_rejected_purge, "delete rejected files and their errors")
    _dir_flag(p)
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--all", action="store_true", help="every rejected file")


def _dir_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", metavar="DIR", help="the spool directory (default: [spool] dir)")


def _dirs(args: argparse.Namespace, cfg: Config) -> tuple[Path, Path]:
    """(pending directory, rejected directory)."""
    if args.dir:
        base = Path(args.dir)
    elif cfg.spool is not None:
        base = Path(cfg.spool.dir)
    else:
        raise CliError("no spool directory: set [spool] dir in the config or pass --dir", 2)
    return base, base / formats.REJECTED_DIR


def _dir_error(what: Path, exc: OSError, *, writing: bool = False) -> CliError:
    why = exc.strerror or str(exc)
    if writing and what.is_dir():  # the error may name the file (/proc: "No such file")
        why = f"it exists but a file cannot be written in it ({why})"
    return CliError(f"spool directory {str(what)!r}: {why}", 3)


# -- enqueue -------------------------------------------------------------------------


def cmd_enqueue(args: argparse.Namespace, cfg: Config) -> int:
    pending, _ = _dirs(args, cfg)
    now = time.time()
    event = event_from_args(args, now)
    try:
        pending.mkdir(parents=True, exist_ok=True)
        path = formats.write_event(pending, event)
    except OSError as exc:
        raise _dir_error(pending, exc, writing=True) from None
    if args.json:
        emit_json({"id": event["id"], "path": str(path), "event": event})
    else:
        print(event["id"])
    return 0


# -- status ----------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, cfg: Config) -> int:
    pending, rejected = _dirs(args, cfg)
    names = _listing(pending, formats.is_pending_name)
    events = sorted((_summary(pending / n) for n in names), key=_order)
    bad = _listing(rejected, formats.is_rejected_name) if rejected.is_dir() else []
    data: dict[str, Any] = {
        "dir": str(pending),
        "rejected_dir": str(rejected),
        "pending": len(names),
        "rejected": len(bad),
        "events": events if args.json else events[: args.limit],
    }
    if args.json:
        emit_json(data)
        return 0
    print_fields({k: data[k] for k in ("dir", "rejected_dir", "pending", "rejected")})
    for e in data["events"]:
        tag = f" [{e['priority']}]" if e["priority"] != "normal" else ""
        retry = f" (retry {e['retry_count']})" if e["retry_count"] else ""
        print(f"  {e['name']}{tag}{retry}{'  ' + e['problem'] if e['problem'] else ''}")
    if len(events) > len(data["events"]):
        print(f"  ... {len(events) - len(data['events'])} more")
    return 0


def _listing(where: Path, keep: Callable[[str], bool]) -> list[str]:
    try:
        return sorted(n for n in os.listdir(where) if keep(n))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _dir_error(where, exc) from None


def _summary(path: Path) -> dict[str, Any]:
    """One pending file: its name, priority, retry count, age (and why it is invalid)."""
    out: dict[str, Any] = {"name": path.name, "priority": "normal", "retry_count": 0}
    out.update(created_at=None, problem=None)
    try:
        data = loads_json(path.read_text())
    except (OSError, ValueError) as exc:
        out["problem"] = f"unreadable: {exc}"
        return out
    if isinstance(data, dict):
        info = formats.describe(data)
        out.update(priority=info.priority, retry_count=info.retry_count)
        out["created_at"] = iso(info.created_at) if info.created_at else None
    out["problem"] = formats.problem(data, path.name)
    return out


def _order(e: dict[str, Any]) -> tuple[int, str, str]:
    return (formats.priority_rank(e["priority"]), e["created_at"] or "", e["name"])


# -- rejected --------------------------------------------------------------------------


def cmd_rejected_list(args: argparse.Namespace, cfg: Config) -> int:
    _, rejected = _dirs(args, cfg)
    rows = [_rejected_row(rejected, n) for n in _listing(rejected, formats.is_rejected_name)]
    if args.json:
        emit_json({"rejected_dir": str(rejected), "rejected": rows})
    else:
        table(rows, ("name", "rejected_at", "error"), max_width=80)
    return 0


def _rejected_row(rejected: Path, name: str) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "rejected_at": None, "error": None}
    try:
        info = loads_json((rejected / formats.error_name(name)).read_text())
    except (OSError, ValueError):
        row["error"] = "(no readable error file)"
        return row
    if isinstance(info, dict):
        row.update(rejected_at=info.get("at"), error=info.get("error"))
    return row


def cmd_rejected_retry(args: argparse.Namespace, cfg: Config) -> int:
    pending, rejected = _dirs(args, cfg)
    moved, missing = [], []
    for name in dict.fromkeys(args.names):
        src = rejected / name
        if Path(name).name != name or not formats.is_rejected_name(name) or not src.is_file():
            missing.append(name)
            continue
        error = rejected / formats.error_name(name)
        try:
            os.link(src, pending / name)  # never over a pending file of that name
            os.unlink(src)
            error.unlink(missing_ok=True)
        except FileExistsError:
            raise CliError(f"{name}: a pending file of that name exists in {pending}", 1) from None
        except OSError as exc:
            raise _dir_error(pending, exc) from None
        moved.append(name)
    return _report(args, "retried", moved, missing)


def cmd_rejected_purge(args: argparse.Namespace, cfg: Config) -> int:
    _, rejected = _dirs(args, cfg)
    if bool(args.names) == bool(args.all):
        raise CliError("give NAME... or --all (not both)", 2)
    every = _listing(rejected, formats.is_rejected_name)
    wanted = every if args.all else list(dict.fromkeys(args.names))
    purged, missing = [], []
    for name in wanted:
        if name not in every:
            missing.append(name)
            continue
        try:
            (rejected / name).unlink(missing_ok=True)
            (rejected / formats.error_name(name)).unlink(missing_ok=True)
        except OSError as exc:
            raise _dir_error(rejected, exc) from None
        purged.append(name)
    return _report(args, "purged", purged, missing)


def _report(args: argparse.Namespace, what: str, done: list[str], missing: list[str]) -> int:
    if args.json:
        emit_json({what: done, "not_found": missing})
    else:
        print(f"{what} {len(done)} file(s)" + (f": {', '.join(done)}" if done else ""))
    for name in missing:
        print(f"shepherd: error: {name}: no such rejected file", file=sys.stderr)
    return 1 if missing else 0
