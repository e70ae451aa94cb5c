"""The engine fixture of the store contract suite.

Every test in this folder takes ``store`` (a ``shepherd.store.protocol.Store``) and
speaks to it only through the protocol's methods and the op Structs of
``shepherd.store.ops``. A second engine runs the same suite unchanged: add its name to
``ENGINES`` and say in ``_database`` how to get a fresh, empty database for it (for
PostgreSQL, say, a scratch schema on the server the ``services`` tests use).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shepherd.store.factory import open_store
from shepherd.store.protocol import Store
from tests.pg_helpers import new_schema_url

ENGINES = ["sqlite", "postgresql"]


def _database(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if engine == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.db'}"
    if engine == "postgresql":  # a fresh schema on the run's scratch database
        return new_schema_url(request.getfixturevalue("pg_database"))
    raise AssertionError(f"no database for engine {engine!r}")


@pytest.fixture(params=ENGINES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _database(str(request.param), tmp_path, request)


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    s = await open_store(database)
    try:
        yield s
    finally:
        await s.close(checkpoint=False)
