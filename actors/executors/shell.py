"""The ``shell`` executor: runs ``job.target`` with ``/bin/sh -c`` in its own process group.

- The process is started in a new session, so its pid is the group id; on timeout or
  cancel the WHOLE group gets SIGKILL (children, grandchildren and pipes included) and
  the run actor records ``timeout`` / ``cancelled``.
- stdout and stderr are read concurrently; each keeps at most ``options.max_output``
  bytes (default 65536) and counts the rest; the byte counts are recorded.
- The run gets the exit code, the signal (when killed by one) and the output.
- Environment: the parent's plus ``SHEPHERD_RUN_ID``, ``SHEPHERD_DISPATCH_ID``,
  ``SHEPHERD_ATTEMPT``, ``SHEPHERD_IDEMPOTENCY_KEY`` and ``SHEPHERD_PAYLOAD`` (JSON).
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import anyio
import msgspec
from anyio.abc import ByteReceiveStream, Process

from actors.executors.base import ExecResult, RunContext
from store.errors import ConfigError
from store.models import JobSpec

__all__ = ["ShellExecutor"]

DEFAULT_MAX_OUTPUT = 65536


class _Capture:
    __slots__ = ("buf", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.buf = bytearray()
        self.limit = limit
        self.total = 0

    def text(self) -> str:
        text = bytes(self.buf).decode("utf-8", errors="replace")
        if self.total > self.limit:
            text += "\n...[truncated]"
        return text


async def _pump(stream: ByteReceiveStream | None, cap: _Capture) -> None:
    if stream is None:
        return
    async for chunk in stream:
        cap.total += len(chunk)
        room = cap.limit - len(cap.buf)
        if room > 0:
            cap.buf += chunk[:room]


class ShellExecutor:
    name = "shell"

    def __init__(self, shell: str = "/bin/sh") -> None:
        self._shell = shell

    def validate(self, spec: JobSpec) -> None:
        if not spec.target.strip():
            raise ConfigError("a shell job needs a command in target", field="target")
        limit = spec.options.get("max_output", DEFAULT_MAX_OUTPUT)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigError("must be a positive integer (bytes)", field="options.max_output")

    async def execute(self, ctx: RunContext) -> ExecResult:
        limit = int(ctx.job.options.get("max_output", DEFAULT_MAX_OUTPUT))
        out, err = _Capture(limit), _Capture(limit)
        env = {
            **os.environ,
            "SHEPHERD_RUN_ID": str(ctx.run_id),
            "SHEPHERD_DISPATCH_ID": str(ctx.dispatch_id),
            "SHEPHERD_ATTEMPT": str(ctx.attempt),
            "SHEPHERD_IDEMPOTENCY_KEY": ctx.idempotency_key or "",
            "SHEPHERD_PAYLOAD": msgspec.json.encode(ctx.payload).decode(),
        }
        cwd = ctx.job.options.get("cwd")
        proc: Process = await anyio.open_process(
            [self._shell, "-c", ctx.job.target],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        ctx.report(pid=proc.pid)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_pump, proc.stdout, out)
                tg.start_soon(_pump, proc.stderr, err)
                ctx.heartbeat()
            code = await proc.wait()
        finally:
            if proc.returncode is None:
                _kill_group(proc.pid)
            with anyio.CancelScope(shield=True):
                await proc.aclose()
            _record(ctx, proc, out, err)
        if code == 0:
            return ExecResult(ok=True, result={"exit_code": 0})
        tail = err.text().strip()[-500:] or out.text().strip()[-500:]
        if code < 0:
            what = f"killed by signal {-code}"
        else:
            what = f"exit code {code}"
        return ExecResult(
            ok=False,
            error=f"Shell command failed ({what})" + (f": {tail}" if tail else ""),
            result={"exit_code": code},
        )

    def __repr__(self) -> str:
        return f"<ShellExecutor {self._shell}>"


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _record(ctx: RunContext, proc: Process, out: _Capture, err: _Capture) -> None:
    code = proc.returncode
    details: dict[str, Any] = {"stdout_bytes": out.total, "stderr_bytes": err.total}
    ctx.report(
        exit_code=code if code is not None and code >= 0 else None,
        signal=-code if code is not None and code < 0 else None,
        stdout=out.text(),
        stderr=err.text(),
        details=details,
    )
