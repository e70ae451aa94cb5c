"""Shared fixtures: anyio on asyncio, a fresh database path, polling with a deadline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# `.ci/run` sets SHEPHERD_REQUIRE_SERVICES=1: a test that needs PostgreSQL, Redis or NATS
# then fails instead of skipping when the server is absent.
REQUIRE_SERVICES = os.environ.get("SHEPHERD_REQUIRE_SERVICES") == "1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "shepherd.db")
