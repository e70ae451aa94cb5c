"""``shepherd run``: the standalone daemon, and the signal handling around it.

- The signal receiver (SIGTERM, SIGINT) is open before the runtime starts.
- First signal: leave ``Runtime.open``'s context, which stops admitting, lets running
  runs finish for ``shutdown_grace`` and cancels the rest (their delivery guarantee
  applies); exit 0.
- A second signal during that drain cancels everything at once: run subprocess groups
  are killed, in-flight runs stay ``running`` in the store and are recovered as
  orphans by the next start (replayed when ``at-least-once``); exit 130.
- ``exit_when_idle``: stop once no dispatch is queued or running (a future not-before
  counts as queued). ``run_for``: stop after that many seconds. Both stop gracefully,
  and only signals are counted: the first signal during such a drain is a graceful one.

Logs go to stderr, one line per event: ``<ISO UTC time> <LEVEL> <logger> <message>``,
with run events as ``run.started`` / ``run.finished`` followed by ``key=value`` pairs;
``--log-format json`` writes one JSON object per line instead (``runtime._logs``).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, Literal, assert_never

import anyio

from shepherd.actors.messages import (
    ApprovalsHeld,
    DispatchQueued,
    Event,
    OutcomeEvent,
    RunStarted,
    SlotRecord,
)
from shepherd.runtime._cli_fmt import iso
from shepherd.runtime._logs import JsonFormatter, TextFormatter
from shepherd.runtime.app import Runtime
from shepherd.runtime.config import Config

__all__ = ["FORCED_EXIT", "run_daemon", "setup_logging", "signal_action"]

FORCED_EXIT = 130
_IDLE_RECHECK = 1.0  # seconds between idle checks when no event arrives

log = logging.getLogger("shepherd.daemon")


def setup_logging(level: str, fmt: Literal["text", "json"] = "text") -> Callable[[], None]:
    """One handler on the ``shepherd`` logger, one line per record to stderr (text or
    JSON). Returns a function that undoes it (the demo and tests run the daemon
    in-process)."""
    logger = logging.getLogger("shepherd")
    old_level = logger.level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(old_level)

    return restore


def run_daemon(
    cfg: Config,
    *,
    exit_when_idle: bool = False,
    run_for: float | None = None,
    log_format: Literal["text", "json"] = "text",
) -> int:
    """Serve ``cfg`` until a signal, idleness or ``run_for``; returns the exit code.
    Runtime errors (StoreError, SupervisorEscalation, ConfigError) propagate."""
    restore_logging = setup_logging(cfg.log_level, log_format)
    options: dict[str, Any] = {}
    if cfg.use_uvloop:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            pass
        else:
            options["use_uvloop"] = True
    try:
        code: int = anyio.run(_serve, cfg, exit_when_idle, run_for, backend_options=options)
    finally:
        restore_logging()
    return code


async def _serve(cfg: Config, exit_when_idle: bool, run_for: float | None) -> int:
    forced = False
    stop = anyio.Event()
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as outer:

            async def watch_signals() -> None:
                nonlocal forced
                received = 0
                async for signum in signals:
                    name = signal.Signals(signum).name
                    received += 1
                    if signal_action(received) == "shutdown":
                        log.info(
                            "signal.received signal=%s action=shutdown grace=%gs%s",
                            name,
                            float(cfg.shutdown_grace),
                            " (already stopping)" if stop.is_set() else "",
                        )
                        stop.set()
                    else:
                        log.warning("signal.received signal=%s action=cancel-now", name)
                        forced = True
                        outer.cancel_scope.cancel()

            outer.start_soon(watch_signals)
            runs_log = logging.getLogger("shepherd.events")
            on_event = functools.partial(_log_event, runs_log)
            async with Runtime.open(cfg, on_event=on_event) as rt:
                log.info(
                    'daemon.ready database=%s pid=%d instance=%s concurrency=%d start_check="%s"',
                    cfg.database,
                    os.getpid(),
                    rt.instance,
                    cfg.concurrency,
                    rt.statistics()["start_check"],
                )
                async with anyio.create_task_group() as tg:
                    if exit_when_idle:
                        tg.start_soon(_stop_when_idle, rt, stop)
                    if run_for is not None:
                        tg.start_soon(_stop_after, run_for, stop)
                    await stop.wait()
                    tg.cancel_scope.cancel()
                log.info("daemon.stopping draining=yes grace=%gs", float(cfg.shutdown_grace))
            log.info("daemon.stopped")
            outer.cancel_scope.cancel()
    if forced:
        log.warning("daemon.stopped forced=yes (in-flight runs are recovered on next start)")
        return FORCED_EXIT
    return 0


def signal_action(received: int) -> Literal["shutdown", "cancel-now"]:
    """What the ``received``-th SIGTERM/SIGINT does. Only signals count: a stop that
    began without one (``--exit-when-idle``, ``--for``) is still drained gracefully
    when the first signal arrives during it."""
    return "shutdown" if received <= 1 else "cancel-now"


async def _stop_after(seconds: float, stop: anyio.Event) -> None:
    await anyio.sleep(seconds)
    log.info("daemon.deadline seconds=%g", seconds)
    stop.set()


async def _stop_when_idle(rt: Runtime, stop: anyio.Event) -> None:
    """Re-check the store after every final outcome (and at least every second)."""
    async with rt.subscribe(OutcomeEvent) as events:
        while True:
            stats = await rt.stats()
            if stats["dispatches"]["queued"] == 0 and stats["dispatches"]["running"] == 0:
                log.info("daemon.idle")
                stop.set()
                return
            with anyio.move_on_after(_IDLE_RECHECK):
                async for event in events:
                    if isinstance(event, OutcomeEvent) and event.final:
                        break


def _log_event(runs: logging.Logger, ev: Event) -> None:
    match ev:
        case RunStarted():
            runs.info(
                "run.started dispatch=%d run=%d job=%s attempt=%d",
                ev.dispatch_id,
                ev.run_id,
                ev.job,
                ev.attempt,
            )
        case OutcomeEvent():
            extra = ""
            if ev.next_attempt_at is not None:
                extra += f" next_attempt_at={iso(ev.next_attempt_at)}"
            if ev.dead_reason:
                extra += f" dead_reason={ev.dead_reason}"
            if ev.error:
                extra += f" error={_quote(ev.error)}"
            runs.info(
                "run.finished dispatch=%d run=%s job=%s attempt=%d outcome=%s status=%s%s",
                ev.dispatch_id,
                ev.run_id,
                ev.job,
                ev.attempt,
                ev.outcome,
                ev.status,
                extra,
            )
        case SlotRecord():
            runs.info(
                "slot.skipped job=%s dispatch=%s reason=%s",
                ev.job,
                ev.dispatch_id,
                _quote(ev.reason),
            )
        case ApprovalsHeld() | DispatchQueued():
            pass  # not subscribed: the approval requests are logged by the approvals actor
        case _:
            assert_never(ev)


def _quote(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return '"' + text.replace('"', "'") + '"'
