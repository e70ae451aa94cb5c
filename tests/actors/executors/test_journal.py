"""The process journal (``actors/executors/journal.py``): records that survive the
runtime, read back by run id, and a journal that starts over keeping only the records
not committed yet."""

from __future__ import annotations

from pathlib import Path

import pytest

from shepherd.actors.executors import journal
from shepherd.actors.executors.journal import ProcessJournal, journal_path, left_behind
from shepherd.actors.executors.procs import ProcessId
from shepherd.actors.primitives.mailbox import Reply


def _proc(pgid: int) -> ProcessId:
    return ProcessId(pgid=pgid, start=pgid * 10, clock="linux:boot")


def test_records_are_read_back_by_run_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    a, b = ProcessJournal(str(tmp_path), "host:1:aa"), ProcessJournal(str(tmp_path), "h/2")
    a.note(1, _proc(100), Reply())
    b.note(2, _proc(200), Reply())
    a.note(1, _proc(101), Reply())  # the run's next group: the last one wins
    with journal_path(str(tmp_path), "h/2").open("a") as f:
        f.write("3 300 30")  # torn: the runtime died inside the write
    assert left_behind(str(tmp_path)) == {1: _proc(101), 2: _proc(200)}
    assert journal_path(str(tmp_path), "h/2").name == "h_2.journal"
    journal.remove_journals(str(tmp_path), keep=a.path)
    assert left_behind(str(tmp_path)) == {1: _proc(101)}
    assert left_behind(str(tmp_path / "none")) == {}


def test_a_journal_starts_over_with_the_records_not_committed_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "LIMIT", 50)
    j = ProcessJournal(str(tmp_path), "n")
    commits: list[Reply[object]] = [Reply(), Reply(), Reply()]
    for run_id, reply in enumerate(commits, 1):
        j.note(run_id, _proc(run_id * 100), reply)
    commits[0].set(None)
    commits[1].set(None)
    commits.append(Reply())
    j.note(4, _proc(400), commits[3])  # past the limit: 3 is not committed, so it stays
    assert set(left_behind(str(tmp_path))) == {3, 4}
    commits[2].set(None)
    j.note(5, _proc(500), Reply())  # below the limit again: appended
    assert set(left_behind(str(tmp_path))) == {3, 4, 5}
    assert not list(tmp_path.glob("processes/*.compact"))


def test_a_failed_commit_keeps_the_journal_until_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "LIMIT", 10)
    j = ProcessJournal(str(tmp_path), "n")
    failed: Reply[object] = Reply()
    j.note(1, _proc(100), failed)
    failed.fail(RuntimeError("disk full"))
    ok: Reply[object] = Reply()
    j.note(2, _proc(200), ok)
    ok.set(None)
    j.note(3, _proc(300), Reply())
    assert set(left_behind(str(tmp_path))) == {1, 2, 3}  # 1 is on record only here
