"""Log formatting for the daemon: text lines or JSON lines, both with secrets redacted.

``text``: ``<ISO UTC time> <LEVEL> <logger> <message>``. ``json``: one object per line
with ``ts``, ``level``, ``logger``, ``msg``, and the fields a record concerns:
``event`` (a message's leading dotted word, ``run.finished``), ``dispatch_id``,
``run_id``, ``job`` and the other ``key=value`` pairs of the message (the daemon's
messages are written that way: ``run.finished dispatch=12 run=40 job=nightly ...``),
plus whatever a caller passed as ``extra={...}`` under those names; ``exc`` holds a
traceback. A bearer token or an ``Authorization`` value is never written, whatever
logged it: both formats replace it with ``[redacted]``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec

from shepherd.runtime._cli_fmt import iso

__all__ = ["JsonFormatter", "TextFormatter", "fields_of", "redact"]

_SECRET = re.compile(
    r"(?i)(bearer\s+|authorization[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?|token[\"']?\s*[:=]\s*[\"']?)"
    r"[^\s\"',;]+"
)
_PAIR = re.compile(r"(\w+)=(\"[^\"]*\"|\S+)")
_EVENT = re.compile(r"^([a-z_]+(?:\.[a-z_]+)+)(?:\s|$)")
# the daemon's short keys -> the names JSON lines carry
_RENAME = {"dispatch": "dispatch_id", "run": "run_id"}
_EXTRA = ("dispatch_id", "run_id", "job", "attempt", "agent", "outcome", "status")
_RESERVED = {"ts", "level", "logger", "msg", "exc", "event"}


def redact(text: str) -> str:
    """``text`` with bearer tokens and Authorization / token values replaced."""
    return _SECRET.sub(r"\1[redacted]", text)


def _value(raw: str) -> Any:
    if raw.startswith('"') and raw.endswith('"'):
        return raw[1:-1]
    if raw.isdigit():
        return int(raw)
    return raw


def fields_of(msg: str) -> dict[str, Any]:
    """The ``event`` and ``key=value`` fields of one log message."""
    out: dict[str, Any] = {}
    m = _EVENT.match(msg)
    if m:
        out["event"] = m.group(1)
    for key, raw in _PAIR.findall(msg):
        name = _RENAME.get(key, key)
        if name not in _RESERVED:
            out[name] = _value(raw)
    return out


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso(record.created) or ""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = redact(record.getMessage())
        out: dict[str, Any] = {
            "ts": iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": msg,
        }
        out.update(fields_of(msg))
        for name in _EXTRA:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return msgspec.json.encode(out, enc_hook=repr).decode()
