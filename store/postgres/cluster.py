"""PostgreSQL SQL of the cluster: node leases, rescue of expired nodes, and the fencing
of claims and outcomes by epoch (``store.cluster``). The module is long because every
statement that takes a node's row lock is here, so their lock order reads in one place.

- Times are the server's clock (``clock_timestamp()``), so the nodes' clocks may
  disagree: a lease runs out by the server's reckoning alone.
- ``join`` gives the node a fresh epoch (``nextval('node_epoch')``, cluster-wide
  increasing); ``renew`` stamps the lease only while the row still holds the node's
  epoch and is alive, else the node learns it was fenced.
- ``rescue`` finds alive nodes whose lease ran out, terminates their server backends
  (every connection of a node carries ``application_name`` = ``backend_name``; the
  scheduler leader's connection is named by ``store.postgres.leader``), so a paused
  node's session advisory lock and connections die; then in ONE transaction it locks
  their rows ``FOR UPDATE SKIP LOCKED`` (two rescuers never both act on a node), marks
  them dead, bumps their epochs and applies crash recovery to their running runs
  (``runs.recover_orphans`` restricted to those nodes: at-least-once → one replay,
  at-most-once → ``crashed``). Running runs of nodes that are no longer alive at all
  (left, dead, unknown: stragglers) are recovered in the same pass. While it holds
  those runs, the process groups they started on the rescuer's host are ended first
  (the rescuer's ``end_groups`` hook), so a replay never runs beside the old body there;
  a group on another host is out of its reach (a paused node ends its own once it
  finds itself fenced).
- ``fence``: claims and outcomes carrying an epoch (``ClaimRuns.epoch``,
  ``FinishRuns.epoch``) first take the node's row ``FOR KEY SHARE`` and are refused
  whole (the "lost" result) when the epoch is stale. ``FOR KEY SHARE`` does not wait
  for a renew (a no-key update) but does conflict with the rescue's ``FOR UPDATE``: a
  rescue and an outcome of the same node are serialized, and whichever comes second
  sees the other's effect.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import asyncpg

from shepherd.store.cluster import EndGroups, NodeInfo, NodeLease, NodeStatus, Rescue
from shepherd.store.errors import StoreError
from shepherd.store.ops import ClaimRuns, DeadLetterAlert, FinishRuns, RecoverOrphans
from shepherd.store.ops.chains import Finished
from shepherd.store.postgres import leader, runs
from shepherd.store.postgres.codes import LOST
from shepherd.store.postgres.opening import backend_name, connect

__all__ = [
    "LeaseLink",
    "backend_name",
    "fence_claims",
    "fence_finishes",
    "join",
    "leave",
    "list_nodes",
    "orphaned_processes",
    "renew",
    "rescue",
]

log = logging.getLogger("shepherd.cluster")

T = TypeVar("T")
NOW = "extract(epoch FROM clock_timestamp())"


async def _standing(conn: asyncpg.Connection, node: str, epoch: int, lease: float) -> NodeLease:
    names = await conn.fetch(
        f"SELECT name FROM nodes WHERE status = 'alive' AND lease_until >= {NOW}"
        " ORDER BY joined_at, name"
    )
    alive = [str(r[0]) for r in names]
    rank = alive.index(node) if node in alive else len(alive)
    count = max(len(alive), rank + 1)
    return NodeLease(node=node, epoch=epoch, rank=rank, count=count, single=False, lease=lease)


async def join(
    conn: asyncpg.Connection, node: str, lease: float, host: str, pid: int, backend: str
) -> NodeLease:
    """``node`` alive with a new epoch (a row of the same name is taken over: a stable
    node name's previous incarnation is fenced by it)."""
    epoch = await conn.fetchval(
        f"""INSERT INTO nodes (name, epoch, status, host, pid, backend, joined_at, renewed_at,
                lease_until, lease)
            VALUES ($1, nextval('node_epoch'), 'alive', $2, $3, $4, {NOW}, {NOW},
                {NOW} + $5, $5)
            ON CONFLICT (name) DO UPDATE SET epoch = excluded.epoch, status = 'alive',
                host = excluded.host, pid = excluded.pid, backend = excluded.backend,
                joined_at = excluded.joined_at, renewed_at = excluded.renewed_at,
                lease_until = excluded.lease_until, lease = excluded.lease,
                rescued_by = NULL, rescued_at = NULL
            RETURNING epoch""",
        node,
        host,
        pid,
        backend,
        float(lease),
    )
    return await _standing(conn, node, int(epoch), lease)


async def renew(conn: asyncpg.Connection, node: str, epoch: int, lease: float) -> NodeLease:
    """The lease of ``node`` at ``epoch`` stamped again; ``fenced`` when the row no
    longer holds that epoch alive (the node was rescued or taken over)."""
    status = await conn.execute(
        f"UPDATE nodes SET renewed_at = {NOW}, lease_until = {NOW} + $3, lease = $3"
        " WHERE name = $1 AND epoch = $2 AND status = 'alive'",
        node,
        epoch,
        float(lease),
    )
    if status != "UPDATE 1":
        return NodeLease(node=node, epoch=epoch, single=False, fenced=True, lease=lease)
    return await _standing(conn, node, epoch, lease)


async def leave(conn: asyncpg.Connection, node: str, epoch: int) -> None:
    """A graceful stop: ``node`` leaves (its runs were drained), no rescue needed."""
    await conn.execute(
        f"UPDATE nodes SET status = 'left', lease_until = {NOW}"
        " WHERE name = $1 AND epoch = $2 AND status = 'alive'",
        node,
        epoch,
    )


async def _terminate(conn: asyncpg.Connection, names: list[str]) -> int:
    """End the server backends named ``names`` (not this one); how many."""
    try:
        ended = await conn.fetchval(
            # waits (up to 1 s, PostgreSQL 14+) until each is gone: its locks are free then
            "SELECT count(pg_terminate_backend(pid, 1000)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = ANY($1::text[])"
            " AND pid <> pg_backend_pid()",
            names,
        )
    except asyncpg.InsufficientPrivilegeError as exc:
        log.warning("cannot end a dead node's connections (%s): grant pg_signal_backend", exc)
        return 0
    return int(ended or 0)


def _backend_names(rows: Sequence[asyncpg.Record]) -> list[str]:
    """The ``application_name``s of these nodes' connections (``name``, ``backend``)."""
    names = [str(r[1]) for r in rows if r[1]]
    return names + [leader.application_name(str(r[0])) for r in rows]


async def rescue(
    conn: asyncpg.Connection,
    rescuer: str,
    origin: str,
    alert: DeadLetterAlert | None,
    host: str = "",
    end_groups: EndGroups | None = None,
) -> list[Rescue]:
    """Rescue every alive node whose lease ran out (see the module docstring); the
    process groups the rescued runs started on ``host`` go to ``end_groups`` first."""
    expired = await conn.fetch(
        f"SELECT name, backend FROM nodes WHERE status = 'alive' AND lease_until < {NOW}"
        " AND name <> $1",
        rescuer,
    )
    ended = {str(r[0]) for r in expired}
    if expired:
        await _terminate(conn, _backend_names(expired))
    out: list[Rescue] = []
    async with conn.transaction():
        locked = await conn.fetch(
            f"SELECT name, backend FROM nodes WHERE status = 'alive' AND lease_until < {NOW}"
            " AND name <> $1 ORDER BY name FOR UPDATE SKIP LOCKED",
            rescuer,
        )
        dead = [str(r[0]) for r in locked]
        # a lease that ran out between the two reads: its connections end here too
        if late := [r for r in locked if str(r[0]) not in ended]:
            await _terminate(conn, _backend_names(late))
        epochs: dict[str, int] = {}
        for name in dead:
            epochs[name] = int(
                await conn.fetchval(
                    f"UPDATE nodes SET status = 'dead', epoch = nextval('node_epoch'),"
                    f" rescued_by = $2, rescued_at = {NOW} WHERE name = $1 RETURNING epoch",
                    name,
                    rescuer,
                )
            )
        # the running runs of no live node (the dead ones' and stragglers'), held until
        # their guarantee applies: no one finishes one while its group is being ended
        held = await conn.fetch(
            f"SELECT r.id, r.instance, {HERE}, r.pgid, r.proc_start, r.proc_clock"
            " FROM runs r LEFT JOIN nodes n ON n.name = r.instance"
            " WHERE r.status = 'running' AND n.status IS DISTINCT FROM 'alive'"
            " ORDER BY r.id FOR UPDATE OF r",
            host,
        )
        owners = {int(r[0]): str(r[1] or "") for r in held}
        if not dead and not owners:
            return out
        groups = [_group(r) for r in held if r[2] and r[3] is not None]
        found = await end_groups(groups) if end_groups is not None and groups else {}
        now = float(await conn.fetchval(f"SELECT {NOW}"))
        op = RecoverOrphans(now=now, origin=origin, processes=found, alert=alert, nodes=[])
        recovered: list[tuple[int, int, str]] = await runs.recover_orphans(conn, op)
    by_node: dict[str, list[tuple[int, int, str]]] = {name: [] for name in dead}
    for item in recovered:
        by_node.setdefault(owners.get(item[0], ""), []).append(item)
    for name, done in sorted(by_node.items()):
        out.append(Rescue(node=name, epoch=epochs.get(name, 0), runs=done))
    return out


async def list_nodes(conn: asyncpg.Connection, schema: str) -> list[NodeInfo]:
    """Every node, by join order; ``leader`` from the scheduler lock's holder."""
    rows = await conn.fetch(
        f"""SELECT name, epoch, status, lease_until < {NOW}, host, pid, joined_at,
                renewed_at, lease, {NOW} - renewed_at, rescued_by, rescued_at, backend
            FROM nodes ORDER BY joined_at, name"""
    )
    lead = await leader.current_leader(conn, schema)
    out: list[NodeInfo] = []
    for r in rows:
        status: NodeStatus = r[2]
        if status == "alive" and r[3]:
            status = "expired"
        name = str(r[0])
        out.append(
            NodeInfo(
                name=name,
                epoch=int(r[1]),
                status=status,
                host=str(r[4]),
                pid=int(r[5]),
                joined_at=float(r[6]),
                renewed_at=float(r[7]),
                lease=float(r[8]),
                lease_age=max(0.0, float(r[9])),
                leader=status == "alive" and _leads(lead, name, str(r[12])),
                rescued_by=r[10],
                rescued_at=r[11],
            )
        )
    return out


def _leads(lead: str | None, name: str, backend: str) -> bool:
    """Whether the scheduler lock's holder ``lead`` (a name the server may have cut
    short) is the node ``name`` or its connections' ``backend``."""
    if not lead:
        return False
    return any(lead == n or n.startswith(lead) for n in (name, backend) if n)


# whether run ``r`` was started on the host $1: its node's host, or (a node with no
# row: a store opened without a node, an older version) its clock id, which names the
# boot, is left for the caller to judge (``procs.decide``)
HERE = "(n.host IS NULL OR n.host = $1)"


def _group(r: asyncpg.Record) -> tuple[int, int, int, str]:
    return (int(r[0]), int(r[3]), int(r[4] or 0), str(r[5] or ""))


async def orphaned_processes(
    conn: asyncpg.Connection, node: str, host: str
) -> list[tuple[int, int, int, str]]:
    """``(run_id, pgid, start, clock)`` of the running runs ``RecoverOrphans(nodes=
    [node])`` takes (``node``'s and those of no live node, as ``runs.MINE_OR_ORPHANED``)
    that recorded a process group on ``host``: a run whose node is on another host
    has its groups there, out of this host's reach."""
    rows = await conn.fetch(
        f"SELECT r.id, r.instance, {HERE}, r.pgid, r.proc_start, r.proc_clock"
        " FROM runs r LEFT JOIN nodes n ON n.name = r.instance"
        " WHERE r.status = 'running' AND r.pgid IS NOT NULL"
        " AND (r.instance = $2 OR n.status IS DISTINCT FROM 'alive')"
        f" AND {HERE} ORDER BY r.id",
        host,
        node,
    )
    return [_group(r) for r in rows]


async def _holds(conn: asyncpg.Connection, node: str, epoch: int) -> bool:
    row = await conn.fetchval(
        "SELECT epoch FROM nodes WHERE name = $1 AND status = 'alive' FOR KEY SHARE", node
    )
    return row is not None and int(row) == epoch


def fence_claims(
    fn: Callable[[asyncpg.Connection, ClaimRuns], Awaitable[Any]],
) -> Callable[[asyncpg.Connection, ClaimRuns], Awaitable[Any]]:
    """``fn`` behind the epoch check: a stale node's claims are all lost (None)."""

    async def apply(conn: asyncpg.Connection, op: ClaimRuns) -> Any:
        if op.epoch and not await _holds(conn, op.instance, op.epoch):
            log.warning(
                "stale claim refused: node %s epoch %d, dispatches %s",
                op.instance,
                op.epoch,
                [c.dispatch_id for c in op.claims],
            )
            return [None] * len(op.claims)
        return await fn(conn, op)

    return apply


def fence_finishes(
    fn: Callable[[asyncpg.Connection, FinishRuns], Awaitable[Any]],
) -> Callable[[asyncpg.Connection, FinishRuns], Awaitable[Any]]:
    """``fn`` behind the epoch check: a stale node's outcomes are all refused (None)."""

    async def apply(conn: asyncpg.Connection, op: FinishRuns) -> Any:
        if op.epoch and not await _holds(conn, op.origin, op.epoch):
            log.warning(
                "stale outcome refused: node %s epoch %d, runs %s",
                op.origin,
                op.epoch,
                [f.run_id for f in op.finals],
            )
            return Finished([None] * len(op.finals))
        return await fn(conn, op)

    return apply


class LeaseLink:
    """The node's own connection for its lease and rescues, apart from the writer and
    the read pool, so a slow group commit or a busy pool never delays a renew. Opened
    on first use, opened again after any failure (a rescue may have ended it)."""

    def __init__(self, dsn: str, backend: str) -> None:
        self._dsn = dsn
        self._backend = backend
        self._conn: asyncpg.Connection | None = None
        self._lock = anyio.Lock()

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(connection, *args)`` on the lease connection, one call at a time."""
        async with self._lock:
            try:
                if self._conn is None or self._conn.is_closed():
                    settings = {"application_name": self._backend} if self._backend else None
                    self._conn = await connect(self._dsn, server_settings=settings)
                return await fn(self._conn, *args)
            except asyncpg.InternalClientError as exc:  # a connection the server ended
                self.drop()
                raise StoreError(f"lease connection lost: {exc}") from None
            except BaseException:
                self.drop()
                raise

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with anyio.CancelScope(shield=True):
                try:
                    await conn.close(timeout=5.0)
                except (asyncpg.PostgresError, TimeoutError, *LOST):
                    conn.terminate()
