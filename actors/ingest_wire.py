"""The enqueue socket's wire format, shared by the daemon (``actors.ingest_stream``) and
the producers of other processes (``runtime.producer``, ``shepherd enqueue``).

A connection carries frames both ways: a 4-byte big-endian length, then a msgpack body
(msgspec). A producer sends ``EnqueueItem`` frames, as many as it likes before reading
(pipelining); the daemon answers each with one ``Answer`` carrying the same ``id``,
once the dispatch is committed (``dispatch``) or refused (``error``, ``kind``,
``field``: the error the in-process ``Runtime.enqueue`` raises). Answers may come in
any order. A frame that does not decode gets an ``Answer`` with ``kind`` ``ConfigError``
(id 0 when even the id is unreadable); the connection stays usable.

The module imports nothing heavy: ``shepherd enqueue`` loads it, not the actor tree.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shepherd.actors.socket_path import runtime_path
from shepherd.store.bounds import TOO_DEEP

__all__ = [
    "HEADER",
    "MAX_FRAME",
    "Answer",
    "EnqueueItem",
    "decode_item",
    "frame",
    "split_frames",
    "stream_path",
]

HEADER = 4  # the length prefix, big-endian
MAX_FRAME = 16 * 1024 * 1024  # a longer frame ends the connection (a payload is smaller)


class EnqueueItem(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One enqueue, with ``Runtime.enqueue``'s arguments (``delay`` / ``expires_in`` are
    added to the daemon's clock, as in-process)."""

    id: int
    job: str
    payload: dict[str, Any] | None = None
    priority: str | None = None
    not_before: float | None = None
    delay: float | None = None
    expires_at: float | None = None
    expires_in: float | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None
    capabilities: list[str] | None = None
    owner: str | None = None

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ``Runtime.enqueue`` besides job and payload."""
        return {f: getattr(self, f) for f in _OPTIONS}


_OPTIONS = tuple(f for f in EnqueueItem.__struct_fields__ if f not in ("id", "job", "payload"))


class Answer(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The reply to ``EnqueueItem`` ``id``: its dispatch id, or the error."""

    id: int
    dispatch: int | None = None
    duplicate: bool = False  # ``dispatch`` is its idempotency key's existing one
    error: str | None = None
    kind: str | None = None  # the exception's class name (ConfigError, NotFound, ...)
    field: str | None = None  # ConfigError.field


class _Id(msgspec.Struct):
    id: int = 0


def stream_path(db_path: str) -> str:
    """The socket of the runtime serving ``db_path``: in the temp directory (a unix
    socket path is at most 107 bytes), named like the wake socket (``actors.socket_path``)."""
    return runtime_path(db_path, "sock")


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(HEADER, "big") + body


def split_frames(buf: bytearray) -> list[bytes]:
    """The complete frames at the front of ``buf``, removed from it. Raises ValueError
    for a frame longer than ``MAX_FRAME`` (the peer is not speaking this protocol)."""
    out: list[bytes] = []
    pos = 0
    while len(buf) - pos >= HEADER:
        size = int.from_bytes(buf[pos : pos + HEADER], "big")
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes (at most {MAX_FRAME})")
        if len(buf) - pos - HEADER < size:
            break
        out.append(bytes(buf[pos + HEADER : pos + HEADER + size]))
        pos += HEADER + size
    del buf[:pos]
    return out


_items = msgspec.msgpack.Decoder(EnqueueItem)
_ids = msgspec.msgpack.Decoder(_Id)


def decode_item(body: bytes) -> EnqueueItem | Answer:
    """The request in ``body``, or the error ``Answer`` for it (naming the field)."""
    try:
        return _items.decode(body)
    except msgspec.ValidationError as exc:
        error, field = _split_path(str(exc))
    except msgspec.DecodeError as exc:
        error, field = f"not a msgpack request ({exc})", None
    except RecursionError:
        error, field = f"the request is {TOO_DEEP}", None
    try:
        rid = _ids.decode(body).id
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        rid = 0
    shown = f"{field}: {error}" if field else error
    return Answer(id=rid, error=shown, kind="ConfigError", field=field)


def _split_path(message: str) -> tuple[str, str | None]:
    """msgspec's ``Expected int, got str - at `$.max_attempts``` → (message, field)."""
    text, sep, where = message.partition(" - at `$")
    if not sep:
        return message, None
    return text, where.rstrip("`").lstrip(".") or None
