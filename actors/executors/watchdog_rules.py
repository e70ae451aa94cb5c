"""What a watchdog check result means. Pure; the watchdog executor runs the command.

A watchdog job periodically runs ``check_cmd`` to see whether a long task it guards is
still alive. Decision order (OCS real code, SEMANTICS.md §2.3):

1. exit 2                    → transient check failure: ok, no alert
2. exit 0 with stdout        → target completed: ok, "✅ … watchdog disarmed" alert, done
3. exit 1 or elapsed ≥ limit → target stuck: ok, "🚨 … appears stuck" alert
4. exit 0, empty stdout      → target still running: ok, nothing sent
5. anything else             → error "Watchdog check command returned unexpected exit code"

Alerts go to the watchdog's own alert target (announce-always), never through the
job's delivery settings; ``done`` makes the job eligible to disable / delete itself.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["WatchdogDecision", "watchdog_decision"]

_EXCERPT = 500


class WatchdogDecision(msgspec.Struct, frozen=True, kw_only=True):
    summary: str  # the run summary
    status: Literal["ok", "error"] = "ok"
    alert: str | None = None  # text for the alert target, or None
    done: bool = False  # the guarded task completed: self-destruct eligible
    transient: bool = False  # the check itself failed transiently (exit 2)


def watchdog_decision(
    exit_code: int | None,
    stdout: str,
    stderr: str,
    elapsed_min: int,
    timeout_min: int | None,
    label: str,
    check_cmd: str,
    *,
    dispatched_at: str | None = None,
) -> WatchdogDecision:
    """Decide from one check run. ``timeout_min`` None or 0 disables the time limit.

    ``elapsed_min`` is whole minutes since the guarded task was dispatched (OCS rounds);
    ``dispatched_at`` is shown in the stuck alert ("unknown" when None).
    """
    out = stdout.strip()
    err = stderr.strip()
    timed_out = bool(timeout_min) and elapsed_min >= (timeout_min or 0)

    if exit_code == 2:
        return WatchdogDecision(
            transient=True, summary=f"Watchdog check failed (transient): {err or out}"
        )
    if exit_code == 0 and out:
        text = f'\u2705 [watchdog] Task "{label}" completed -- watchdog disarmed'
        return WatchdogDecision(alert=text, done=True, summary=text)
    if exit_code == 1 or timed_out:
        reason = (
            f"running for {elapsed_min}min (threshold: {timeout_min}min)"
            if timed_out
            else "check command reported stuck"
        )
        lines = [
            f'\U0001f6a8 [watchdog] Task "{label}" appears stuck',
            f"- Dispatched: {dispatched_at or 'unknown'}",
            f"- Running for: {elapsed_min} minutes (threshold: {timeout_min or '?'} min)",
            f"- Reason: {reason}",
            f"- Check: {check_cmd}",
        ]
        if err:
            lines.append(f"- Error: {err[:_EXCERPT]}")
        if out:
            lines.append(f"- Output: {out[:_EXCERPT]}")
        return WatchdogDecision(alert="\n".join(lines), summary=f"Watchdog alert fired: {reason}")
    if exit_code == 0:
        return WatchdogDecision(
            summary=f"Watchdog check: target still running ({elapsed_min}min elapsed)"
        )
    return WatchdogDecision(
        status="error",
        summary=f"Watchdog check command returned unexpected exit code {exit_code}",
    )
