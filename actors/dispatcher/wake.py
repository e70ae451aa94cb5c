"""Waking a sleeping agent (Dispatch's wake): its hook, run off the dispatcher's loop.

When assignment's winner for a dispatch is a sleeping agent with a ``wake`` hook
(``agents.AgentTable.choose``), the agent is marked waking (it takes nothing while
it wakes), the dispatch waits (``waking: <agent>``), and the dispatcher starts
``wake_agent`` in its own task group. The hook is a shell command (run by ``/bin/sh
-c``; exit 0 = awake) or an ``http(s)://`` URL (POSTed; 2xx = awake), bounded by the
agent's ``wake_timeout`` on the injected clock. The outcome comes back as an
``AgentWoken`` message: awake → the agent is ready and its waiters are handed on;
failed → it takes nothing until its row changes (a heartbeat, an update), and its
waiters wait with the reason ``waking failed: <agent>``.
"""

from __future__ import annotations

import logging
import subprocess

import anyio
import msgspec

from shepherd.actors.messages import AgentWoken, DispatcherMsg
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address
from shepherd.store.errors import MailboxClosed, MailboxFull

__all__ = ["Wake", "run_hook", "wake_agent"]

log = logging.getLogger("shepherd.dispatcher")


class Wake(msgspec.Struct, frozen=True):
    agent_id: str
    hook: str
    timeout: float


async def run_hook(hook: str) -> str | None:
    """Run ``hook``; None when the agent is awake, else what went wrong."""
    if hook.startswith(("http://", "https://")):
        import httpx

        try:
            async with httpx.AsyncClient() as client:
                response = await client.post(hook)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    try:
        # no pipes: a hook that leaves a background process behind cannot hold us open
        done = await anyio.run_process(
            ["/bin/sh", "-c", hook],
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError as exc:
        return str(exc)
    return None if done.returncode == 0 else f"exit {done.returncode}"


async def wake_agent(w: Wake, report: Address[DispatcherMsg], clock: Clock) -> None:
    error: str | None = f"no answer in {w.timeout:g}s"
    with anyio.CancelScope() as scope:
        clock.cancel_at(scope, clock.now() + w.timeout)
        error = await run_hook(w.hook)
    if scope.cancelled_caught:
        error = f"no answer in {w.timeout:g}s"
    if error is not None:
        log.warning("waking agent %s failed: %s", w.agent_id, error)
    msg = AgentWoken(w.agent_id, error is None, error)
    try:
        report.tell(msg)
    except MailboxFull:
        await report.send(msg)
    except MailboxClosed:  # the dispatcher stopped meanwhile
        pass
