"""The listings' keyset filters (``rt.dispatches`` / ``rt.runs`` / ``rt.dead_letters``):
``before`` pages through every row once, newest first, whatever is added meanwhile;
``priority``, ``agent``, a set of states and a created_at / started_at range filter."""

from __future__ import annotations

from typing import Any

import pytest

from shepherd import Config, JobSpec, Runtime

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]


async def ok(payload: dict[str, Any]) -> None:
    return None


async def test_keyset_pages_and_filters(db_path: str) -> None:
    async with Runtime.open(Config(database=db_path), targets={"ok": ok}) as rt:
        await rt.add_job(JobSpec(name="j", target="ok"))
        await rt.pause("runtime")
        ids = [await rt.enqueue("j", priority="high" if i % 3 == 0 else None) for i in range(10)]
        pages: list[list[int]] = []
        before = None
        while True:
            rows = await rt.dispatches(limit=4, before=before)
            if not rows:
                break
            pages.append([d.id for d in rows])
            before = rows[-1].id
            if len(pages) == 1:
                await rt.enqueue("j")  # a newer row does not shift the pages below
        assert [i for p in pages for i in p] == sorted(ids, reverse=True)
        assert [len(p) for p in pages] == [4, 4, 2]

        high = await rt.dispatches(priority="high")
        assert sorted(d.id for d in high) == ids[0::3]
        first = await rt.dispatch(ids[0])
        fifth = await rt.dispatch(ids[5])
        window = await rt.dispatches(since=first.created_at, until=fifth.created_at)
        assert sorted(d.id for d in window) == [i for i in ids[:5]]
        assert await rt.dispatches(status=["done", "dead"]) == []
        assert len(await rt.dispatches(status=["queued", "done"])) == 11

        await rt.resume("runtime")
        for i in ids:
            await rt.wait(i, timeout=10)
        runs = await rt.runs(limit=100)
        assert len(await rt.runs(before=runs[2].id)) == len(runs) - 3
        assert await rt.runs(agent="nobody") == []
        assert len(await rt.runs(status=["ok", "error"])) == len(runs)
        starts = sorted(r.started_at for r in runs)
        assert len(await rt.runs(since=starts[0])) == len(runs)
        assert await rt.runs(since=starts[-1] + 0.001) == []
        assert await rt.runs(until=starts[0]) == []
        assert await rt.dead_letters(before=1) == []
