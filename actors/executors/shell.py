"""The ``shell`` executor: runs ``job.target`` with ``/bin/sh -c`` in its own process group.

- The process is started in a new session (``procs.spawn_group``), so its pid is the
  group id; on timeout or cancel the WHOLE group gets SIGKILL (children, grandchildren
  and pipes included) and the run actor records ``timeout`` / ``cancelled``.
- It dies with the runtime: on Linux the runtime's fork server kills the whole group
  when the runtime dies (``forker``; the shell's parent-death signal where there is no
  fork server); on every platform the group is recorded on the run before the command
  starts, and the next start kills what is left of it before the delivery guarantee
  applies (``actors.dispatcher.recovery``).
- stdout and stderr are read concurrently. Output limits (OCS, ``output.py``):
  ``options.output_store`` / ``output_excerpt`` / ``output_summary`` / ``output_offload``
  (bytes; 65536 / 2000 / 5000 / 65536). A stream longer than the offload threshold is
  written in full to ``<data_dir>/runs/<run_id>/stdout.txt`` (``stderr.txt``) as it
  arrives (memory stays bounded) and only an excerpt is stored; otherwise it is stored
  up to the store limit. Truncation never splits a UTF-8 character.
- The run gets the exit code, the signal (when killed by one), the stored output, the
  byte counts and artifact paths (``details``), and the result
  ``{"exit_code", "summary"}`` where the summary is OCS's delivery text cut to the
  summary limit. Announce delivery text: ``output.shell_delivery_text``.
- Environment: the parent's plus ``SHEPHERD_RUN_ID``, ``SHEPHERD_DISPATCH_ID``,
  ``SHEPHERD_ATTEMPT``, ``SHEPHERD_IDEMPOTENCY_KEY`` and ``SHEPHERD_PAYLOAD`` (JSON).
- A command, directory or key the OS cannot take (NUL, not UTF-8: refused when a job
  is saved, ``specs.check_shell``, but a row may predate the check) ends the run
  ``error``, not retried, before anything is started.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import anyio
import msgspec

from shepherd.actors.executors import child, procs
from shepherd.actors.executors.base import ExecResult, RunContext
from shepherd.actors.executors.output import (
    OutputLimits,
    StreamResult,
    normalize_stream,
    shell_error_message,
    shell_output_text,
    truncate_utf8,
    validate_limits,
)
from shepherd.actors.executors.specs import SHELL_OPTIONS, check_shell  # re-exported
from shepherd.store.bounds import check_os_text
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec

__all__ = ["SHELL_OPTIONS", "ShellExecutor", "artifact_path"]


def artifact_path(data_dir: str, run_id: int, stream: str) -> Path:
    """Where the full ``stream`` ("stdout" / "stderr") of a large run is written."""
    return Path(data_dir) / "runs" / str(run_id) / f"{stream}.txt"


class _Capture:
    """One stream: the head in memory, everything past the offload threshold spilled."""

    __slots__ = ("data_dir", "file", "head", "keep", "limits", "path", "run_id", "stream", "total")

    def __init__(self, limits: OutputLimits, data_dir: str, run_id: int, stream: str) -> None:
        self.limits = limits
        self.keep = max(limits.offload, limits.excerpt)
        self.head = bytearray()
        self.total = 0
        self.data_dir, self.run_id, self.stream = data_dir, run_id, stream
        self.path: Path | None = None  # only once it is offloaded
        self.file: IO[bytes] | None = None

    async def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.keep - len(self.head)
        if self.file is None and self.total <= self.limits.offload:
            self.head += chunk
            return
        if self.file is None:
            self.path = artifact_path(self.data_dir, self.run_id, self.stream)
            self.file = await anyio.to_thread.run_sync(_open_artifact, self.path)
            await anyio.to_thread.run_sync(self.file.write, bytes(self.head))
        if room > 0:
            self.head += chunk[:room]
        await anyio.to_thread.run_sync(self.file.write, chunk)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def result(self) -> StreamResult:
        if self.file is None or self.path is None:
            return normalize_stream(bytes(self.head), self.limits, None)
        text = bytes(self.head).decode("utf-8", errors="replace")
        return StreamResult(
            text=truncate_utf8(text, min(self.limits.store, self.limits.excerpt)),
            excerpt=truncate_utf8(text, self.limits.excerpt),
            bytes=self.total,
            offloaded=self.path,
            truncated=True,
        )


def _open_artifact(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "wb")  # closed by _Capture.close


async def _pump(stream: child.Stream | None, cap: _Capture, ctx: RunContext) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        await cap.feed(chunk)
        ctx.heartbeat()


class ShellExecutor:
    name = "shell"

    def __init__(self, shell: str = "/bin/sh") -> None:
        self._shell = shell

    def validate(self, spec: JobSpec) -> None:
        check_shell(spec)

    async def execute(self, ctx: RunContext) -> ExecResult:
        bad = _unstartable(ctx)
        if bad is not None:
            return ExecResult(ok=False, retry=False, error=bad)
        limits = validate_limits(ctx.job.options)
        out = _Capture(limits, ctx.data_dir, ctx.run_id, "stdout")
        err = _Capture(limits, ctx.data_dir, ctx.run_id, "stderr")
        env = procs.environ()
        env.update(
            {
                "SHEPHERD_RUN_ID": str(ctx.run_id),
                "SHEPHERD_DISPATCH_ID": str(ctx.dispatch_id),
                "SHEPHERD_ATTEMPT": str(ctx.attempt),
                "SHEPHERD_IDEMPOTENCY_KEY": ctx.idempotency_key or "",
                "SHEPHERD_PAYLOAD": msgspec.json.encode(ctx.payload).decode(),
            }
        )
        proc = await procs.spawn_group(
            self._shell,
            ctx.job.target,
            run_id=ctx.run_id,
            registry=ctx.host,
            env=env,
            cwd=ctx.job.options.get("cwd"),
        )
        ctx.report(pid=proc.pid)
        try:
            async with anyio.create_task_group() as tg:  # stderr beside, stdout here
                tg.start_soon(_pump, proc.stderr, err, ctx)
                ctx.heartbeat()
                await _pump(proc.stdout, out, ctx)
            code = await proc.wait()
        finally:
            await procs.end_group(proc)
            out.close()
            err.close()
            so, se = _record(ctx, proc, out.result(), err.result())
        message = None if code == 0 else shell_error_message(exit_code=code)
        summary = truncate_utf8(
            shell_output_text(
                so.excerpt, se.excerpt, error_message=message,
                stdout_path=so.offloaded, stdout_bytes=so.bytes,
                stderr_path=se.offloaded, stderr_bytes=se.bytes,
            ),
            limits.summary,
        )  # fmt: skip
        result = {"exit_code": code, "summary": summary}
        if code == 0:
            return ExecResult(ok=True, result=result)
        tail = se.text.strip()[-500:] or so.text.strip()[-500:]
        return ExecResult(ok=False, error=f"{message}: {tail}" if tail else message, result=result)

    def __repr__(self) -> str:
        return f"<ShellExecutor {self._shell}>"


def _unstartable(ctx: RunContext) -> str | None:
    """Why the OS cannot start this run (its job stored before the check), or None."""
    cwd = ctx.job.options.get("cwd")
    try:
        check_os_text(ctx.job.target, field="target")
        if isinstance(cwd, str):
            check_os_text(cwd, field="options.cwd")
        check_os_text(ctx.idempotency_key or "", field="idempotency_key")
    except ConfigError as exc:
        return f"cannot start the command: {exc}"
    return None


def _record(
    ctx: RunContext, proc: child.Child, out: StreamResult, err: StreamResult
) -> tuple[StreamResult, StreamResult]:
    code = proc.returncode
    details: dict[str, Any] = {
        **(ctx.reported.get("details") or {}),
        "stdout_bytes": out.bytes,
        "stderr_bytes": err.bytes,
    }
    for name, stream in (("stdout", out), ("stderr", err)):
        if stream.offloaded is not None:
            details[f"{name}_path"] = str(stream.offloaded)
        if stream.truncated:
            details[f"{name}_truncated"] = True
    ctx.report(
        exit_code=code if code is not None and code >= 0 else None,
        signal=-code if code is not None and code < 0 else None,
        stdout=out.text,
        stderr=err.text,
        details=details,
    )
    return out, err
