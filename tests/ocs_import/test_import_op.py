"""The import's write op on its own: one transaction, all or nothing."""

from __future__ import annotations

import msgspec
import pytest

from shepherd.store.errors import StoreError
from shepherd.store.factory import open_store
from shepherd.store.models import JobSpec, encode_json
from shepherd.store.ops.imports import ImportBatch, ImportDispatch, ImportJob

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]


def _job(source_id: str, spec: JobSpec) -> ImportJob:
    return ImportJob(
        source_id=source_id,
        digest="d",
        name=spec.name,
        executor=spec.executor,
        enabled=True,
        spec=encode_json(spec),
        next_run_at=None,
    )


async def test_a_failing_item_rolls_the_whole_import_back(db_path: str) -> None:
    store = await open_store(db_path)
    try:
        good = _job("a", JobSpec(name="good", executor="shell", target="true"))
        orphan = _job(
            "b",
            JobSpec(
                name="orphan",
                executor="shell",
                target="true",
                parent="nowhere",
                trigger_on="success",
            ),
        )
        queued = ImportDispatch(
            source_id="q",
            digest="",
            job_source="a",
            kind="run_now",
            priority=2,
            not_before=0.0,
            max_attempts=1,
        )
        op = ImportBatch(
            source="ocs", now=1.0, origin="t", jobs=[good, orphan], dispatches=[queued]
        )
        with pytest.raises(StoreError):
            await store.apply_one(op)
        assert await store.jobs() == []
        assert await store.dispatches() == []
        done = await store.apply_one(msgspec.structs.replace(op, jobs=[good]))
        assert [(i.kind, i.status) for i in done.items] == [
            ("job", "created"),
            ("dispatch", "created"),
        ]
        again = await store.apply_one(msgspec.structs.replace(op, jobs=[good]))
        assert [i.status for i in again.items] == ["unchanged", "unchanged"]
        assert len(await store.dispatches()) == 1
    finally:
        await store.close()
