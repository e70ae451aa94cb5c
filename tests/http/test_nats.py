"""[http.nats]: the event stream on Dispatch's task subjects, against a real NATS server
at 127.0.0.1:4222 (skipped when it is absent, unless SHEPHERD_REQUIRE_SERVICES=1).

- a run's queued, started and completed events arrive on
  ``<prefix>.task.<dispatch_id>.<event>`` as JSON with the stream's fields;
- a failed run publishes ``failed``; lease events published in the app go out too;
- with the server unreachable the runtime starts, runs, and counts what it dropped;
- ``subject_of`` maps each kind (a plain function).
"""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import anyio
import pytest

from shepherd import JobSpec
from shepherd.actors.nats import subject_of
from shepherd.runtime.http.config import NatsConfig
from shepherd.runtime.http.events import hub_of
from tests.conftest import REQUIRE_SERVICES
from tests.helpers import eventually
from tests.http_helpers import serve

pytestmark = pytest.mark.anyio

URL = "nats://127.0.0.1:4222"


def _nats_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=1.0):
            return True
    except OSError:
        return False


needs_nats = pytest.mark.skipif(
    not _nats_up() and not REQUIRE_SERVICES, reason="no NATS server at 127.0.0.1:4222"
)


async def noop(payload: dict[str, Any]) -> None:
    return None


async def boom(payload: dict[str, Any]) -> None:
    raise ValueError("no")


TARGETS = {"noop": noop, "boom": boom}


@needs_nats
async def test_a_runs_events_arrive_on_task_subjects(db_path: str) -> None:
    import nats

    prefix = f"t{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(URL)
    got: list[tuple[str, dict[str, Any]]] = []

    async def heard(msg: Any) -> None:
        got.append((msg.subject, json.loads(msg.data)))

    try:
        await nc.subscribe(f"{prefix}.>", cb=heard)
        await nc.flush()
        nats_cfg = NatsConfig(url=URL, prefix=prefix)
        async with serve(db_path, http={"nats": nats_cfg}, open={"targets": TARGETS}) as srv:
            rt = srv.rt
            publisher = rt._actors["nats"]
            await eventually(lambda: publisher.statistics()["connected"], what="connected")
            await rt.add_job(JobSpec(name="noop", target="noop"))
            await rt.add_job(JobSpec(name="boom", target="boom"))
            ok = await rt.enqueue("noop", {})
            bad = await rt.enqueue("boom", {}, max_attempts=1)
            await rt.wait(ok)
            await rt.wait(bad)
            hub = hub_of(rt.asgi_app)
            assert hub is not None
            hub.publish("lease", {"run_id": 9, "dispatch_id": ok, "job": "noop",
                                  "agent": "a1", "event": "progress"})  # fmt: skip
            want = {
                f"{prefix}.task.{ok}.queued",
                f"{prefix}.task.{ok}.started",
                f"{prefix}.task.{ok}.completed",
                f"{prefix}.task.{ok}.progress",
                f"{prefix}.task.{bad}.failed",
            }
            await eventually(lambda: want <= {s for s, _ in got}, what=f"{want} on NATS")
            stats = publisher.statistics()
            assert stats["published"] >= 6 and stats["offline_dropped"] == 0
        by_subject = dict(got)
        done = by_subject[f"{prefix}.task.{ok}.completed"]
        assert done["kind"] == "outcome" and done["outcome"] == "ok" and done["job"] == "noop"
        assert done["dispatch_id"] == ok and isinstance(done["seq"], int)
        started = by_subject[f"{prefix}.task.{ok}.started"]
        assert started["seq"] < done["seq"]
        assert by_subject[f"{prefix}.task.{bad}.failed"]["status"] == "dead"
    finally:
        await nc.close()


async def test_an_unreachable_server_never_stops_dispatch(db_path: str) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nats_cfg = NatsConfig(url=f"nats://127.0.0.1:{port}", prefix="x")
    async with serve(db_path, http={"nats": nats_cfg}, open={"targets": TARGETS}) as srv:
        rt = srv.rt
        await rt.add_job(JobSpec(name="noop", target="noop"))
        with anyio.fail_after(20):
            final = await rt.wait(await rt.enqueue("noop", {}))
        assert final.status == "done"
        publisher = rt._actors["nats"]
        await eventually(lambda: publisher.statistics()["offline_dropped"] >= 3, what="drops")
        assert publisher.statistics()["connected"] is False
        assert publisher.statistics()["errors"] >= 1


def test_subjects() -> None:
    assert subject_of("p", "dispatch", {"dispatch_id": 4, "state": "queued"}) == "p.task.4.queued"
    assert (
        subject_of("p", "dispatch", {"dispatch_id": 4, "state": "awaiting_approval"})
        == "p.task.4.awaiting_approval"
    )
    assert subject_of("p", "run_started", {"dispatch_id": 4}) == "p.task.4.started"
    outcomes = {"ok": "completed", "error": "failed", "crashed": "failed",
                "timeout": "timeout", "cancelled": "cancelled", "skipped": "skipped"}  # fmt: skip
    for outcome, event in outcomes.items():
        data = {"dispatch_id": 4, "outcome": outcome}
        assert subject_of("p", "outcome", data) == f"p.task.4.{event}"
    assert subject_of("p", "slot", {"dispatch_id": None, "job": "a.b c"}) == "p.job.a_b_c.skipped"
    assert subject_of("p", "slot", {"dispatch_id": 5, "job": "a"}) == "p.task.5.skipped"
    lease = {"run_id": 3, "event": "claimed"}
    assert subject_of("p", "lease", lease) == "p.run.3.assigned"
    assert subject_of("p", "lease", {**lease, "dispatch_id": 2}) == "p.task.2.assigned"
    assert subject_of("p", "lease", {"run_id": 3, "event": "expired"}) == "p.run.3.lease_expired"
    assert subject_of("p", "lease", {"event": "stale"}) is None
    assert subject_of("p", "other", {"dispatch_id": 1}) is None


async def test_a_bad_prefix_is_refused_at_start(db_path: str) -> None:
    from shepherd import ConfigError

    nats_cfg = NatsConfig(url=URL, prefix="swarm.*")
    with pytest.raises(ConfigError) as err:
        async with serve(db_path, http={"nats": nats_cfg}):
            pass
    assert err.value.field == "http.nats.prefix"
