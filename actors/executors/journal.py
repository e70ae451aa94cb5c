"""The process journal: a spawned group is on record before its command starts, without
waiting for a commit.

A shell or watchdog command waits behind its gate until crash recovery could find its
process group again (``procs.spawn_group``). Committing the group's ``ProcessId`` to the
database and waiting for it is one commit per spawn on the path from one run of a slot
to the next. On a database that one runtime owns (SQLite: the runtime holds the file's
lock) the runtime appends the record to a journal file instead, one ``write`` that the
kernel keeps however the runtime dies (a SIGKILL included: only a power loss or an OS
crash loses it, and those end every process of the group as well), opens the gate, and
commits the record to the database without waiting (``RuntimeHost.record_process``).

At the next start, crash recovery reads every journal left in the directory (each
runtime writes its own, named by its node), takes the groups whose run is still
``running`` and that the database does not name (their commit did not happen), ends
them with those the database names, and removes the journals once the delivery
guarantee is applied (``actors.dispatcher.recovery``).

A journal that has grown past ``LIMIT`` bytes starts over with only the records whose
commit has not answered yet, in a new file renamed over it (``ProcessJournal.note``);
once a record's commit has failed, it is kept whole until the next start.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from shepherd.actors.executors.procs import ProcessId
from shepherd.actors.primitives.mailbox import Reply

__all__ = ["LIMIT", "ProcessJournal", "journal_path", "left_behind", "remove_journals"]

log = logging.getLogger("shepherd.procs")

LIMIT = 1 << 20  # bytes (~20,000 records): past it, a journal starts over
SUBDIR = "processes"


class ProcessJournal:
    """The journal of one runtime, opened at its first record."""

    def __init__(self, data_dir: str, node: str) -> None:
        self.path = journal_path(data_dir, node)
        self._size = -1  # not opened yet
        # the records whose commit has not answered yet, with their lines
        self._pending: list[tuple[bytes, Reply[Any]]] = []
        self._lost = False  # a record's commit failed: the journal keeps it until the next start

    def note(self, run_id: int, proc: ProcessId, committed: Reply[Any]) -> None:
        """Append ``proc`` for run ``run_id`` (on record once this returns); ``committed``
        answers when its commit to the database is done."""
        if self._size < 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._size = 0
        self._settle()
        if self._size > LIMIT and not self._lost:
            self._compact()
        line = f"{run_id} {proc.pgid} {proc.start} {proc.clock}\n".encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            self._size += os.write(fd, line)
        finally:
            os.close(fd)
        self._pending.append((line, committed))

    def _settle(self) -> None:
        keep: list[tuple[bytes, Reply[Any]]] = []
        for line, reply in self._pending:
            if not reply.done:
                keep.append((line, reply))
            elif reply.failed:
                self._lost = True
        self._pending = keep

    def _compact(self) -> None:
        """Start over with the records not committed yet: a new file put in the old
        one's place (``rename``: at every moment one of the two is there, whole)."""
        data = b"".join(line for line, _ in self._pending)
        tmp = self.path.with_suffix(".compact")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._size = len(data)


def journal_path(data_dir: str, node: str) -> Path:
    """The journal of the runtime named ``node``."""
    return Path(data_dir, SUBDIR, node.replace("/", "_") + ".journal")


def left_behind(data_dir: str) -> dict[int, ProcessId]:
    """Every record in the journals under ``data_dir``, by run id (the last one of a
    run wins; a torn last line is skipped)."""
    out: dict[int, ProcessId] = {}
    for path in sorted(Path(data_dir, SUBDIR).glob("*.journal")):
        try:
            text = path.read_text("utf-8", "replace")
        except OSError as exc:
            log.error("process journal %s unreadable: %s", path, exc)
            continue
        for line in text.splitlines():
            parts = line.split(" ")
            if len(parts) != 4:
                continue
            try:
                run_id, pgid, start = int(parts[0]), int(parts[1]), int(parts[2])
            except ValueError:
                continue
            out[run_id] = ProcessId(pgid=pgid, start=start, clock=parts[3])
    return out


def remove_journals(data_dir: str, keep: Path | None = None) -> None:
    """Remove the journals under ``data_dir`` (but ``keep``, this runtime's own)."""
    for path in Path(data_dir, SUBDIR).glob("*.journal"):
        if path != keep:
            path.unlink(missing_ok=True)
