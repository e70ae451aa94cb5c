"""Importing an openclaw-scheduler database (README "Switching from openclaw-scheduler"),
beside storing the same jobs the other ways, in the same run.

Per size (30 and 1,000 jobs: cron jobs of every executor in several zones, one in ten
a chain child, one queued dispatch per ten jobs):

- ``import``: ``shepherd import ocs`` as the CLI runs it (read the OCS file read-only,
  map, validate, one transaction), ms for the whole import into a fresh database;
- ``jobs add --file``: the imported jobs exported as TOML and added as ``jobs add
  --file`` adds them (decode, validate, one batch), ms;
- ``add_job``: the same specs saved one by one through ``Runtime.add_job``, ms;
- ``import again``: the same file imported a second time (everything ``unchanged``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import tomli_w

from bench.context import BenchContext
from bench.report import Result
from shepherd.runtime import Config, Runtime
from shepherd.runtime._cli_import import import_ocs
from shepherd.runtime._cli_jobs import load_job_file, save_jobs
from shepherd.runtime.config import load_config
from shepherd.store import factory
from shepherd.store.models import JobSpec, to_builtins
from tests.ocs_import.fixture import OcsDb, text

SCENARIO = "ocs-import"
SIZES = (30, 1_000)
_ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney")
_TARGETS = ("isolated", "shell", "main")


def _fixture(path: Path, n: int, now: float) -> None:
    db = OcsDb(str(path))
    roots: list[str] = []
    for i in range(n):
        if i % 10 == 9 and roots:
            db.child(
                f"child-{i}",
                roots[-1],
                "success",
                session_target="shell",
                payload_message=f"echo {i}",
            )
            continue
        job = db.cron_job(
            f"job-{i}",
            f"{i % 60} * * * *",
            _ZONES[i % len(_ZONES)],
            now,
            session_target=_TARGETS[i % len(_TARGETS)],
            max_retries=i % 4,
        )
        roots.append(job)
        if i % 10 == 0:
            db.dispatch(job, "manual", scheduled_for=text(now))
    db.close()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


async def _specs(db: str) -> list[JobSpec]:
    store = await factory.open_store(db, create=False)
    try:
        return [r.spec for r in await store.jobs()]
    finally:
        await store.close(checkpoint=False)


async def _add_one_by_one(cfg: Config, specs: list[JobSpec]) -> float:
    async with Runtime.open(cfg) as rt:
        ordered = sorted(specs, key=lambda s: s.parent is not None)  # parents first
        began = time.perf_counter()
        for spec in ordered:
            await rt.add_job(spec)
        return (time.perf_counter() - began) * 1e3


def _config(workdir: Path, db: Path) -> Config:
    path = workdir / f"{db.stem}.toml"
    path.write_text(f'database = "{db}"\n[gateway]\nurl = "http://127.0.0.1:9"\n')
    return load_config(str(path))


def run(ctx: BenchContext) -> list[Result]:
    out: list[Result] = []
    warm = ctx.path("ocs-import", "warm-ocs.db")  # imports, zone data, caches: not timed
    _fixture(warm, 10, time.time())
    import_ocs(
        _config(warm.parent, ctx.path("ocs-import", "warm.db")),
        str(warm),
        dry_run=False,
        partial=False,
    )
    for n in SIZES[:1] if ctx.quick else SIZES:
        now = time.time()
        ocs = ctx.path("ocs-import", f"ocs-{n}.db")
        _fixture(ocs, n, now)
        workdir = ocs.parent
        target = ctx.path("ocs-import", f"imported-{n}.db")
        cfg = _config(workdir, target)
        began = time.perf_counter()
        report = import_ocs(cfg, str(ocs), dry_run=False, partial=False)
        imported = (time.perf_counter() - began) * 1e3
        assert report["committed"] and report["summary"]["jobs"] == {"created": n}, report
        began = time.perf_counter()
        again = import_ocs(cfg, str(ocs), dry_run=False, partial=False)
        second = (time.perf_counter() - began) * 1e3
        assert again["summary"]["jobs"] == {"unchanged": n}
        specs = anyio.run(_specs, str(target))
        toml = workdir / f"jobs-{n}.toml"
        toml.write_text(tomli_w.dumps({"jobs": [_plain(to_builtins(s)) for s in specs]}))
        file_db = ctx.path("ocs-import", f"file-{n}.db")
        file_cfg = _config(workdir, file_db)
        began = time.perf_counter()
        loaded = load_job_file(str(toml), time.time(), file_cfg)
        anyio.run(save_jobs, file_cfg, loaded, time.time())
        from_file = (time.perf_counter() - began) * 1e3
        api_cfg = _config(workdir, ctx.path("ocs-import", f"api-{n}.db"))
        one_by_one = anyio.run(_add_one_by_one, api_cfg, specs)
        base = f"{SCENARIO}:ms_import"
        out += [
            Result(
                scenario=SCENARIO,
                metric="ms_import",
                value=imported,
                unit="ms",
                n=n,
                note="read OCS read-only, map, validate, one transaction",
            ),
            Result(
                scenario=SCENARIO,
                metric="ms_jobs_add_file",
                value=from_file,
                unit="ms",
                n=n,
                ratio_to=base,
                note="the same jobs as TOML, `jobs add --file`",
            ),
            Result(
                scenario=SCENARIO,
                metric="ms_add_job_each",
                value=one_by_one,
                unit="ms",
                n=n,
                ratio_to=base,
                note="the same specs, Runtime.add_job one by one",
            ),
            Result(
                scenario=SCENARIO,
                metric="ms_import_again",
                value=second,
                unit="ms",
                n=n,
                ratio_to=base,
                note="the same file again: everything unchanged",
            ),
        ]
        Path(str(toml)).unlink(missing_ok=True)
    return out
