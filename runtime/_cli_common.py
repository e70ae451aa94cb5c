"""Pieces of the command line shared by ``runtime.cli`` and the command modules: the
global options, lazy commands, loading the config, and the error -> exit code map."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from shepherd.runtime._cli_fmt import CliError
from shepherd.runtime._cli_store import http_url, not_unicode
from shepherd.runtime.config import Config, load_config
from shepherd.store.errors import (
    ConfigError,
    Conflict,
    NotFound,
    ShepherdError,
    StoreError,
    SupervisorEscalation,
    leaves,
)

__all__ = [
    "EXIT_CODES",
    "Command",
    "Lazy",
    "Parser",
    "classify",
    "common_options",
    "fail",
    "load_cli_config",
]

EXIT_CODES = {"ok": 0, "failed": 1, "bad_input": 2, "store": 3, "escalation": 4, "interrupted": 130}

Command = Callable[[argparse.Namespace, Config], int]


class Lazy:
    """A command given as ``"_cli_module:function"`` (in ``shepherd.runtime``), imported
    when it runs: building the parser imports no command's module, so a command loads
    only what it uses (``shepherd enqueue`` never loads the actor tree)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def resolve(self) -> Command:
        import importlib

        module, _, name = self.where.partition(":")
        fn: Command = getattr(importlib.import_module(f"shepherd.runtime.{module}"), name)
        return fn

    def __call__(self, args: argparse.Namespace, cfg: Config) -> int:
        return self.resolve()(args, cfg)

    def __repr__(self) -> str:
        return f"<Lazy {self.where}>"


class Parser(argparse.ArgumentParser):
    """The CLI's parser: every word given as an argument's value is checked to be valid
    Unicode before its type converts it, so a word that was not UTF-8 (Python decodes
    ``argv`` with ``surrogateescape``) exits 2 naming its flag instead of failing when it
    is encoded (stored, sent, written). Subparsers are built of this class too."""

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        # a subparsers action is given every word after it: its parser checks them
        problem = None if action.nargs == argparse.PARSER else not_unicode(arg_string)
        if problem is not None:
            raise argparse.ArgumentError(action, problem)
        return super()._get_value(action, arg_string)


def common_options(default: Any, *, tz: bool = True) -> argparse.ArgumentParser:
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
        "--app",
        metavar="MODULE:ATTR",
        default=default,
        help="python targets to import, e.g. myapp.tasks:targets (overrides the config's app)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="machine-readable output on stdout",
    )
    p.add_argument(
        "--url",
        metavar="URL",
        type=http_url,
        default=default,
        help="work on a remote daemon's REST API, e.g. http://127.0.0.1:8600 (status, enqueue,"
        " cancel, runs, dlq, approvals)",
    )
    p.add_argument(
        "--token",
        metavar="TOKEN",
        default=default,
        help="the API token for --url (default: $SHEPHERD_TOKEN)",
    )
    if tz:  # not on jobs add / update, whose --tz is the job's zone (give it first there)
        p.add_argument(
            "--tz",
            dest="display_tz",
            metavar="ZONE",
            default=default,
            help="show times in this IANA zone (default: local time; --json stays UTC)",
        )
    return p


def load_cli_config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and os.path.exists("shepherd.toml"):
        path = "shepherd.toml"
    cfg = load_config(path, database=args.database, app=args.app)
    if cfg.jobs:
        from shepherd.runtime._config_jobs import check_config_jobs

        check_config_jobs(cfg, time.time())  # what `run` would refuse, every command refuses
    return cfg


def classify(exc: BaseException) -> tuple[int | None, str]:
    """(exit code, message) for an error the CLI reports; (None, "") to re-raise."""
    if isinstance(exc, BaseExceptionGroup):
        ours = [e for e in leaves(exc) if isinstance(e, ShepherdError | CliError)]
        if not ours:
            return None, ""
        exc = ours[0]
    match exc:
        case CliError():
            return exc.code, str(exc)
        case ConfigError():
            return EXIT_CODES["bad_input"], str(exc)
        case NotFound() | Conflict():
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


def fail(message: str, code: int) -> int:
    print(f"shepherd: error: {message}", file=sys.stderr)
    return code
