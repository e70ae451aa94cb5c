"""What every handler can reach (``HttpContext``), in a module of its own so that the
endpoint modules and the app can both name it without importing each other."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

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
        """``recovery``: the dispatcher recovered the orphaned runs and loaded the queue
        (again after a restart); ``store``: a write would commit (``store_writable``)."""
        actors: dict[str, Any] = getattr(self.rt, "_actors", {})
        dispatcher = actors.get("dispatcher")
        ready = dispatcher is not None and getattr(dispatcher, "ready", False)
        checks = {"recovery": "ok" if ready else "pending"}
        try:
            checks["store"] = await store_writable(self.rt, actors.get("store"))
        except Exception as exc:  # a probe answers, it never raises
            checks["store"] = f"error: {exc}"
        return checks


RECENT = 5.0  # seconds: a commit this recent answers for the store without a write
PROBE_TIMEOUT = 2.0  # seconds a probe's own write may take


async def store_writable(rt: Any, writer: Any) -> str:
    """An error while a commit failed less than ``RECENT`` s ago and none has succeeded
    since (a full disk fails the commits that need pages, not the probe's empty one,
    which must not answer for them); ``ok`` when the store writer's last
    commit succeeded less than ``RECENT`` s ago; otherwise a real round trip through the
    writer, an empty write transaction (``BEGIN IMMEDIATE``: it needs the write lock and
    a writable file), bounded by ``PROBE_TIMEOUT``."""
    from shepherd.actors.writer import write
    from shepherd.store.ops import Heartbeats

    if writer is None:
        return "starting"
    if not os.access(rt.config.database, os.W_OK):
        return "read-only"
    now = rt.clock.now()
    failed = writer.last_failure
    if failed and now - failed < RECENT and writer.last_commit <= failed:  # none since
        return f"error: {writer.last_error}"
    if not writer.failing and writer.last_commit and now - writer.last_commit < RECENT:
        return "ok"
    with anyio.move_on_after(PROBE_TIMEOUT):
        try:
            await write(rt._writer, Heartbeats([]))
        except Exception as exc:  # StoreError (locked, read-only, full...), writer gone
            return f"error: {exc}"
        return "ok"
    return f"error: no commit within {PROBE_TIMEOUT:g}s"
