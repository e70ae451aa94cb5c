"""Output limits, shell result text and the delivery decision.

Pure functions except :func:`normalize_stream`, which writes the offload artifact
(small blocking file I/O; async callers run it in a worker thread).

Semantics (OCS, SEMANTICS.md §2.5, §2.6 and finalizeDispatch step 4):

- Limits per job (bytes): store 65536, excerpt 2000, summary 5000, offload threshold
  65536, set through ``options.output_store`` / ``output_excerpt`` / ``output_summary``
  / ``output_offload``.
- Truncation trims first, never splits a UTF-8 character and keeps the marker
  ``"\\n...[truncated]"`` inside the byte budget. (OCS counted UTF-16 units and kept
  24 of them for the marker; we count bytes exactly, as its own docs promise.)
- A stream longer than the offload threshold is written in full to an artifact file and
  only an excerpt is stored; otherwise it is stored up to the store limit.
- Shell delivery text is ``"stdout:\\n<excerpt>\\n\\nstderr:\\n<excerpt>"`` (plus an
  ``[stdout offloaded: <path> (<n> bytes)]`` line), else the error message, else
  ``"(no output)"``; failures are prefixed ``"⚠️ Shell job failed: <name>\\n\\n"``.
"""

from __future__ import annotations

import pathlib
import signal as _signal
from collections.abc import Mapping
from typing import Any

import msgspec

from shepherd.store.bounds import Range, check_value
from shepherd.store.errors import ConfigError

__all__ = [
    "DELIVERY_MODES",
    "OUTPUT_BYTES",
    "OUTPUT_OPTIONS",
    "TRUNCATION_MARKER",
    "OutputLimits",
    "StreamResult",
    "delivery_decision",
    "normalize_stream",
    "shell_delivery_text",
    "shell_error_message",
    "shell_output_text",
    "soft_failed_text",
    "truncate_utf8",
    "validate_limits",
]

TRUNCATION_MARKER = "\n...[truncated]"
DELIVERY_MODES: tuple[str, ...] = ("none", "announce", "announce-always")
_WARN = "\u26a0\ufe0f"  # ⚠️ (U+26A0 + variation selector), as OCS sends it


def _cut(data: bytes, max_bytes: int) -> str:
    """The longest prefix of ``data`` within ``max_bytes`` that ends on a character."""
    end = max(0, min(max_bytes, len(data)))
    while 0 < end < len(data) and (data[end] & 0xC0) == 0x80:
        end -= 1  # step back over UTF-8 continuation bytes
    return data[:end].decode("utf-8", errors="replace")


def truncate_utf8(text: str, max_bytes: int, marker: str = TRUNCATION_MARKER) -> str:
    """``text.strip()`` cut to at most ``max_bytes`` UTF-8 bytes, marker included.

    If the budget cannot even hold the marker, the text is cut hard without it.
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must be >= 0")
    trimmed = text.strip()
    data = trimmed.encode("utf-8", errors="replace")
    if len(data) <= max_bytes:
        return trimmed
    marker_bytes = len(marker.encode("utf-8"))
    if marker_bytes >= max_bytes:
        return _cut(data, max_bytes)
    return _cut(data, max_bytes - marker_bytes) + marker


class OutputLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Byte budgets for captured output."""

    store: int = 65536  # stored on the run row
    excerpt: int = 2000  # shown in deliveries / stored when offloaded
    summary: int = 5000  # the run summary
    offload: int = 65536  # above this the full stream goes to an artifact file


_LIMIT_KEYS = (
    ("store", "output_store"),
    ("excerpt", "output_excerpt"),
    ("summary", "output_summary"),
    ("offload", "output_offload"),
)
OUTPUT_OPTIONS = frozenset(key for _, key in _LIMIT_KEYS)
OUTPUT_BYTES = Range(1, 64 * 1024 * 1024)  # each output_* option, in bytes


def validate_limits(options: Mapping[str, Any]) -> OutputLimits:
    """Read ``options.output_*`` over the defaults; ConfigError names the bad field.

    Rules: each an int of 1 byte to 64 MiB (``OUTPUT_BYTES``); excerpt ≤ store;
    summary ≥ excerpt. (OCS also has minimums of 128/64/64/128 bytes; we do not impose
    them, tiny limits are legal.)
    """
    defaults = OutputLimits()
    values: dict[str, int] = {}
    for attr, key in _LIMIT_KEYS:
        raw = options.get(key, getattr(defaults, attr))
        check_value(raw, OUTPUT_BYTES, field=f"options.{key}", integer=True)
        values[attr] = raw
    if values["excerpt"] > values["store"]:
        raise ConfigError(
            f"must not exceed output_store ({values['store']}), got {values['excerpt']}",
            field="options.output_excerpt",
        )
    if values["summary"] < values["excerpt"]:
        raise ConfigError(
            f"must be >= output_excerpt ({values['excerpt']}), got {values['summary']}",
            field="options.output_summary",
        )
    return OutputLimits(**values)


class StreamResult(msgspec.Struct, frozen=True, kw_only=True):
    """One captured stream (stdout or stderr) after normalisation."""

    text: str  # what is stored on the run
    excerpt: str  # what deliveries show (excerpt limit)
    bytes: int  # size of the raw stream
    offloaded: pathlib.Path | None = None  # where the full stream was written
    truncated: bool = False  # ``text`` is shorter than the trimmed stream


def normalize_stream(
    data: bytes, limits: OutputLimits, artifact_path: pathlib.Path | None
) -> StreamResult:
    """Offload a large stream to ``artifact_path`` and cut what is stored.

    Offloads when ``len(data) > limits.offload``, a path is given and the stream is not
    blank; the stored text is then cut to the excerpt limit, else to the store limit.
    """
    decoded = data.decode("utf-8", errors="replace")
    trimmed_bytes = len(decoded.strip().encode("utf-8", errors="replace"))
    offloaded: pathlib.Path | None = None
    if len(data) > limits.offload and artifact_path is not None and decoded.strip():
        artifact_path.parent.mkdir(parents=True, exist_ok=True)
        artifact_path.write_bytes(data)
        offloaded = artifact_path
    store_limit = min(limits.store, limits.excerpt) if offloaded else limits.store
    return StreamResult(
        text=truncate_utf8(decoded, store_limit),
        excerpt=truncate_utf8(decoded, limits.excerpt),
        bytes=len(data),
        offloaded=offloaded,
        truncated=trimmed_bytes > store_limit,
    )


def shell_error_message(
    *,
    exit_code: int | None,
    timed_out: bool = False,
    timeout_ms: int | None = None,
    signal: int | str | None = None,
    raw: str | None = None,
) -> str:
    """OCS wording for a failed shell run. A negative ``exit_code`` is a signal number."""
    if timed_out:
        return (
            f"Shell command timed out after {timeout_ms}ms"
            if timeout_ms is not None
            else "Shell command timed out"
        )
    if exit_code is not None and exit_code >= 0:
        return f"Shell exited with code {exit_code}"
    if signal is None and exit_code is not None:
        signal = -exit_code
    if isinstance(signal, int):
        try:
            signal = _signal.Signals(signal).name
        except ValueError:
            pass
    if signal is not None:
        return f"Shell terminated by signal {signal}"
    return raw or "Shell command failed"


def _block(label: str, excerpt: str, path: pathlib.Path | str | None, nbytes: int) -> str:
    parts: list[str] = []
    if excerpt:
        parts += [f"{label}:", excerpt]
    if path is not None:
        parts.append(f"[{label} offloaded: {path} ({nbytes} bytes)]")
    return "\n".join(parts)


def shell_output_text(
    stdout_excerpt: str,
    stderr_excerpt: str,
    *,
    error_message: str | None = None,
    stdout_path: pathlib.Path | str | None = None,
    stdout_bytes: int = 0,
    stderr_path: pathlib.Path | str | None = None,
    stderr_bytes: int = 0,
) -> str:
    """OCS ``deliveryText``: the output blocks, else the error, else ``"(no output)"``.

    The run summary is ``truncate_utf8(shell_output_text(...), limits.summary)``.
    """
    blocks = [
        b
        for b in (
            _block("stdout", stdout_excerpt.strip(), stdout_path, stdout_bytes),
            _block("stderr", stderr_excerpt.strip(), stderr_path, stderr_bytes),
        )
        if b
    ]
    if not blocks and error_message:
        blocks.append(error_message)
    return "\n\n".join(blocks).strip() or "(no output)"


def shell_delivery_text(
    job_name: str,
    ok: bool,
    stdout_text: str,
    stderr_text: str,
    exit_code: int | None,
    timed_out: bool,
    error: str | None,
    *,
    stdout_path: pathlib.Path | str | None = None,
    stdout_bytes: int = 0,
    stderr_path: pathlib.Path | str | None = None,
    stderr_bytes: int = 0,
    excerpt_limit: int = OutputLimits().excerpt,
    timeout_ms: int | None = None,
) -> str:
    """The announce text for a shell run: output excerpts, prefixed when it failed.

    ``error`` is the error message if the caller has one; for a failure without one it
    is derived from ``exit_code`` / ``timed_out``. OCS adds the prefix only in
    ``announce-always`` mode; we add it to every failure so the reader knows.
    """
    message = error
    if not ok and not message:
        message = shell_error_message(
            exit_code=exit_code, timed_out=timed_out, timeout_ms=timeout_ms
        )
    body = shell_output_text(
        truncate_utf8(stdout_text, excerpt_limit),
        truncate_utf8(stderr_text, excerpt_limit),
        error_message=message,
        stdout_path=stdout_path,
        stdout_bytes=stdout_bytes,
        stderr_path=stderr_path,
        stderr_bytes=stderr_bytes,
    )
    prefix = "" if ok else f"{_WARN} Shell job failed: {job_name}\n\n"
    return prefix + body


def delivery_decision(mode: str, executor: str, ok: bool) -> bool:
    """Whether a finished run is announced through the job's delivery sink.

    ``none`` never; ``announce-always`` always; ``announce`` only failures, and never
    for ``event`` / ``main`` runs. ``watchdog`` never uses job-level delivery (its
    alerts go to the watchdog's own alert target). Unknown modes raise ConfigError.
    """
    if mode not in DELIVERY_MODES:
        raise ConfigError(
            f"unknown delivery mode {mode!r}; expected one of {', '.join(DELIVERY_MODES)}",
            field="delivery_mode",
        )
    if mode == "none" or executor == "watchdog":
        return False
    if mode == "announce-always":
        return True
    if executor in ("event", "main"):
        return False
    return not ok


def soft_failed_text(job_name: str, content: str, will_retry: bool) -> str:
    """finalizeDispatch's text for a failed run delivered without an override."""
    label = "will retry" if will_retry else "no retries configured"
    return f"{_WARN} Job soft-failed ({label}): {job_name}\n\n{content}"
