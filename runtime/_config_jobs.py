"""The check every CLI command runs on a config with ``[[jobs]]``: each job validated as
``run`` will add it. Apart from ``_cli_jobs`` (the ``jobs`` commands: their store
writes, wake-ups and file formats), so a command that only loads its config imports
the validation alone: the executors' tables and ``runtime.jobs.validate_job``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shepherd.runtime._cli_store import builtin_executors
from shepherd.runtime.jobs import validate_job
from shepherd.store.errors import ConfigError

if TYPE_CHECKING:
    from shepherd.runtime.config import Config

__all__ = ["check_config_jobs"]


def check_config_jobs(cfg: Config, now: float) -> None:
    """Validate the ``[[jobs]]`` of the config as ``run`` will add them, so every command
    refuses a config whose jobs the daemon would refuse. An ``at`` that has passed is
    not an error here: a declared one-shot stays in the config after it ran. The app's
    targets are not imported for this (``status`` works while the app is broken);
    ``run``, ``enqueue`` and ``jobs add`` import them and check python jobs against them."""
    executors = builtin_executors(cfg, with_app=False)
    for i, spec in enumerate(cfg.jobs):
        try:
            validate_job(spec, executors, now, previous=spec)
        except ConfigError as exc:
            raise ConfigError(str(exc), field=f"config: jobs[{i}] ({spec.name})") from None
