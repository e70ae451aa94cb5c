"""The check every CLI command runs on a config with ``[[jobs]]``: each job validated as
``run`` will add it. Apart from ``_cli_jobs`` (the ``jobs`` commands: their store
writes, wake-ups and file formats), so a command that only loads its config imports
the validation alone: ``runtime.jobs.validate_job`` and the executors' checks
(``actors.executors.specs``), not the executors, their subprocesses, HTTP client and
event loop."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from shepherd.actors.executors import specs
from shepherd.actors.executors.specs import SpecCheck
from shepherd.runtime.jobs import validate_job
from shepherd.store.errors import ConfigError

if TYPE_CHECKING:
    from shepherd.runtime.config import Config

__all__ = ["check_config_jobs", "spec_checks"]


def spec_checks(cfg: Config) -> dict[str, SpecCheck]:
    """The checks of ``_cli_store.builtin_executors(cfg, with_app=False)``, executor by
    executor, without building one (same names, same errors: a test compares them)."""
    return {
        "python": SpecCheck("python", specs.check_python),
        "shell": SpecCheck("shell", specs.check_shell),
        "external": SpecCheck("external", specs.check_external),
        "agent": SpecCheck("agent", partial(specs.check_agent, cfg.gateway)),
        "event": SpecCheck("event", partial(specs.check_event, cfg.gateway)),
        "watchdog": SpecCheck("watchdog", specs.check_watchdog),
    }


def check_config_jobs(cfg: Config, now: float) -> None:
    """Validate the ``[[jobs]]`` of the config as ``run`` will add them, so every command
    refuses a config whose jobs the daemon would refuse. An ``at`` that has passed is
    not an error here: a declared one-shot stays in the config after it ran. The app's
    targets are not imported for this (``status`` works while the app is broken);
    ``run``, ``enqueue`` and ``jobs add`` import them and check python jobs against them."""
    if not cfg.jobs:
        return
    checks = spec_checks(cfg)
    for i, spec in enumerate(cfg.jobs):
        try:
            validate_job(spec, checks, now, previous=spec)
        except ConfigError as exc:
            raise ConfigError(str(exc), field=f"config: jobs[{i}] ({spec.name})") from None
