"""The pause ops and read of the store protocol (``store.ops.controls``), engine-neutral."""

from __future__ import annotations

import pytest

from shepherd.store.models import Pause
from shepherd.store.ops import ClearPauses, SetPause
from shepherd.store.protocol import Store

pytestmark = pytest.mark.anyio


async def test_a_pause_is_kept_once_and_cleared_by_scope_or_all(store: Store) -> None:
    assert await store.pauses() == []
    assert await store.apply_one(SetPause(scope="job", name="a", at=1.0, by="me")) is True
    again = SetPause(scope="job", name="a", at=5.0, by="you", reason="why")
    assert await store.apply_one(again) is False  # the first pause stays, its reason updated
    await store.apply_one(SetPause(scope="runtime", name="", at=2.0))
    await store.apply_one(SetPause(scope="pool", name="a", at=3.0, reason="db"))
    assert await store.pauses() == [
        Pause(scope="job", name="a", paused_at=1.0, by="me", reason="why"),
        Pause(scope="runtime", name="", paused_at=2.0),
        Pause(scope="pool", name="a", paused_at=3.0, reason="db"),
    ]
    assert [p.key for p in await store.pauses()] == ["job:a", "runtime", "pool:a"]
    assert await store.apply_one(ClearPauses(scope="job", name="a")) == ["job:a"]
    assert await store.apply_one(ClearPauses(scope="job", name="a")) == []
    assert await store.apply_one(ClearPauses()) == ["pool:a", "runtime"]
    assert await store.pauses() == []
