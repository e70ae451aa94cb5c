"""Shared fixtures: anyio on asyncio, a fresh database path, polling with a deadline."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway_standin import Mode, StandIn, run_standin

# `.ci/run` sets SHEPHERD_REQUIRE_SERVICES=1: a test that needs PostgreSQL, Redis or NATS
# then fails instead of skipping when the server is absent.
REQUIRE_SERVICES = os.environ.get("SHEPHERD_REQUIRE_SERVICES") == "1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "shepherd.db")


# one real gateway stand-in per test module, reset before each test
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
