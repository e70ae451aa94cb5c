"""The job table: the job specs the dispatcher admits and finalizes against, by id.

A ``dict`` of ``JobSpec`` by job id, refreshed from the store in place (the run table,
admission and the commit batch read the same table): ``replace`` with every job,
``refresh`` for a few changed ids. Both return the specs as they were before, so the
caller can send the waiters of a changed job back through admission
(``ReadyQueue.take_changed``). No I/O: the shell reads the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from shepherd.store.models import JobRow, JobSpec

__all__ = ["JobTable"]


class JobTable(dict[int, JobSpec]):
    def replace(self, rows: Iterable[JobRow]) -> dict[int, JobSpec | None]:
        """Every job is in ``rows``; returns the table as it was."""
        before: dict[int, JobSpec | None] = dict(self)
        self.clear()
        self.update((r.id, r.spec) for r in rows)
        return before

    def refresh(self, ids: Sequence[int], found: Mapping[int, JobRow]) -> dict[int, JobSpec | None]:
        """``found``: those of ``ids`` that still exist; returns their specs as they were."""
        before = {job_id: self.get(job_id) for job_id in ids}
        for job_id in ids:
            row = found.get(job_id)
            if row is None:
                self.pop(job_id, None)
            else:
                self[job_id] = row.spec
        return before

    def name(self, job_id: int) -> str:
        job = self.get(job_id)
        return job.name if job is not None else f"#{job_id}"

    def pool(self, job_id: int) -> str | None:
        job = self.get(job_id)
        return job.pool if job is not None else None

    def __repr__(self) -> str:
        return f"<JobTable {len(self)} jobs>"
