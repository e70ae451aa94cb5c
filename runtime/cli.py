"""The ``shepherd`` command line (also ``python -m shepherd``).

    shepherd run [--exit-when-idle] [--for DUR]      the daemon (SIGTERM: graceful stop)
    shepherd demo [--dir DIR]                          a self-contained demo, ~3 s
    shepherd config init [PATH] [--force]              write the default config
    shepherd enqueue JOB [--payload JSON] [--priority P] [--delay DUR] ...
    shepherd status                                    queue depth, running, daemon
    shepherd doctor                                    integrity, WAL, schema, lock
    shepherd runs list | runs show ID
    shepherd dlq list | dlq retry ID...|--all | dlq purge ID...|--all|--older-than DUR
    shepherd jobs add NAME [flags] | jobs add --file F | jobs list | jobs show | jobs rm
    shepherd cancel DISPATCH_ID

Global options (before or after the command): ``--config PATH`` (default
``./shepherd.toml`` when it exists, else built-in defaults; ``SHEPHERD_*`` environment
variables override), ``--database PATH``, ``--json`` (machine output on stdout).
Errors go to stderr as ``shepherd: error: <message>``, naming the flag or field.

Exit codes:
    0    success (``run``: stopped by a first SIGTERM/SIGINT, idle, or ``--for``)
    1    operation failed: no such job / dispatch / run, config file exists, a dead
         letter id that is not dead, a dispatch that already ended
    2    bad input: command line, config file, job spec (nothing was stored)
    3    store error: database locked, corrupt, read-only, missing, disk full, or
         already served by another runtime (also an escalation caused by one);
         ``doctor``: the file is not healthy
    4    supervisor escalation: the runtime's restart intensity was exceeded
    130  interrupted: ``run`` got a second signal during its graceful drain and
         cancelled at once, or another command was interrupted with Ctrl-C

The module is longer than most because ``build_parser`` declares every command and flag
in one place, so it reads as the CLI's reference; the commands live in ``_cli_*.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from shepherd.runtime import _cli_ops as ops
from shepherd.runtime import _cli_schedule as sched
from shepherd.runtime._cli_doctor import cmd_doctor
from shepherd.runtime._cli_fmt import CliError
from shepherd.runtime._cli_jobs import (
    check_config_jobs,
    cmd_config_init,
    cmd_jobs_add,
    cmd_jobs_list,
    cmd_jobs_rm,
    cmd_jobs_show,
)
from shepherd.runtime._cli_status import cmd_status
from shepherd.runtime._cli_store import bounded_int, duration, instant, json_object, positive_int
from shepherd.runtime.config import Config, load_config
from shepherd.store.bounds import Range
from shepherd.store.errors import (
    ConfigError,
    NotFound,
    ShepherdError,
    StoreError,
    SupervisorEscalation,
)
from shepherd.store.models import ATTEMPTS, PRIORITIES

__all__ = ["EXIT_CODES", "build_parser", "main"]

EXIT_CODES = {"ok": 0, "failed": 1, "bad_input": 2, "store": 3, "escalation": 4, "interrupted": 130}
_EPILOG = """exit codes:
  0 ok    1 failed (not found, exists, already ended)    2 bad input (nothing stored)
  3 store error (locked, corrupt, read-only, already served)
  4 supervisor escalation    130 interrupted (second signal during drain, Ctrl-C)"""
_RUN_STATES = ("running", "ok", "error", "timeout", "crashed", "cancelled", "skipped")

Command = Callable[[argparse.Namespace, Config], int]
attempts = bounded_int(ATTEMPTS)  # --max-attempts: the bounds of the field it sets


def _common(default: Any) -> argparse.ArgumentParser:
    """Global options. The root parser gets real defaults; each command gets a separate
    copy whose defaults are SUPPRESS, so ``status --json`` works and a flag given
    before the command is not overwritten (argparse shares action objects between a
    parent and its children, so one instance cannot serve both)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="TOML config (default: ./shepherd.toml if it exists)",
    )
    p.add_argument(
        "--database",
        metavar="PATH",
        default=default,
        help="database file (overrides the config)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="machine-readable output on stdout",
    )
    return p


def _job_flags(p: argparse.ArgumentParser, *, update: bool = False) -> None:
    p.add_argument(
        "--executor", help="python (default), shell, agent, event or watchdog (see README)"
    )
    p.add_argument(
        "--target", help="shell: the command; python: the registered target; agent: agent id"
    )
    p.add_argument("--payload", type=json_object, metavar="JSON")
    p.add_argument(
        "--options", type=json_object, metavar="JSON", help="executor options, a JSON object"
    )
    p.add_argument("--cron", metavar="EXPR")
    p.add_argument("--tz", metavar="ZONE", help="IANA time zone of --cron / --at")
    p.add_argument("--at", metavar="ISO", help="one shot: ISO 8601 instant or 'in 10m'")
    p.add_argument("--every", type=duration, metavar="DUR")
    p.add_argument("--priority", choices=PRIORITIES)
    p.add_argument("--timeout", type=duration, metavar="DUR")
    p.add_argument("--max-attempts", type=attempts, metavar="N", help="1-1000")
    p.add_argument("--retry-base", type=duration, metavar="DUR", help="first retry delay")
    p.add_argument("--overlap", choices=("skip", "queue", "allow", "replace"))
    p.add_argument("--pool", metavar="NAME")
    p.add_argument("--guarantee", choices=("at-least-once", "at-most-once"))
    if not update:
        p.add_argument("--disabled", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    common = _common(argparse.SUPPRESS)
    root = argparse.ArgumentParser(
        prog="shepherd",
        description="Scheduler and dispatcher for AI-agent gateways.",
        epilog=_EPILOG,
        parents=[_common(None)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(parent: Any, name: str, fn: Callable[..., int], help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(
            name,
            help=help,
            description=help,
            parents=[common],
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=fn)
        return p

    p = cmd(sub, "run", _run, "run the daemon until SIGTERM / SIGINT")
    p.add_argument(
        "--exit-when-idle", action="store_true", help="exit 0 once no dispatch is queued or running"
    )
    p.add_argument(
        "--for",
        dest="run_for",
        type=duration,
        metavar="DUR",
        help="stop (gracefully) after this long, e.g. 30s",
    )

    p = cmd(sub, "demo", _demo, "run a self-contained demo on a temporary database")
    p.add_argument("--dir", help="put the demo database here (default: a new temp dir)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every run event")

    config = sub.add_parser("config", help="config file helpers").add_subparsers(
        dest="config_command", required=True, metavar="ACTION"
    )
    p = cmd(config, "init", _config_init, "write the default config file")
    p.add_argument("path", nargs="?", default="shepherd.toml", metavar="PATH")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = cmd(sub, "enqueue", ops.cmd_enqueue, "queue one run of a job; prints its dispatch id")
    p.add_argument("job", metavar="JOB")
    p.add_argument("--payload", type=json_object, metavar="JSON", help="a JSON object")
    p.add_argument("--priority", choices=PRIORITIES)
    p.add_argument("--delay", type=duration, metavar="DUR", help="not before now + DUR")
    p.add_argument("--not-before", type=instant, metavar="ISO", help="e.g. 2025-01-31T09:00Z")
    p.add_argument(
        "--expires-in",
        type=duration,
        metavar="DUR",
        help="dead-letter (expired) if not started within DUR",
    )
    p.add_argument("--max-attempts", type=attempts, metavar="N", help="1-1000")
    p.add_argument("--idempotency-key", metavar="KEY")

    cmd(sub, "status", cmd_status, "queue depth, running runs, dead letters, daemon")
    cmd(sub, "doctor", cmd_doctor, "check the database file: integrity, WAL, schema, lock")

    runs = sub.add_parser("runs", help="run history").add_subparsers(
        dest="runs_command", required=True, metavar="ACTION"
    )
    p = cmd(runs, "list", ops.cmd_runs_list, "list runs, newest first")
    p.add_argument("--job")
    p.add_argument("--status", choices=_RUN_STATES)
    p.add_argument("--limit", type=positive_int, default=50)
    p = cmd(runs, "show", ops.cmd_runs_show, "one run with its output and error")
    p.add_argument("run_id", type=positive_int, metavar="ID")

    dlq = sub.add_parser("dlq", help="dead letters").add_subparsers(
        dest="dlq_command", required=True, metavar="ACTION"
    )
    p = cmd(dlq, "list", ops.cmd_dlq_list, "list dead letters, newest first")
    p.add_argument("--job")
    p.add_argument("--limit", type=positive_int, default=100)
    p = cmd(dlq, "retry", ops.cmd_dlq_retry, "queue dead letters again with fresh attempts")
    p.add_argument("ids", type=positive_int, nargs="*", metavar="ID")
    p.add_argument("--all", action="store_true", help="every dead letter (see --job)")
    p.add_argument("--job", help="with --all: only this job's")
    p = cmd(dlq, "purge", ops.cmd_dlq_purge, "delete dead letters and their runs")
    p.add_argument("ids", type=positive_int, nargs="*", metavar="ID")
    p.add_argument("--all", action="store_true")
    p.add_argument("--older-than", type=duration, metavar="DUR")

    jobs = sub.add_parser("jobs", help="job definitions").add_subparsers(
        dest="jobs_command", required=True, metavar="ACTION"
    )
    p = cmd(jobs, "add", cmd_jobs_add, "add or replace a job (flags or --file)")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--file", metavar="FILE", help="TOML or JSON: one job, or [[jobs]]")
    _job_flags(p)
    p = cmd(jobs, "update", sched.cmd_jobs_update, "change some fields of a job")
    p.add_argument("name", metavar="NAME")
    _job_flags(p, update=True)
    p = cmd(jobs, "enable", sched.cmd_jobs_enable, "enable a job (recomputes its next run)")
    p.add_argument("name", metavar="NAME")
    p = cmd(jobs, "disable", sched.cmd_jobs_disable, "disable a job's schedule")
    p.add_argument("name", metavar="NAME")
    p = cmd(jobs, "run", sched.cmd_jobs_run, "run now (also when disabled; schedule unchanged)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--payload", type=json_object, metavar="JSON")
    p = cmd(jobs, "next", sched.cmd_jobs_next, "the next N fire times of a job")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-n", "--count", type=bounded_int(Range(1, 1000)), default=5, metavar="N")
    cmd(jobs, "list", cmd_jobs_list, "list jobs")
    p = cmd(jobs, "show", cmd_jobs_show, "one job's spec and schedule")
    p.add_argument("name", metavar="NAME")
    p = cmd(jobs, "rm", cmd_jobs_rm, "remove a job; its queued dispatches are cancelled")
    p.add_argument("name", metavar="NAME")

    p = cmd(sub, "cancel", ops.cmd_cancel, "cancel a queued or running dispatch")
    p.add_argument("dispatch_id", type=positive_int, metavar="DISPATCH_ID")
    return root


# -- commands that are not store operations -------------------------------------------


def _run(args: argparse.Namespace, cfg: Config) -> int:
    from shepherd.runtime._cli_daemon import run_daemon

    return run_daemon(cfg, exit_when_idle=args.exit_when_idle, run_for=args.run_for)


def _demo(args: argparse.Namespace, cfg: Config) -> int:
    from shepherd.runtime._cli_demo import cmd_demo

    return cmd_demo(args)


def _config_init(args: argparse.Namespace, cfg: Config) -> int:
    return cmd_config_init(args)


_NO_CONFIG = {_demo, _config_init}


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and os.path.exists("shepherd.toml"):
        path = "shepherd.toml"
    cfg = load_config(path, database=args.database)
    check_config_jobs(cfg, time.time())  # what `run` would refuse, every command refuses
    return cfg


# -- main and error mapping --------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        cfg = Config() if args.func in _NO_CONFIG else _config(args)
        result: int = args.func(args, cfg)
        return result
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_CODES["interrupted"])
    except BrokenPipeError:  # `shepherd runs list | head`: the reader left, not an error
        sys.stderr.close()
        return 0
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        code, message = classify(exc)
        if code is None:
            raise
        return _fail(message, code)


def classify(exc: BaseException) -> tuple[int | None, str]:
    """(exit code, message) for an error the CLI reports; (None, "") to re-raise."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in _leaves(exc) if isinstance(e, ShepherdError | CliError)]
        if not leaves:
            return None, ""
        exc = leaves[0]
    match exc:
        case CliError():
            return exc.code, str(exc)
        case ConfigError():
            return EXIT_CODES["bad_input"], str(exc)
        case NotFound():
            return EXIT_CODES["failed"], str(exc)
        case StoreError():
            return EXIT_CODES["store"], f"store error ({type(exc).__name__}): {exc}"
        case SupervisorEscalation(cause=StoreError() as cause):  # a store fault, not a bug
            kind = type(cause).__name__
            return EXIT_CODES["store"], f"runtime stopped: store error ({kind}): {exc}"
        case SupervisorEscalation():
            return EXIT_CODES["escalation"], f"runtime stopped: SupervisorEscalation: {exc}"
        case ShepherdError():
            return EXIT_CODES["failed"], f"{type(exc).__name__}: {exc}"
    return None, ""


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


def _fail(message: str, code: int) -> int:
    print(f"shepherd: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
