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
    shepherd jobs export [NAME...] [--format toml|json] [-o FILE]
    shepherd completion bash|zsh|fish                  a shell completion script
    shepherd cancel DISPATCH_ID
    shepherd approvals list | approvals approve ID | approvals reject ID --reason R
    shepherd spool enqueue (--message M|--file F) | spool status | spool rejected ...
    shepherd pause SCOPE [NAME] | pause --all | resume SCOPE [NAME] | resume --all
    shepherd pauses | drain [--timeout DUR]
    shepherd import ocs PATH [--dry-run] [--partial] [--history N]

Global options (before or after the command): ``--config PATH`` (default
``./shepherd.toml`` when it exists, else built-in defaults; ``SHEPHERD_*`` environment
variables override), ``--database PATH``, ``--json`` (machine output on stdout, times
in UTC), ``--tz ZONE`` (human output's time zone; default local time; on ``jobs add`` /
``jobs update`` ``--tz`` is the job's zone, so give the display zone before the command),
``--url URL`` with ``--token`` (or ``SHEPHERD_TOKEN``): a remote daemon's REST API
instead of the database (``runtime/_cli_remote.py`` lists the commands that take it).
Errors go to stderr as ``shepherd: error: <message>``, naming the flag or field.

Exit codes:
    0    success (``run``: stopped by a first SIGTERM/SIGINT, idle, or ``--for``)
    1    operation failed: no such job / dispatch / run, config file exists, a dead
         letter id that is not dead, a dispatch that already ended, a database that
         does not exist yet (with a first-run hint)
    2    bad input: command line, config file, job spec (nothing was stored)
    3    store error: database locked, corrupt, read-only, disk full, or
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
import gc
import sys
from collections.abc import Callable, Sequence
from typing import Any

from shepherd.runtime import _cli_boot  # noqa: F401  (first: msgspec without typing_extensions)
from shepherd.runtime._cli_common import (
    EXIT_CODES,
    Lazy,
    Parser,
    classify,
    common_options,
    fail,
    load_cli_config,
)
from shepherd.runtime._cli_complete import SHELLS, completion_script
from shepherd.runtime._cli_fmt import set_display_zone
from shepherd.runtime._cli_help import example_epilog, group_examples
from shepherd.runtime._cli_local import config_init as _config_init
from shepherd.runtime._cli_local import demo as _demo
from shepherd.runtime._cli_local import run as _run
from shepherd.runtime._cli_store import (
    bounded_int,
    duration,
    instant,
    json_object,
    positive_int,
    row_id,
)
from shepherd.runtime.config import Config
from shepherd.store.bounds import Range
from shepherd.store.models import ATTEMPTS, PRIORITIES

__all__ = ["EXIT_CODES", "build_parser", "classify", "main"]

_EPILOG = """exit codes:
  0 ok    1 failed (not found, no database yet, exists, already ended)
  2 bad input (nothing stored)
  3 store error (locked, corrupt, read-only, already served)
  4 supervisor escalation    130 interrupted (second signal during drain, Ctrl-C)"""
_RUN_STATES = ("running", "ok", "error", "timeout", "crashed", "cancelled", "skipped")


attempts = bounded_int(ATTEMPTS)  # --max-attempts: the bounds of the field it sets


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only`` (a key of ``_ALONE``), the root and that
    command alone (``main``'s fast path: no other command's module is imported)."""
    common = common_options(argparse.SUPPRESS)
    common_job: list[argparse.ArgumentParser] = []  # built for the first job command
    root = Parser(
        prog="shepherd",
        description="Scheduler and dispatcher for AI-agent gateways.",
        epilog=_EPILOG,
        parents=[common_options(None)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def _job_options() -> argparse.ArgumentParser:
        if not common_job:
            common_job.append(common_options(argparse.SUPPRESS, tz=False))
        return common_job[0]

    def cmd(
        parent: Any, name: str, fn: Callable[..., int] | str, help: str, *, job: bool = False
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(
            name,
            help=help,
            description=help,
            parents=[_job_options() if job else common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.epilog = example_epilog(p.prog.removeprefix(f"{root.prog} "), _EPILOG)
        p.set_defaults(func=Lazy(fn) if isinstance(fn, str) else fn)
        return p

    if only is not None:
        _ALONE[only](sub, cmd)
        return root
    from shepherd.runtime._cli_agents import add_agents_commands
    from shepherd.runtime._cli_approvals import add_approvals_commands
    from shepherd.runtime._cli_chains import add_chain_commands
    from shepherd.runtime._cli_controls import add_controls_commands
    from shepherd.runtime._cli_groups import add_groups_commands
    from shepherd.runtime._cli_import import add_import_commands
    from shepherd.runtime._cli_jobflags import add_job_flags
    from shepherd.runtime._cli_msg import add_msg_commands
    from shepherd.runtime._cli_nodes import add_cluster_commands
    from shepherd.runtime._cli_spool import add_spool_commands

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
    p.add_argument(
        "--http",
        metavar="ADDR",
        help="serve the HTTP API on host:port (overrides [http] listen), e.g. 127.0.0.1:8600",
    )
    # @@run-flags@@
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines (default) or one JSON object per line (ts, level, logger, msg...)",
    )

    p = cmd(sub, "demo", _demo, "run a self-contained demo on a temporary database")
    p.add_argument("--dir", help="put the demo database here (default: a new temp dir)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every run event")

    config = sub.add_parser("config", help="config file helpers").add_subparsers(
        dest="config_command", required=True, metavar="ACTION"
    )
    p = cmd(sub, "completion", _completion, "print a shell completion script")
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")

    p = cmd(config, "init", _config_init, "write the default config file")
    p.add_argument("path", nargs="?", default="shepherd.toml", metavar="PATH")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    _add_enqueue(sub, cmd)
    _add_status(sub, cmd)
    cmd(
        sub,
        "doctor",
        "_cli_doctor:cmd_doctor",
        "check the database file: integrity, WAL, schema, lock",
    )

    p = cmd(
        sub,
        "backup",
        "_cli_backup:cmd_backup",
        "copy the database (consistent while a daemon runs)",
    )
    p.add_argument("path", metavar="PATH", help="the backup file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing PATH")
    p = cmd(
        sub, "restore", "_cli_backup:cmd_restore", "check a backup in full, then put it in place"
    )
    p.add_argument("backup", metavar="BACKUP")
    p.add_argument("--to", metavar="DB", help="the database to restore (default: --database)")
    p.add_argument("--force", action="store_true", help="replace an existing database")

    runs = sub.add_parser("runs", help="run history").add_subparsers(
        dest="runs_command", required=True, metavar="ACTION"
    )
    p = cmd(runs, "list", "_cli_ops:cmd_runs_list", "list runs, newest first")
    p.add_argument("--job")
    p.add_argument("--status", choices=_RUN_STATES)
    p.add_argument("--limit", type=positive_int, default=50)
    p = cmd(runs, "show", "_cli_ops:cmd_runs_show", "one run with its output and error")
    p.add_argument("run_id", type=row_id, metavar="ID")

    dlq = sub.add_parser("dlq", help="dead letters").add_subparsers(
        dest="dlq_command", required=True, metavar="ACTION"
    )
    p = cmd(dlq, "list", "_cli_ops:cmd_dlq_list", "list dead letters, newest first")
    p.add_argument("--job")
    p.add_argument("--limit", type=positive_int, default=100)
    p = cmd(dlq, "retry", "_cli_ops:cmd_dlq_retry", "queue dead letters again with fresh attempts")
    p.add_argument("ids", type=row_id, nargs="*", metavar="ID")
    p.add_argument("--all", action="store_true", help="every dead letter (see --job)")
    p.add_argument("--job", help="with --all: only this job's")
    p = cmd(dlq, "purge", "_cli_ops:cmd_dlq_purge", "delete dead letters and their runs")
    p.add_argument("ids", type=row_id, nargs="*", metavar="ID")
    p.add_argument("--all", action="store_true")
    p.add_argument("--older-than", type=duration, metavar="DUR")

    jobs = sub.add_parser("jobs", help="job definitions").add_subparsers(
        dest="jobs_command", required=True, metavar="ACTION"
    )
    p = cmd(
        jobs, "add", "_cli_jobs:cmd_jobs_add", "add or replace a job (flags or --file)", job=True
    )
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--file", metavar="FILE", help="TOML or JSON: one job, or [[jobs]]")
    add_job_flags(p)
    p = cmd(
        jobs, "update", "_cli_schedule:cmd_jobs_update", "change some fields of a job", job=True
    )
    p.add_argument("name", metavar="NAME")
    add_job_flags(p)
    p = cmd(
        jobs, "enable", "_cli_schedule:cmd_jobs_enable", "enable a job (recomputes its next run)"
    )
    p.add_argument("name", metavar="NAME")
    p = cmd(jobs, "disable", "_cli_schedule:cmd_jobs_disable", "disable a job's schedule")
    p.add_argument("name", metavar="NAME")
    p = cmd(
        jobs,
        "run",
        "_cli_schedule:cmd_jobs_run",
        "run now (also when disabled; schedule unchanged)",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--payload", type=json_object, metavar="JSON")
    p = cmd(jobs, "next", "_cli_schedule:cmd_jobs_next", "the next N fire times of a job")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-n", "--count", type=bounded_int(Range(1, 1000)), default=5, metavar="N")
    cmd(jobs, "list", "_cli_jobs:cmd_jobs_list", "list jobs")
    p = cmd(
        jobs,
        "export",
        "_cli_export:cmd_jobs_export",
        "write jobs as a file `jobs add --file` takes",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="default: every job")
    p.add_argument("--format", choices=("toml", "json"), help="default: from -o, else toml")
    p.add_argument("-o", "--output", metavar="FILE", help="default: stdout")
    p = cmd(jobs, "show", "_cli_jobs:cmd_jobs_show", "one job's spec and schedule")
    p.add_argument("name", metavar="NAME")
    p = cmd(
        jobs, "rm", "_cli_jobs:cmd_jobs_rm", "remove a job; its queued dispatches are cancelled"
    )
    p.add_argument("name", metavar="NAME")
    add_chain_commands(jobs, cmd)  # jobs tree: runtime/_cli_chains.py
    # @@cli-jobs-commands@@ (more `jobs` actions: "add_x_commands(jobs, cmd)" above this)

    p = cmd(sub, "cancel", "_cli_ops:cmd_cancel", "cancel a queued or running dispatch")
    p.add_argument("dispatch_id", type=row_id, metavar="DISPATCH_ID")
    p.add_argument(
        "--cascade", action="store_true", help="also its chain dispatches not yet started"
    )
    add_spool_commands(sub, cmd)  # the spool directory: runtime/_cli_spool.py
    add_approvals_commands(sub, cmd)  # approval requests: runtime/_cli_approvals.py
    add_msg_commands(sub, cmd)  # inbox messages: runtime/_cli_msg.py
    add_groups_commands(sub, cmd)  # task groups: runtime/_cli_groups.py
    add_agents_commands(sub, cmd)  # the agents registry: runtime/_cli_agents.py
    add_controls_commands(sub, cmd)  # pause, resume, pauses, drain: runtime/_cli_controls.py
    add_import_commands(sub, cmd)  # import ocs: runtime/_cli_import.py
    add_cluster_commands(sub, cmd)  # nodes, db upgrade: runtime/_cli_nodes.py, _cli_db.py
    # @@cli-commands@@ (one "add_x_commands(sub, cmd)" per _cli_x.py module above this)
    return group_examples(root)


def _add_enqueue(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    p = cmd(
        sub, "enqueue", "_cli_enqueue:cmd_enqueue", "queue one run of a job; prints its dispatch id"
    )
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
    p.add_argument(
        "--capabilities", metavar="A,B", help="an agent must have these (besides the job's)"
    )
    p.add_argument("--owner", metavar="OWNER", help="only its agents ([agents] owner_filter)")


def _add_status(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    cmd(sub, "status", "_cli_status:cmd_status", "queue depth, running runs, dead letters, daemon")


# the commands ``main`` builds alone when argv names one: the parser of that command is
# exactly the full parser's (the same function declares it), and nothing else is imported
_ALONE: dict[str, Callable[[Any, Callable[..., argparse.ArgumentParser]], None]] = {
    "enqueue": _add_enqueue,
    "status": _add_status,
}
_VALUED = {"--config", "--database", "--app", "--url", "--token", "--tz"}  # take a value


def alone(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names when it is one of ``_ALONE`` and only global options
    come before it (spelled out: argparse's abbreviations get the full parser)."""
    words = iter(argv)
    for word in words:
        if word in _VALUED:
            next(words, None)
        elif word != "--json" and not word.startswith(tuple(f"{v}=" for v in _VALUED)):
            return word if word in _ALONE else None
    return None


# -- commands that are not store operations -------------------------------------------


def _completion(args: argparse.Namespace, cfg: Config) -> int:
    sys.stdout.write(completion_script(build_parser(), args.shell))
    return 0


_NO_CONFIG = {_demo, _config_init, _completion}


# -- main and error mapping --------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        if argv is None:  # the program itself (console script, python -m): it exits next
            # and its final collection would walk every object left (~20 ms of a
            # command's start-up); frozen, they are left to the process's exit
            gc.freeze()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser(alone(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        set_display_zone(getattr(args, "display_tz", None))
        if getattr(args, "url", None):  # a remote daemon: runtime/_cli_remote.py
            from shepherd.runtime._cli_remote import run_remote

            return run_remote(args)
        cfg = Config() if args.func in _NO_CONFIG else load_cli_config(args)
        result: int = args.func(args, cfg)
        return result
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_CODES["interrupted"])
    except BrokenPipeError:  # `shepherd runs list | head`: the reader left, not an error
        sys.stderr.close()
        return 0
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        code, message = classify(exc)
        if code is None:
            raise
        return fail(message, code)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
