"""Fixtures for executor tests: one real gateway stand-in per module, reset per test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from actors.executors.base import RunContext
from store.models import JobSpec
from tests.gateway_standin import Mode, StandIn, run_standin


def reset(gw: StandIn) -> StandIn:
    defaults = Mode()
    gw.set_mode(
        down=False,
        reply=defaults.reply,
        status=defaults.status,
        raw_body=None,
        hang=False,
        delay=0.0,
        trickle=None,
        healthy=True,
        webhook_fail_first=0,
    )
    gw.clear()
    return gw


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with run_standin() as gw:
        yield gw


@pytest.fixture
def gw(standin: StandIn) -> StandIn:
    return reset(standin)


class Beats:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _note: str | None) -> None:
        self.count += 1


def make_ctx(
    job: JobSpec,
    *,
    job_id: int = 7,
    run_id: int = 1,
    payload: dict[str, Any] | None = None,
    services: dict[str, Any] | None = None,
    idempotency_key: str | None = "key-1",
    parent_run_id: int | None = None,
    beats: Beats | None = None,
    data_dir: str = ".",
) -> RunContext:
    return RunContext(
        run_id=run_id,
        dispatch_id=run_id,
        job_id=job_id,
        job=job,
        attempt=1,
        max_attempts=3,
        payload=dict(job.payload) if payload is None else payload,
        idempotency_key=idempotency_key,
        parent_run_id=parent_run_id,
        data_dir=data_dir,
        wall=time.time,
        on_heartbeat=beats,
        services=services,
    )
