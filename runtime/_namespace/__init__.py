"""shepherd: scheduler, dispatcher and supervisor for AI-agent gateways.

This file is the top of the installed ``shepherd`` package. The source folders keep the
layout the project is built around (``actors/``, ``runtime/``, ``store/`` at the top of
the repository); ``pyproject.toml`` installs them as ``shepherd.actors``,
``shepherd.runtime`` and ``shepherd.store``, so an application with its own ``store``
or ``runtime`` package can embed shepherd. Users import from here::

    from shepherd import Runtime, JobSpec, RetryPolicy
"""

from shepherd.runtime import *  # noqa: F403  (the public API, re-exported whole)
from shepherd.runtime import __all__ as __all__
