"""The commands of ``runtime.cli`` that are not operations on the store: the daemon
(``run``), the demo and ``config init``. Each imports what it runs only when it runs, so
building the parser loads none of it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shepherd.runtime.config import Config

__all__ = ["config_init", "demo", "run"]


def run(args: argparse.Namespace, cfg: Config) -> int:
    from shepherd.runtime._cli_daemon import run_daemon

    if args.http:
        import msgspec

        from shepherd.runtime.http.config import parse_listen

        parse_listen(args.http, field="--http")
        cfg = msgspec.structs.replace(cfg, http=msgspec.structs.replace(cfg.http, listen=args.http))
    return run_daemon(
        cfg, exit_when_idle=args.exit_when_idle, run_for=args.run_for, log_format=args.log_format
    )


def demo(args: argparse.Namespace, cfg: Config) -> int:
    from shepherd.runtime._cli_demo import cmd_demo

    return cmd_demo(args)


def config_init(args: argparse.Namespace, cfg: Config) -> int:
    from shepherd.runtime._cli_jobs import cmd_config_init

    return cmd_config_init(args)
