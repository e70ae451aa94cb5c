"""The parts of ``shepherd status`` that other commands share: a run's row (``runs list``),
a pause's (``pauses``), the agents', the controls' and the nodes' status and lines
(``agents``, ``pauses``, ``nodes``), kept apart from those commands' modules so that
``status`` loads none of their write paths (anyio, the actors' messages, the store's
write ops). Plain functions over what the store read; they print nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from shepherd.runtime._cli_fmt import human_duration, when

if TYPE_CHECKING:
    from shepherd.store.cluster import NodeInfo
    from shepherd.store.models import Agent, Pause, Run

__all__ = [
    "NodeReads",
    "agents_lines",
    "agents_status",
    "control_lines",
    "controls_status",
    "node_lines",
    "nodes_status",
    "pause_row",
    "run_row",
]


class NodeReads(Protocol):
    """What ``nodes_status`` reads (a ``Store``, or ``store.sqlite.reader.SqliteReader``)."""

    async def nodes(self) -> list[NodeInfo]: ...

    async def scheduler_leader(self) -> str | None: ...


def run_row(r: Run) -> dict[str, Any]:
    took = r.finished_at - r.started_at if r.finished_at is not None else None
    return {
        "id": r.id,
        "dispatch": r.dispatch_id,
        "job": r.job_name,
        "attempt": r.attempt,
        "status": r.status,
        "started": when(r.started_at),
        "took": human_duration(took),
        "exit": r.exit_code if r.signal is None else f"sig{r.signal}",
        "error": r.error,
    }


def pause_row(p: Pause) -> dict[str, Any]:
    return {"key": p.key, "scope": p.scope, "name": p.name, "paused_at": p.paused_at,
            "by": p.by, "reason": p.reason}  # fmt: skip


def controls_status(pauses: list[Pause], instance: dict[str, Any] | None) -> dict[str, Any]:
    """``pauses`` (from the store; ``waiting``: the dispatches held behind each, from
    the daemon's last snapshot, None without one) and ``rates`` (each bucket of the
    snapshot: rate, burst, tokens, taken, deferred)."""
    live = ((instance or {}).get("health") or {}).get("dispatcher") or {}
    if instance is not None and instance.get("stopped_at"):
        live = {}
    held = live.get("pauses") or {}
    rows = [{**pause_row(p), "waiting": (held.get(p.key) or {}).get("waiting")} for p in pauses]
    return {"pauses": rows, "rates": live.get("rates") or {}}


def control_lines(data: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    if data.get("pauses"):
        out["paused"] = ", ".join(
            p["key"]
            + (f" ({p['waiting']} waiting)" if p["waiting"] is not None else "")
            + (f": {p['reason']}" if p["reason"] else "")
            for p in data["pauses"]
        )
    if data.get("rates"):
        out["rate limits"] = ", ".join(
            f"{key} {b['rate']} burst {b['burst']} ({b['tokens']:g} tokens,"
            f" {b['deferred']} deferred)"
            for key, b in data["rates"].items()
        )
    return out


def agents_status(agents: list[Agent], instance: dict[str, Any] | None) -> dict[str, Any]:
    """``status``'s agents: counts by status (a ready agent with runs is busy), and
    the dispatches waiting for an agent, by reason (the daemon's last snapshot)."""
    by: dict[str, int] = {}
    for a in agents:
        status = "busy" if a.running and a.status in ("ready", "sleeping") else a.status
        by[status] = by.get(status, 0) + 1
    health = (instance or {}).get("health") or {}
    table_stats = (health.get("dispatcher") or {}).get("agents") or {}
    return {
        "agents": {"count": len(agents), "by_status": by},
        "unmatched": dict(table_stats.get("unmatched") or {}),
    }


def agents_lines(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    agents = data.get("agents") or {}
    if agents.get("count"):
        counts = "  ".join(f"{k} {v}" for k, v in sorted(agents["by_status"].items()))
        out["agents"] = f"{agents['count']} ({counts})"
    unmatched = data.get("unmatched") or {}
    if unmatched:
        out["unmatched"] = "; ".join(f"{n} {reason}" for reason, n in unmatched.items())
    return out


async def nodes_status(store: NodeReads, *, cluster: bool) -> dict[str, Any]:
    """What ``nodes --json`` prints, and the ``cluster`` part of ``status``: every node
    (``cluster``: the engine shares the database between nodes), their count by
    status, and the scheduler's leader."""
    nodes = [msgspec.structs.asdict(n) for n in await store.nodes()] if cluster else []
    leader = await store.scheduler_leader() if cluster else None
    full = _leader_name(leader, [str(n["name"]) for n in nodes])
    for n in nodes:
        n["leader"] = n["name"] == full
    counts: dict[str, int] = {}
    for n in nodes:
        counts[str(n["status"])] = counts.get(str(n["status"]), 0) + 1
    return {
        "cluster": cluster,
        "engine": "postgresql" if cluster else "sqlite",
        "leader": full,
        "counts": counts,
        "nodes": nodes,
    }


def _leader_name(leader: str | None, names: list[str]) -> str | None:
    """The node name the lock holder's (possibly cut) name stands for."""
    if leader is None or leader in names:
        return leader
    longer = [n for n in names if n.startswith(leader)]
    return longer[0] if len(longer) == 1 else leader


def node_lines(data: dict[str, Any]) -> dict[str, Any]:
    """The ``nodes`` / ``leader`` lines of ``status`` and ``nodes`` (PostgreSQL)."""
    counts = data["counts"]
    order = ("alive", "expired", "dead", "left")
    keys = [s for s in order if s in counts] + sorted(s for s in counts if s not in order)
    text = ", ".join(f"{counts[s]} {s}" for s in keys)
    return {
        "nodes": text or "none registered",
        "scheduler leader": data["leader"] or "none (no node holds the lock)",
    }
