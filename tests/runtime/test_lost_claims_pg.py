"""A claim that finds its dispatch's row locked skips it (``FOR UPDATE SKIP LOCKED``)
and drops it from the node's window: another node has it. When that other transaction
ends without claiming it (its node's epoch was fenced, it rolled back), the row is still
queued and no window holds it; a second after the loss the dispatcher reads the queue's
head again (``Dispatcher._recheck``) and the dispatch runs after all."""

from __future__ import annotations

import asyncpg
import pytest

from shepherd.runtime import Config, JobSpec, RunContext, Runtime
from tests.helpers import eventually

pytestmark = pytest.mark.anyio


async def test_a_row_locked_but_not_claimed_elsewhere_is_claimed_after_all(pg_url: str) -> None:
    seen: list[int] = []

    async def ok(ctx: RunContext) -> None:
        seen.append(ctx.dispatch_id)

    async with Runtime.open(Config(database=pg_url), targets={"ok": ok}) as rt:
        await rt.add_job(JobSpec(name="j", target="ok"))
        other = await asyncpg.connect(pg_url)
        try:
            tx = other.transaction()
            await tx.start()
            d = await rt.enqueue("j", delay=0.3)  # held in the window until due
            await other.execute("SELECT 1 FROM dispatches WHERE id = $1 FOR UPDATE", d)
            await eventually(
                lambda: rt.statistics()["dispatcher"]["lost"] >= 1,
                what="the claim to skip the locked row",
            )
            assert seen == [] and (await rt.dispatch(d)).status == "queued"
            await tx.rollback()  # released without a claim, as a refused claim's is
        finally:
            await other.close()
        final = await rt.wait(d, timeout=15)
        assert final.status == "done" and seen == [d]
