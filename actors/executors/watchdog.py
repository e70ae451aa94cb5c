"""The ``watchdog`` executor: runs a check command and applies the OCS watchdog rules.

A watchdog job guards a long task started elsewhere. Each run executes the check
command (``options.check_cmd``, else ``target``) with ``/bin/sh -c`` in its own process
group, bounded by ``min(job.timeout, 60 s)`` (the group is killed past it), and feeds
exit code, output and elapsed minutes to ``watchdog_rules.watchdog_decision``. The check
dies with the runtime as a shell run does (``procs.spawn_group``: parent-death signal on
Linux, recorded on the run and killed by the next start's recovery everywhere).

- exit 2 → transient check failure, ok, nothing sent;
- exit 0 with output → target done: "✅ … watchdog disarmed" alert, then (unless
  ``options.self_destruct`` is false) the job disables and removes itself;
- exit 1, or ``options.timeout_min`` minutes since ``options.started_at`` → "🚨 …
  appears stuck" alert;
- exit 0 silent → still running, nothing sent; any other exit → error run.

Alerts go to the watchdog's own target (``options.alert_to`` / ``alert_channel``,
announce-always) through the message router (``ctx.host.deliver``), never
through the job's delivery settings. The start time is ``options.started_at`` (epoch
seconds or ISO 8601), else when the job was created.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio

from shepherd.actors.executors import child, procs
from shepherd.actors.executors.base import ExecResult, RunContext
from shepherd.actors.executors.host import Host
from shepherd.actors.executors.specs import (  # re-exported
    TIMEOUT_MIN,
    WATCHDOG_OPTIONS,
    check_watchdog,
    parse_started_at,
    watchdog_command,
)
from shepherd.actors.executors.watchdog_rules import watchdog_decision
from shepherd.actors.primitives.clock import Clock, RealClock
from shepherd.store.errors import NotFound
from shepherd.store.models import JobSpec

__all__ = [
    "CHECK_TIMEOUT_CAP",
    "TIMEOUT_MIN",
    "WATCHDOG_OPTIONS",
    "WatchdogExecutor",
    "parse_started_at",
]

CHECK_TIMEOUT_CAP = 60.0
_KEEP = 65536  # bytes of check output kept per stream


async def _read(stream: child.Stream | None, buf: bytearray) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        room = _KEEP - len(buf)
        if room > 0:
            buf += chunk[:room]


class WatchdogExecutor:
    name = "watchdog"

    def __init__(self, *, shell: str = "/bin/sh", clock: Clock | None = None) -> None:
        self._shell = shell
        self._clock: Clock = clock or RealClock()
        self.alerts = 0

    def validate(self, spec: JobSpec) -> None:
        check_watchdog(spec)

    async def _check(self, ctx: RunContext, cmd: str, limit: float) -> tuple[int | None, str, str]:
        """Run the check; exit code None when it was killed at ``limit`` seconds."""
        out, err = bytearray(), bytearray()
        proc = await procs.spawn_group(self._shell, cmd, run_id=ctx.run_id, registry=ctx.host)
        code: int | None = None
        try:
            with anyio.CancelScope() as scope:
                self._clock.cancel_at(scope, self._clock.now() + limit)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_read, proc.stdout, out)
                    tg.start_soon(_read, proc.stderr, err)
                code = await proc.wait()
        finally:
            await procs.end_group(proc)
        return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    async def execute(self, ctx: RunContext) -> ExecResult:
        job, opts = ctx.job, ctx.job.options
        cmd = watchdog_command(job)
        limit = min(float(job.timeout), CHECK_TIMEOUT_CAP)
        code, stdout, stderr = await self._check(ctx, cmd, limit)
        ctx.heartbeat()
        host = ctx.host
        started = await _started_at(host, job, ctx.wall())
        elapsed_min = round(max(0.0, ctx.wall() - started) / 60.0)
        label = str(opts.get("label") or job.name)
        facts: dict[str, Any] = {"exit_code": code, "elapsed_min": elapsed_min}
        ctx.report(
            exit_code=code,
            stdout=stdout[:2000],
            stderr=stderr[:2000],
            details={**(ctx.reported.get("details") or {}), "watchdog": facts},
        )
        if code is None:
            return ExecResult(
                ok=False,
                error=f"Watchdog check timed out after {limit:g}s",
                deliver=False,
                result={"summary": "check timed out"},
            )
        decision = watchdog_decision(
            code,
            stdout,
            stderr,
            elapsed_min,
            opts.get("timeout_min"),
            label,
            cmd,
            dispatched_at=datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        )
        if decision.alert is not None:
            facts["alert"] = await self._alert(ctx, host, decision.alert)
        if decision.done and opts.get("self_destruct", True) and host is not None:
            await host.retire_job(job.name)
            facts["self_destructed"] = True
        result = {"summary": decision.summary}
        if decision.status == "ok":
            return ExecResult(ok=True, result=result, deliver=False, details={"watchdog": facts})
        return ExecResult(
            ok=False,
            error=decision.summary,
            result=result,
            deliver=False,
            details={"watchdog": facts},
        )

    async def _alert(self, ctx: RunContext, host: Host | None, text: str) -> int | str:
        """Send ``text`` to the alert target; returns the delivery id or why not."""
        to = ctx.job.options.get("alert_to")
        channel = ctx.job.options.get("alert_channel")
        if host is None:
            return "no delivery service"
        if not to and not channel:
            return "no alert target (options.alert_to)"
        self.alerts += 1
        delivery_id = await host.deliver(
            text, to=to, channel=channel, kind="alert", job=ctx.job.name,
            run_id=ctx.run_id, dispatch_id=ctx.dispatch_id, outcome="ok",
        )  # fmt: skip
        return delivery_id

    def __repr__(self) -> str:
        return f"<WatchdogExecutor {self._shell} alerts={self.alerts}>"


async def _started_at(host: Host | None, job: JobSpec, now: float) -> float:
    if job.options.get("started_at") is not None:
        return parse_started_at(job.options["started_at"])
    if host is None:
        return now
    try:
        row = await host.job(job.name)
    except NotFound:
        return now
    return float(row.created_at or now)
