"""shepherd's HTTP API: an ASGI app (``build_app``) that the daemon serves with uvicorn
inside its own loop (``actors.http``) or that an embedding application mounts.

Importing the package is cheap (the config types only): Starlette is imported when
``build_app`` is first used, so CLI commands that never serve HTTP do not pay for it.
"""

from typing import Any

from shepherd.runtime.http.config import VERSION, HttpConfig, NatsConfig, TokenConfig

__all__ = ["VERSION", "HttpConfig", "NatsConfig", "TokenConfig", "build_app"]


def build_app(rt: Any, config: HttpConfig | None = None, **kw: Any) -> Any:
    """The ASGI app for runtime ``rt`` (see ``runtime.http.app.build_app``)."""
    from shepherd.runtime.http.app import build_app as build

    return build(rt, config, **kw)
