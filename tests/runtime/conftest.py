"""Fixtures of the runtime tests: ``groups``, the process groups a test starts for crash
recovery to find (each killed, whole, at teardown)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from shepherd.actors.executors import procs


@pytest.fixture
def groups() -> Iterator[list[subprocess.Popen[bytes]]]:
    made: list[subprocess.Popen[bytes]] = []
    yield made
    for proc in made:
        procs.kill_group(proc.pid)
        proc.wait()
