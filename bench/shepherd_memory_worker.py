"""The process whose memory ``shepherd-memory`` measures (run by path, not as part of
the ``bench`` package, so that it loads only what an embedding application does:
shepherd and its own dependencies, not the harness's psutil).

One embedded runtime on a fresh SQLite file (``Runtime.open`` with the defaults, one
no-op python job) and nothing else. It talks to the harness over its standard streams:
it prints ``idle`` once the runtime has been open and idle for a second, then waits for
a line; on ``run N`` it enqueues N no-op jobs (``enqueue_many`` of 1,000), waits for
their N outcomes (``rt.subscribe``), collects garbage, idles a second and prints
``after``; on ``quit`` (or end of input) it closes the runtime and exits. The harness
reads the RSS from outside at each printed phase.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import anyio
import anyio.to_thread

from shepherd.actors.messages import OutcomeEvent
from shepherd.runtime.app import Runtime
from shepherd.runtime.config import Config
from shepherd.store.models import EnqueueRequest, JobSpec

NOOP = "noop"
BATCH = 1_000


async def noop(_ctx: Any) -> None:
    return None


def _say(what: str) -> None:
    sys.stdout.write(what + "\n")
    sys.stdout.flush()


async def _run(rt: Runtime, n: int) -> None:
    done = 0
    async with rt.subscribe(OutcomeEvent, buffer=n + BATCH) as events:
        for i in range(0, n, BATCH):
            await rt.enqueue_many([EnqueueRequest(job=NOOP) for _ in range(min(BATCH, n - i))])
        async for ev in events:
            if ev.final:
                done += 1
                if done >= n:
                    break


async def main(db: str) -> None:
    cfg = Config(database=db, synchronous="NORMAL")
    async with Runtime.open(cfg, targets={NOOP: noop}) as rt:
        await rt.add_job(JobSpec(name=NOOP, target=NOOP))
        gc.collect()
        await anyio.sleep(1.0)
        _say("idle")
        while True:
            line = (await anyio.to_thread.run_sync(sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                return
            await _run(rt, int(line[1]))
            gc.collect()
            await anyio.sleep(1.0)
            _say("after")


if __name__ == "__main__":
    try:
        import uvloop  # noqa: F401

        options = {"use_uvloop": True}
    except ImportError:  # pragma: no cover - uvloop is a dependency
        options = {}
    anyio.run(main, sys.argv[1], backend="asyncio", backend_options=options)
