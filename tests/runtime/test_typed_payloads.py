"""Typed payloads and the ``Targets`` registry, embedded.

- a target registered with ``payload=Report`` gets a ``Report`` as ``ctx.payload``; an
  untyped one keeps the dict;
- ``enqueue``, ``enqueue_many`` and ``run_now`` refuse a payload that does not fit,
  naming the field (``payload.to``, ``requests[1].payload.to``), and store nothing;
- a Struct can be passed as the payload;
- ``add_job`` refuses a default payload that does not fit (an empty one on an
  unscheduled job means "no default"; a scheduled job's default must fit);
- a payload stored by a process that did not know the type fails its run at once,
  not retried, naming the field;
- ``Targets``: decorator forms, a sync function is refused, ``load_app`` errors name
  the module and the attribute.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import msgspec
import pytest

from shepherd import Config, ConfigError, EnqueueRequest, JobSpec, Runtime, Targets
from shepherd.runtime.cli import main
from shepherd.runtime.targets import load_app

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]


class Report(msgspec.Struct):
    to: str
    copies: int = 1


targets = Targets()
seen: list[object] = []


@targets.task("report", payload=Report)
async def report(ctx: object) -> dict[str, object]:
    payload = ctx.payload  # type: ignore[attr-defined]
    seen.append(payload)
    return {"to": payload.to, "copies": payload.copies}


@targets.task
async def untyped(ctx: object) -> object:
    seen.append(ctx.payload)  # type: ignore[attr-defined]
    return None


def _open(db_path: str) -> object:
    return Runtime.open(Config(database=db_path, shutdown_grace=0), targets=targets)


async def _count(rt: Runtime) -> int:
    stats = await rt.stats()
    return int(sum(stats["dispatches"].values()))


async def test_a_typed_target_gets_its_struct_and_an_untyped_one_a_dict(db_path: str) -> None:
    seen.clear()
    async with Runtime.open(Config(database=db_path), targets=targets) as rt:
        await rt.add_job(JobSpec(name="report", target="report"))
        await rt.add_job(JobSpec(name="untyped", target="untyped"))
        a = await rt.wait(await rt.enqueue("report", {"to": "ops"}), timeout=10)
        b = await rt.wait(await rt.enqueue("report", Report(to="dev", copies=3)), timeout=10)
        c = await rt.wait(await rt.enqueue("untyped", {"x": 1}), timeout=10)
    assert (a.status, a.result) == ("done", {"to": "ops", "copies": 1})
    assert (b.status, b.result) == ("done", {"to": "dev", "copies": 3})
    assert c.status == "done"
    assert seen == [Report("ops"), Report("dev", 3), {"x": 1}]


async def test_a_payload_that_does_not_fit_is_refused_before_it_is_stored(db_path: str) -> None:
    async with Runtime.open(Config(database=db_path), targets=targets) as rt:
        await rt.add_job(JobSpec(name="report", target="report"))
        with pytest.raises(ConfigError, match=r"^payload\.to: Expected str, got int$"):
            await rt.enqueue("report", {"to": 5})
        with pytest.raises(ConfigError, match=r"^payload\.to: required field missing$"):
            await rt.enqueue("report")  # the job's default ({}) does not fit either
        with pytest.raises(ConfigError, match=r"^payload\.to: required field missing$"):
            await rt.run_now("report", {"copies": 2})
        good = EnqueueRequest(job="report", payload={"to": "a"})
        bad = EnqueueRequest(job="report", payload={"to": "b", "copies": "x"})
        with pytest.raises(ConfigError, match=r"^requests\[1\]\.payload\.copies: Expected int"):
            await rt.enqueue_many([good, bad])
        assert await _count(rt) == 0  # nothing stored, not even the good one
        assert len(await rt.enqueue_many([good, good])) == 2


async def test_add_job_checks_a_default_payload_against_the_type(db_path: str) -> None:
    async with Runtime.open(Config(database=db_path), targets=targets) as rt:
        with pytest.raises(ConfigError, match=r"^payload\.to: Expected str, got int$"):
            await rt.add_job(JobSpec(name="r", target="report", payload={"to": 1}))
        with pytest.raises(ConfigError, match=r"^payload\.to: required field missing$"):
            await rt.add_job(JobSpec(name="r", target="report", every=60.0))  # type: ignore[arg-type]
        await rt.add_job(JobSpec(name="r", target="report", payload={"to": "ops"}, every=60.0))  # type: ignore[arg-type]
        assert (await rt.get_job("r")).spec.payload == {"to": "ops"}


async def test_a_stored_payload_that_does_not_fit_fails_at_once(db_path: str) -> None:
    # stored by the CLI without --app: it does not know the type
    cli = ["--database", db_path]
    assert await anyio.to_thread.run_sync(main, [*cli, "jobs", "add", "report"]) == 0
    argv = [*cli, "enqueue", "report", "--payload", '{"to": 5}', "--json"]
    assert await anyio.to_thread.run_sync(main, argv) == 0
    dispatch_id = 1
    async with Runtime.open(Config(database=db_path), targets=targets) as rt:
        final = await rt.wait(dispatch_id, timeout=10)
        runs = await rt.runs(dispatch_id=dispatch_id)
    assert final.status == "dead" and final.attempt == 1  # not retried
    assert "payload does not fit Report: payload.to: Expected str, got int" in (
        final.last_error or ""
    )
    assert len(runs) == 1


def test_targets_decorator_forms_and_refusals() -> None:
    t = Targets()

    @t.task
    async def a(ctx: object) -> None: ...

    @t.task()
    async def b(ctx: object) -> None: ...

    @t.task("named", payload=Report)
    async def c(ctx: object) -> None: ...

    assert list(t) == ["a", "b", "named"] and "named" in t and len(t) == 3
    with pytest.raises(ConfigError, match="target 'sync' is not an async callable"):

        @t.task
        def sync(ctx: object) -> None: ...

    with pytest.raises(ConfigError, match=r"must be a msgspec\.Struct class"):
        t.register("x", a, payload=dict)  # type: ignore[arg-type]


def test_load_app_names_module_and_attribute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (tmp_path / "typed_app_mod.py").write_text(
        "from shepherd import Targets\n"
        "targets = Targets()\n"
        "async def go(ctx): return 1\n"
        "targets.register('go', go)\n"
        "plain = {'go': go}\n"
        "bad = {'go': len}\n"
    )
    assert list(load_app("typed_app_mod:targets")) == ["go"]  # cwd made importable
    assert list(load_app("typed_app_mod:plain")) == ["go"]
    with pytest.raises(ConfigError, match=r"^app: module 'typed_app_mod' has no attribute 'x'"):
        load_app("typed_app_mod:x")
    with pytest.raises(ConfigError, match=r"'typed_app_mod:bad': target 'go' is not an async"):
        load_app("typed_app_mod:bad")
    with pytest.raises(ConfigError, match=r"^app: no module named 'typed_app_nope'"):
        load_app("typed_app_nope:targets")


async def test_a_bad_app_in_the_config_opens_nothing(db_path: str) -> None:
    with pytest.raises(ConfigError, match=r"^app: no module named 'no_such_app_pkg'"):
        async with Runtime.open(Config(database=db_path, app="no_such_app_pkg.x:targets")):
            pass
    assert not await anyio.Path(db_path).exists()
