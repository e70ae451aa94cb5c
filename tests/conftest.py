"""Shared fixtures: anyio on asyncio, a fresh database path, polling with a deadline."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shepherd.store.sqlite import SqliteStore
from tests.gateway_standin import Mode, StandIn, run_standin
from tests.pg_helpers import new_schema_url, pg_database, pg_url  # noqa: F401 (fixtures)

# `.ci/run` sets SHEPHERD_REQUIRE_SERVICES=1: a test that needs PostgreSQL, Redis or NATS
# then fails instead of skipping when the server is absent.
REQUIRE_SERVICES = os.environ.get("SHEPHERD_REQUIRE_SERVICES") == "1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """The storage engine of ``db_path``: ``sqlite`` unless the module (or test) is
    marked ``@pytest.mark.engines("sqlite", "postgresql")``, which runs it on each."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def db_path(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The test's database: a fresh SQLite file, or (``engine`` postgresql) a fresh
    schema on the run's scratch PostgreSQL database."""
    if engine == "postgresql":
        return new_schema_url(request.getfixturevalue("pg_database"))
    return str(tmp_path / "shepherd.db")


@pytest.fixture
async def sqlite_store(db_path: str) -> AsyncIterator[SqliteStore]:
    """A ``SqliteStore`` on the test's fresh file (closed without a checkpoint)."""
    s = await SqliteStore.open(db_path)
    try:
        yield s
    finally:
        await s.close(checkpoint=False)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("engines")
    if marker is not None and "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", list(marker.args), indirect=True)


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
