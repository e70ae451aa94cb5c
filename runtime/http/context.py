"""What every handler can reach (``HttpContext``), in a module of its own so that the
endpoint modules and the app can both name it without importing each other."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shepherd.runtime.http.auth import Auth
from shepherd.runtime.http.config import HttpConfig

__all__ = ["HttpContext"]


@dataclass
class HttpContext:
    """What every handler can reach: the runtime, the ``[http]`` config, the auth table,
    and ``state`` for modules to keep their own objects (lease board, event hub...)."""

    rt: Any
    config: HttpConfig
    auth: Auth
    endpoints: list[Any] = field(default_factory=list)  # runtime.http.api.Endpoint
    state: dict[str, Any] = field(default_factory=dict)
    document: Callable[[], bytes] = lambda: b"{}"
    _openapi: bytes | None = None

    def openapi_bytes(self) -> bytes:
        if self._openapi is None:
            self._openapi = self.document()
        return self._openapi

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        checks["runtime"] = "ok" if getattr(self.rt, "_root", None) is not None else "starting"
        try:
            await self.rt.store.stats()
            path = self.rt.config.database
            checks["store"] = "ok" if os.access(path, os.W_OK) else "read-only"
        except Exception as exc:  # a probe answers, it never raises
            checks["store"] = f"error: {exc}"
        return checks
