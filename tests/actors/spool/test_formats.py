"""The spool file formats, loop-free: OpenClaw's spool event v1 exactly (strict), the
shepherd event, names, ordering, atomic writes and error files."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from shepherd.actors.spool import formats
from shepherd.store.errors import ConfigError

NOW = 1767225600.25  # 2026-01-01T00:00:00.250Z


def event(**over: Any) -> dict[str, Any]:
    ev = formats.build_event(
        {"version": 1, "payload": {"kind": "agentTurn", "message": "hello"}}, NOW
    )
    return {**ev, **over}


def parse(ev: Any, name: str | None = None, **kw: Any) -> formats.Accepted:
    kw.setdefault("default_job", "agent")
    data = ev if isinstance(ev, bytes) else json.dumps(ev).encode()
    return formats.parse(name or f"{ev['id']}.json", data, **kw)


def refused(ev: Any, name: str | None = None, **kw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(ev, name, **kw)
    return info.value


def test_build_event_is_openclaws_build_spool_event() -> None:
    ev = event()
    assert uuid.UUID(ev["id"])
    assert ev["createdAt"] == "2026-01-01T00:00:00.250Z"
    assert ev["createdAtMs"] == 1767225600250
    assert ev["retryCount"] == 0 and ev["version"] == 1
    assert formats.is_full_event(ev) and not formats.is_full_event({"version": 1})
    assert formats.openclaw_problem(ev) is None


def test_a_valid_openclaw_event_becomes_a_request_for_the_default_job() -> None:
    ev = event(
        priority="critical",
        maxRetries=2,
        retryCount=1,
        expiresAt="2026-01-02T00:00:00Z",
        payload={
            "kind": "agentTurn",
            "message": "hi",
            "agentId": "ops",
            "model": "m",
            "thinking": "low",
            "delivery": {"enabled": True, "channel": "slack", "to": "#ops"},
        },
    )
    got = parse(ev)
    req = got.request
    assert req.job == "agent" and req.kind == formats.KIND == "spool"
    assert req.idempotency_key == ev["id"]
    assert req.priority == "critical" and got.rank == 0
    assert req.max_attempts == 2  # maxRetries 2 allows 3 attempts, one spent already
    assert req.expires_at == 1767312000.0
    assert req.payload == {
        "message": "hi",
        "agent": "ops",
        "session_key": f"spool:{ev['id']}",
        "model": "m",
        "thinking": "low",
        "delivery": {"enabled": True, "channel": "slack", "to": "#ops"},
    }
    assert got.created == 1767225600.25


def test_unset_fields_take_openclaws_defaults() -> None:
    ev = event()
    del ev["retryCount"]
    got = parse(ev, max_retries=3)
    assert got.request.max_attempts == 4  # maxRetries=3 allows 4 attempts (OpenClaw)
    assert got.request.priority is None and got.rank == formats.priority_rank("normal")
    assert parse(event(maxRetries=0)).request.max_attempts == 1
    ev = event(payload={"kind": "agentTurn", "message": "x", "sessionKey": "s1"})
    assert parse(ev).request.payload == {"message": "x", "session_key": "s1"}


@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        (b"{not json", "file", "not JSON"),
        (b"", "file", "the file is empty"),
        (b" \n", "file", "the file is empty"),
        (
            b'{"job": "j", "payload": {"a": "\\ud800"}}',
            "file",
            "not JSON: an unpaired surrogate escape \\ud800 at byte 31",
        ),
        (b'{"job": "j"', "file", "not JSON: Input data was truncated"),  # really cut
        (b"[1, 2]", "file", "not a JSON object"),
        ({"x": 1}, "file", "neither"),
    ],
)
def test_not_an_event(data: Any, field: str, text: str) -> None:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    exc = refused(raw, "a.json")
    assert exc.field == field and text in str(exc)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"extra": 1}, "extra"),  # unknown top-level field
        ({"version": 2}, "version"),
        ({"createdAt": "2026-01-01T00:00:00"}, "createdAt"),  # no zone
        ({"createdAtMs": 0}, "createdAtMs"),
        ({"priority": "background"}, "priority"),  # not an OpenClaw level
        ({"priority": "urgent"}, "priority"),
        ({"maxRetries": -1}, "maxRetries"),
        ({"retryCount": 1.5}, "retryCount"),
        ({"expiresAt": "tomorrow"}, "expiresAt"),
        ({"payload": {"kind": "agentTurn", "message": ""}}, "payload.message"),
        ({"payload": {"kind": "systemEvent", "message": "x"}}, "payload.kind"),
        ({"payload": {"kind": "agentTurn", "message": "x", "agentId": None}}, "payload.agentId"),
        ({"payload": {"kind": "agentTurn", "message": "x", "more": 1}}, "payload.more"),
        (
            {"payload": {"kind": "agentTurn", "message": "x", "delivery": {"via": "x"}}},
            "payload.delivery.via",
        ),
        ({"retryCount": 4, "maxRetries": 3}, "retryCount"),  # no attempt left
    ],
)
def test_strict_openclaw_event(change: dict[str, Any], field: str) -> None:
    ev = event(**change)
    exc = refused(ev)
    assert exc.field == field, str(exc)
    assert formats.openclaw_problem(ev) is not None


def test_version_2_is_named() -> None:
    assert "unsupported version 2" in str(refused(event(version=2)))


def test_id_must_be_a_uuid_equal_to_the_file_name() -> None:
    ev = event()
    exc = refused(ev, f"{uuid.uuid4()}.json")
    assert exc.field == "id" and "differs from the file name" in str(exc)
    ev = event(id="not-a-uuid")
    assert refused(ev, "not-a-uuid.json").field == "id"


def test_no_default_job_rejects_agent_turns() -> None:
    exc = refused(event(), default_job=None)
    assert exc.field == "job" and "default_job" in str(exc)


def test_shepherd_event() -> None:
    data = {
        "job": "report",
        "payload": {"full": True},
        "priority": "background",
        "not_before": "2026-01-01T01:00:00+01:00",
        "expires_at": 1767312000,
        "max_attempts": 2,
    }
    got = formats.parse("r1.json", json.dumps(data).encode(), mtime=5.0)
    req = got.request
    assert (req.job, req.payload, req.priority) == ("report", {"full": True}, "background")
    assert req.not_before == 1767225600.0 and req.expires_at == 1767312000
    assert req.max_attempts == 2 and req.idempotency_key == "r1" and req.kind == "spool"
    assert got.created == 5.0 and got.rank == 4
    keyed = formats.parse("r2.json", b'{"job": "x", "idempotency_key": "k"}')
    assert keyed.request.idempotency_key == "k" and keyed.request.max_attempts is None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"job": ""}, "job"),
        ({"job": "x", "other": 1}, "other"),
        ({"job": "x", "max_attempts": 0}, "max_attempts"),
        ({"job": "x", "priority": "top"}, "priority"),
        ({"job": "x", "payload": [1]}, "payload"),
        ({"job": "x", "not_before": 1e30}, "not_before"),
        ({"job": "x", "idempotency_key": "a:replay1"}, "idempotency_key"),
    ],
)
def test_strict_shepherd_event(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        formats.parse("s.json", json.dumps(data).encode())
    assert info.value.field == field, str(info.value)


def test_names() -> None:
    assert formats.is_pending_name("a.json")
    for name in ("a.json.tmp.1f2e", "a.tmp", ".a.json", "a.txt"):
        assert not formats.is_pending_name(name), name
    assert formats.is_ignored("a.json.tmp.abc") and formats.is_ignored(".hidden")
    assert not formats.is_ignored("a.txt")  # read, and rejected: not a spool file name
    assert formats.error_name("a.json") == "a.json.error.json"
    assert formats.is_rejected_name("a.json") and not formats.is_rejected_name("a.json.error.json")
    with pytest.raises(ConfigError, match="not a spool file name"):
        formats.parse("notes.txt", b"{}")
    with pytest.raises(ConfigError, match="larger than"):
        formats.parse("big.json", b" " * (formats.MAX_FILE_BYTES + 1))


def test_batch_order_is_priority_then_oldest() -> None:
    def acc(name: str, prio: str | None, created: float) -> formats.Accepted:
        ev = event(createdAtMs=int(created * 1000))
        if prio:
            ev["priority"] = prio
        a = parse(ev)
        return formats.Accepted(name, a.request, a.rank, a.created)

    items = [acc("a", "low", 1), acc("b", None, 3), acc("c", "critical", 9), acc("d", "normal", 2)]
    items.append(acc("e", "high", 5))
    assert [a.name for a in formats.batch_order(items)] == ["c", "e", "d", "b", "a"]


def test_describe_is_lenient() -> None:
    d = formats.describe(event(priority="high", retryCount=2))
    assert (d.priority, d.retry_count, d.created_at) == ("high", 2, 1767225600.25)
    d = formats.describe({"priority": 5, "retryCount": "x"})
    assert (d.priority, d.retry_count, d.created_at) == ("normal", 0, None)
    assert formats.problem({"job": "x"}, "a.json") is None
    assert formats.problem({"version": 1}, "a.json") is not None


def test_write_event_is_atomic_and_leaves_no_temp(tmp_path: Path) -> None:
    ev = event()
    path = formats.write_event(tmp_path, ev)
    assert path == tmp_path / f"{ev['id']}.json"
    assert os.listdir(tmp_path) == [path.name]
    assert json.loads(path.read_text()) == ev
    parse(path.read_bytes(), path.name)  # what the watcher reads


def test_write_error(tmp_path: Path) -> None:
    exc = ConfigError("unknown field", field="extra")
    path = formats.write_error(tmp_path, "a.json", exc, NOW)
    assert path.name == "a.json.error.json"
    info = json.loads(path.read_text())
    assert info == {
        "file": "a.json",
        "error": "extra: unknown field",
        "field": "extra",
        "at": "2026-01-01T00:00:00.250Z",
        "atMs": 1767225600250,
    }
