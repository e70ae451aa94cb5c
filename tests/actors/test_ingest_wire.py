"""The enqueue socket's frames: splitting a byte stream, decoding a request, and the
error answer of one that does not decode (naming the field, keeping its id)."""

from __future__ import annotations

import msgspec
import pytest

from shepherd.actors.ingest_stream import answer_for
from shepherd.actors.ingest_wire import (
    MAX_FRAME,
    Answer,
    EnqueueItem,
    decode_item,
    frame,
    split_frames,
    stream_path,
)
from shepherd.store.errors import ConfigError, NotFound

enc = msgspec.msgpack.encode


def test_split_frames_takes_whole_frames_and_keeps_the_rest() -> None:
    data = frame(b"one") + frame(b"") + frame(b"three")
    buf = bytearray(data[:-2])
    assert split_frames(buf) == [b"one", b""]
    assert bytes(buf) == data[len(frame(b"one") + frame(b"")) : -2]
    buf += data[-2:]
    assert split_frames(buf) == [b"three"] and buf == bytearray()
    assert split_frames(bytearray(b"\x00\x00")) == []  # half a header waits


def test_a_frame_longer_than_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="bytes"):
        split_frames(bytearray((MAX_FRAME + 1).to_bytes(4, "big")))


def test_decode_item_returns_the_request_or_an_error_answer_naming_the_field() -> None:
    item = decode_item(enc(EnqueueItem(id=7, job="j", delay=1.5)))
    assert isinstance(item, EnqueueItem) and (item.id, item.job, item.delay) == (7, "j", 1.5)
    bad = decode_item(enc({"id": 8, "job": "j", "max_attempts": "x"}))
    assert isinstance(bad, Answer) and (bad.id, bad.kind, bad.field) == (
        8,
        "ConfigError",
        "max_attempts",
    )
    assert bad.error is not None and bad.error.startswith("max_attempts: Expected `int")
    unknown = decode_item(enc({"id": 9, "job": "j", "colour": "red"}))
    assert isinstance(unknown, Answer) and unknown.id == 9 and "colour" in (unknown.error or "")
    garbage = decode_item(b"\xc1")
    assert isinstance(garbage, Answer) and garbage.id == 0 and garbage.kind == "ConfigError"


def test_answer_for_carries_the_id_the_duplicate_flag_or_the_error() -> None:
    assert answer_for(3, (41, True)) == Answer(id=3, dispatch=41, duplicate=True)
    err = answer_for(4, ConfigError("must be >= 0s", field="delay"))
    assert (err.kind, err.field, err.error) == ("ConfigError", "delay", "delay: must be >= 0s")
    assert answer_for(5, NotFound("no job named 'x'")).kind == "NotFound"


def test_the_socket_path_follows_the_database_file() -> None:
    assert stream_path("a.db") == stream_path("./a.db") != stream_path("b.db")
    assert stream_path("a.db").endswith(".sock") and len(stream_path("a.db")) < 100


def test_a_store_fault_keeps_its_class_across_the_socket() -> None:
    from shepherd.runtime.producer import error_of
    from shepherd.store.errors import DiskFull, StoreError

    got = error_of(answer_for(3, DiskFull("x.db: disk is full")))
    assert type(got) is DiskFull and "disk is full" in str(got)
    other = error_of(Answer(id=4, error="something else", kind="Mystery"))
    assert type(other) is StoreError
