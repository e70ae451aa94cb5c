"""Test helpers: polling with a deadline (never a fixed sleep)."""

from __future__ import annotations

from collections.abc import Callable

import anyio


async def eventually(
    predicate: Callable[[], object], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` (sync or async) until true; fail after ``timeout`` seconds."""
    with anyio.move_on_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value  # type: ignore[misc]
            if value:
                return
            await anyio.sleep(0.005)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
