"""shepherd: scheduler, dispatcher and supervisor for AI-agent gateways.

This file is the top of the installed ``shepherd`` package. The source folders keep the
layout the project is built around (``actors/``, ``runtime/``, ``store/`` at the top of
the repository); ``pyproject.toml`` installs them as ``shepherd.actors``,
``shepherd.runtime`` and ``shepherd.store``, so an application with its own ``store``
or ``runtime`` package can embed shepherd. Users import from here::

    from shepherd import Runtime, JobSpec, RetryPolicy

The names are ``shepherd.runtime``'s, loaded on first use (PEP 562), so importing any
``shepherd.*`` module does not load the whole runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shepherd.runtime import __all__ as __all__

if TYPE_CHECKING:
    from shepherd.runtime import *  # noqa: F403  (the public API, re-exported whole)


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import shepherd.runtime

    value = getattr(shepherd.runtime, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
