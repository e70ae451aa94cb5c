"""The runtime's database lock is its own: a child it forks without exec (a python
target's ``multiprocessing`` child) does not keep it after the runtime is gone, so a
restart is not refused while such a child lives on."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from shepherd.runtime._lock import lock_database
from shepherd.store.errors import StoreError


def test_a_forked_child_does_not_keep_the_lock(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    held = anyio.run(lock_database, db)
    with pytest.raises(StoreError, match="already served"):  # held: a second is refused
        anyio.run(lock_database, db)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child lives on until the pipe closes, touching nothing
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    try:
        os.close(r)
        held.close()  # the runtime is gone (SIGKILL closes its descriptors the same way)
        again = anyio.run(lock_database, db)  # refused after 1 s if the child held it
        again.close()
    finally:
        os.close(w)
        os.waitpid(pid, 0)
