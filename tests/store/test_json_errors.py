"""``json_problem``: msgspec's "Input data was truncated" said plainly when the input is
not cut short (empty, an unpaired surrogate escape, complete JSON), kept when it is."""

from __future__ import annotations

import msgspec
import pytest

from shepherd.store.json_errors import json_problem


def _problem(data: bytes) -> str:
    with pytest.raises(msgspec.DecodeError) as info:
        msgspec.json.decode(data)
    return json_problem(data, str(info.value))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "it is empty"),
        (b" \n\t", "it is empty"),
        (b'{"a": "\\ud800"}', "an unpaired surrogate escape \\ud800 at byte 7"),
        (b'["\\ud83d\\ude00", "\\udbff"]', "an unpaired surrogate escape \\udbff at byte 18"),
        (b'{"a": 1', "Input data was truncated"),  # really cut short
        (b'{"a": "\\\\', "Input data was truncated"),  # an escaped backslash, cut
    ],
)
def test_what_msgspec_calls_truncated(data: bytes, expected: str) -> None:
    assert _problem(data).startswith(expected)


def test_other_errors_keep_msgspec_s_message() -> None:
    assert json_problem(b'{"a" 1}', "JSON is malformed: expected ':' (byte 5)") == (
        "JSON is malformed: expected ':' (byte 5)"
    )
    assert msgspec.json.decode(b'"\\\\ud800"') == "\\ud800"  # escaped: no surrogate at all
