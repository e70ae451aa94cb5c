"""What is wrong with JSON that msgspec could not decode, said plainly.

msgspec answers "Input data was truncated" for input that is empty, and for a string
holding a high surrogate escape (``\\ud800``) that no low one follows, though the
input is complete. :func:`json_problem` tells those apart from a real truncation: an
empty input says it is empty, an unpaired surrogate escape is named with its byte
offset, other complete input (the standard library's parser reads it) says so; any
other error keeps msgspec's own message. Every edge that decodes JSON with
msgspec (an HTTP body, a spool file, a spawn message's body) words its error with it.
"""

from __future__ import annotations

import re

__all__ = ["json_problem"]

# every escape in order, so an escaped backslash (``\\\\``) is consumed whole and never
# read as the start of the ``\\u`` after it
_ESCAPE = re.compile(rb"\\(?:u([0-9A-Fa-f]{4})|.)", re.DOTALL)


def json_problem(data: bytes | memoryview, message: str) -> str:
    """Why ``data`` is not JSON, given msgspec's ``message`` about it."""
    raw = bytes(data)
    if not raw.strip():
        return "it is empty"
    if "truncated" not in message:
        return message
    bad = _unpaired_surrogate(raw)
    if bad is not None:
        escape, at = bad
        return (
            f"an unpaired surrogate escape {escape} at byte {at} (a high surrogate"
            " \\ud800-\\udbff must be followed by a low one \\udc00-\\udfff)"
        )
    if _complete(raw):
        return f"it is complete JSON, yet not decodable ({message})"
    return message


def _complete(raw: bytes) -> bool:
    import json  # only for input already refused: rare

    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return True


def _unpaired_surrogate(raw: bytes) -> tuple[str, int] | None:
    """The first ``\\uXXXX`` escape of a surrogate that is not half of a pair, and its
    byte offset; None when there is none."""
    pending: tuple[str, int, int] | None = None  # a high surrogate: escape, start, end
    for m in _ESCAPE.finditer(raw):
        hexits = m.group(1)
        code = int(hexits, 16) if hexits is not None else None
        if pending is not None:
            if code is not None and 0xDC00 <= code <= 0xDFFF and m.start() == pending[2]:
                pending = None
                continue
            return pending[0], pending[1]
        if code is None:
            continue
        if 0xD800 <= code <= 0xDBFF:
            pending = (m.group(0).decode("ascii"), m.start(), m.end())
        elif 0xDC00 <= code <= 0xDFFF:
            return m.group(0).decode("ascii"), m.start()
    return (pending[0], pending[1]) if pending is not None else None
