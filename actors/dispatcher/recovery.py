"""Crash recovery at start, and the process groups it ends.

``recover_orphans`` is the dispatcher's first step on every (re)start: it ends what the
orphaned runs' process groups left running (``end_orphaned_groups``), then applies the
delivery guarantee in one transaction (``RecoverOrphans``), in that order.

Runs record their process groups through their host (``Host.record_process``: one
write op per spawned group, awaited before the command may start,
``actors.executors.procs.spawn_group``); a run that starts no process pays nothing.
On a database one runtime owns the record goes to the runtime's process journal
first and its commit is not awaited (``actors.executors.journal``): recovery adds the
journals' groups of runs still ``running`` that the database does not name, and
removes the journals (but its own runtime's) once the guarantee is applied.

``end_orphaned_groups`` runs once when the dispatcher starts, before ``RecoverOrphans``
applies the delivery guarantee: for every run left ``running`` that recorded a group, it
kills the group if a process of it is still alive (SIGKILL to the group; a recorded
start time that does not match means the pid was reused and nothing is killed), and
waits, polling the process table on the injected clock, until it is gone. An
at-least-once replay therefore never runs beside the body it replays, and an
at-most-once dead letter is not still running. What it found goes on the run
(``runs.process``): ``gone`` (nothing was left), ``killed``, or ``alive`` (still there
``KILL_WAIT`` seconds after SIGKILL, e.g. stuck in the kernel; logged as an error, and
recovery goes on: the runtime does not stay down for it).

On a database several nodes share (PostgreSQL) the start recovery takes this node's own
runs and those of no live node, and ends the groups of those started on this host (the
node's host in ``nodes``; a run of an unknown node is judged by its clock id, which names
the boot). A dead node's groups on another host are out of reach: a paused node ends its
own once it finds itself fenced, and a node of that host ends those of the runs still
``running`` when it starts. A rescue ends the rescued runs' groups on the rescuer's
host the same way (``actors.cluster``).
"""

from __future__ import annotations

import logging
import socket

import anyio

from shepherd.actors.executors import journal, procs
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address
from shepherd.actors.writer import StoreMsg, write
from shepherd.store.ops import DeadLetterAlert, RecoverOrphans
from shepherd.store.protocol import OrphanedProcess, Store

__all__ = ["KILL_WAIT", "end_orphaned_groups", "recover_orphans", "this_host"]

log = logging.getLogger("shepherd.recovery")

KILL_WAIT = 10.0  # seconds a killed group may take to be gone
POLL = 0.02


def this_host() -> str:
    """This machine's name, as a node records it (``Store.join_node``): the runs of the
    nodes that name it are the ones whose process groups can be ended from here."""
    return socket.gethostname()


async def recover_orphans(
    store: Store,
    writer: Address[StoreMsg],
    clock: Clock,
    *,
    origin: str,
    alert: DeadLetterAlert | None = None,
    node: str | None = None,
    journals: str | None = None,
) -> list[tuple[int, int, str]]:
    """Orphaned runs → ``crashed`` and their guarantee applied, once their process groups
    are gone. Returns ``(run_id, dispatch_id, action)`` for each (``RecoverOrphans``).
    ``node``: the runs that node claimed and those of no live node (a database shared by
    several nodes: the live nodes' runs are theirs, or a rescue's); of those, the groups
    started on this host are ended. None: every running run, every recorded group, and
    with ``journals`` (the runtime's data directory) the groups of its process journals."""
    if node is None:
        rows = await store.orphaned_processes()
        if journals is not None:
            rows += await _journaled(store, journals, {r[0] for r in rows})
    else:
        rows = await store.node_processes(node, host=this_host())
    found = await end_orphaned_groups(clock, rows)
    nodes = None if node is None else [node]
    op = RecoverOrphans(now=clock.wall(), origin=origin, processes=found, alert=alert, nodes=nodes)
    result: list[tuple[int, int, str]] = await write(writer, op)
    if node is None and journals is not None:
        journal.remove_journals(journals, keep=journal.journal_path(journals, origin))
    return result


async def _journaled(store: Store, data_dir: str, known: set[int]) -> list[OrphanedProcess]:
    """The journals' groups that are still alive, of runs still ``running`` whose group
    the database does not name (the runtime died before that commit)."""
    left = {k: v for k, v in journal.left_behind(data_dir).items() if k not in known}
    if not left:
        return []
    table = await anyio.to_thread.run_sync(procs.process_table)
    here = procs.clock_id()
    out: list[OrphanedProcess] = []
    for run_id, rec in left.items():
        if procs.decide(rec, table, here) != "kill":
            continue  # gone: nothing to end (most records: their runs ended)
        run = await store.run(run_id)
        if run is not None and run.status == "running":
            out.append((run_id, rec.pgid, rec.start, rec.clock))
    return out


async def end_orphaned_groups(clock: Clock, rows: list[OrphanedProcess]) -> dict[int, str]:
    """Kill what is left of the process groups ``rows`` recorded (``(run_id, pgid,
    start, clock)``, as ``Store.orphaned_processes`` gives them); ``{run_id: found}``."""
    if not rows:
        return {}
    here = procs.clock_id()
    pending = {
        run_id: procs.ProcessId(pgid=pgid, start=start, clock=kind)
        for run_id, pgid, start, kind in rows
    }
    found: dict[int, str] = {}
    killed: set[int] = set()
    deadline = clock.now() + KILL_WAIT
    while True:
        table = await anyio.to_thread.run_sync(procs.process_table)
        for run_id, rec in list(pending.items()):
            if procs.decide(rec, table, here) == "gone":
                found[run_id] = "killed" if run_id in killed else "gone"
                del pending[run_id]
            else:  # again on every pass: a member may have forked while we looked
                procs.kill_group(rec.pgid)
                killed.add(run_id)
        if not pending or clock.now() >= deadline:
            break
        await clock.sleep_until(clock.now() + POLL)
    for run_id, rec in pending.items():
        log.error(
            "run %s: process group %s still alive %.0fs after SIGKILL", run_id, rec.pgid, KILL_WAIT
        )
        found[run_id] = "alive"
    for run_id, what in found.items():
        if what == "killed":
            log.warning("run %s: killed the process group its dead runtime left", run_id)
    return found
