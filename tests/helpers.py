"""Test helpers: polling with a deadline (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio


async def eventually(
    predicate: Callable[[], object], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` (sync or async) until true; fail after ``timeout`` seconds.

    For real I/O (a subprocess, a socket, another process). Never move a fake clock in
    ``predicate``: ``await clock.advance_when_blocked(s)`` moves it once every task is
    blocked and no store work is in flight, so no timer is armed after the step."""
    with anyio.move_on_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value  # type: ignore[misc]
            if value:
                return
            await anyio.sleep(0.005)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, what: str = "", step: float = 0.01
) -> Any:
    """Poll ``predicate`` from synchronous code (a test driving real processes) until it
    returns something true, and return that; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)
