"""The import report: per job what it becomes and every field not carried over with the
reason, then agents, aliases (with the ``[delivery.aliases]`` TOML the config needs),
queued dispatches, messages and the tables not carried. ``build_report`` makes the
dict ``--json`` prints (times as epoch seconds; ``emit_json`` writes them ISO UTC);
``render_report`` the human text.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from shepherd.runtime._cli_fmt import when
from shepherd.runtime.ocs_import.importer import ImportPlan
from shepherd.store.models import JobSpec, to_builtins
from shepherd.store.ops.imports import Imported

__all__ = ["build_report", "render_report"]


def _schedule(spec: JobSpec | None) -> str:
    if spec is None:
        return "-"
    if spec.parent is not None:
        return f"child of {spec.parent} on {spec.trigger_on}"
    if spec.cron is not None:
        return f"cron {spec.cron} ({spec.tz})"
    if spec.at is not None:
        return f"at {spec.at}"
    return "none"


def build_report(
    plan: ImportPlan, done: Imported | None, *, dry_run: bool, partial: bool
) -> dict[str, Any]:
    blocked = bool(plan.rejected) and not partial
    status = {(i.kind, i.source_id): i for i in done.items} if done is not None else {}
    skip = "not imported" if blocked else "-"

    def state(kind: str, sid: str) -> tuple[str, Any]:
        item = status.get((kind, sid))
        return (item.status, item) if item is not None else (skip, None)

    jobs = []
    for e in plan.jobs:
        st, item = state("job", e.plan.source_id)
        spec = e.spec
        jobs.append(
            {
                "ocs_id": e.plan.source_id,
                "ocs_name": e.plan.ocs_name,
                "name": item.target if item is not None else e.plan.name,
                "status": "rejected" if spec is None else st,
                "executor": spec.executor if spec else None,
                "schedule": _schedule(spec),
                "enabled": spec.enabled if spec else None,
                "next_run_at": item.next_run_at if item is not None else None,
                "skipped_slots": len(e.continued.skipped) if e.continued else 0,
                "error": e.error,
                "not_carried": [to_builtins(n) for n in e.plan.not_carried],
                "notes": list(e.plan.notes) + (list(e.continued.notes) if e.continued else []),
            }
        )
    agents = [
        {
            "id": a.source_id,
            "status": "rejected" if a.spec is None else state("agent", a.source_id)[0],
            "error": a.error,
            "not_carried": [to_builtins(n) for n in a.not_carried],
        }
        for a in plan.agents
    ]
    names = {e.plan.source_id: e.plan.name for e in plan.jobs}
    names.update({i.source_id: i.target for i in status.values() if i.kind == "job"})
    dispatches = [
        {
            "ocs_id": d.source_id,
            "ocs_job": d.job_source,
            "job": names.get(d.job_source),
            "ocs_status": d.status,
            "kind": d.kind,
            "source_run": d.source_run,
            "not_before": d.not_before,
            "status": "not carried" if d.kind is None else state("dispatch", d.source_id)[0],
            "error": d.error,
        }
        for d in plan.dispatches
    ]
    messages = [
        {
            "ocs_id": m.source_id,
            "status": "rejected" if m.message is None else state("message", m.source_id)[0],
            "error": m.error,
            "not_carried": [to_builtins(n) for n in m.not_carried],
        }
        for m in plan.messages
    ]
    aliases = [to_builtins(a) for a in plan.aliases]
    need = [a for a in plan.aliases if a.status != "in config"]
    snippet = "\n".join(
        f'{a.alias} = {{ channel = "{a.channel}", target = "{a.target}" }}' for a in need
    )
    counts: dict[str, dict[str, int]] = {}
    runs = [{"ocs_id": r.source_id, "status": state("run", r.source_id)[0]} for r in plan.history]
    for kind, rows in (
        ("jobs", jobs),
        ("agents", agents),
        ("dispatches", dispatches),
        ("messages", messages),
    ):
        counts[kind] = dict(Counter(str(r["status"]) for r in rows))
    if runs:  # --history N
        counts["runs"] = dict(Counter(str(r["status"]) for r in runs))
    return {
        "source": plan.source,
        "schema_version": plan.version,
        "dry_run": dry_run,
        "committed": done is not None and not dry_run,
        "blocked": blocked,
        "attention": plan.attention,
        "summary": counts,
        "jobs": jobs,
        "agents": agents,
        "aliases": aliases,
        "alias_config": f"[delivery.aliases]\n{snippet}" if need else None,
        "dispatches": dispatches,
        "messages": messages,
        "gated": done.gated if done is not None else 0,
        "tables": [to_builtins(t) for t in plan.tables],
    }


def render_report(report: dict[str, Any]) -> str:
    lines: list[str] = []
    head = "dry run: nothing written" if report["dry_run"] else "imported"
    if report["blocked"]:
        head = "nothing imported: some jobs cannot be imported (--partial imports the rest)"
    lines.append(
        f"openclaw-scheduler {report['source']} (schema {report['schema_version']}): {head}"
    )
    for j in report["jobs"]:
        nxt = when(j["next_run_at"]) if j["next_run_at"] is not None else "-"
        lines.append(
            f"{j['status']:<12} {j['ocs_name']!r} -> {j['name']}  [{j['executor'] or '-'}]"
            f"  {j['schedule']}  next {nxt}"
            + ("" if j["enabled"] in (None, True) else "  (disabled)")
        )
        if j["error"]:
            lines.append(f"    ! {j['error']}")
        for n in j["not_carried"]:
            lines.append(f"    - not carried: {n['field']} = {n['value']}: {n['reason']}")
        for note in j["notes"]:
            lines.append(f"    · {note}")
    for title, rows, key in (
        ("agents", report["agents"], "id"),
        ("messages", report["messages"], "ocs_id"),
    ):
        if not rows:
            continue
        lines.append(
            f"{title}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(report["summary"][title].items()))
        )
        for r in rows:
            if r["error"]:
                lines.append(f"    ! {r[key]}: {r['error']}")
            for n in r["not_carried"]:
                lines.append(
                    f"    - {r[key]}: not carried: {n['field']} = {n['value']}: {n['reason']}"
                )
    if "runs" in report["summary"]:
        done = ", ".join(f"{k} {v}" for k, v in sorted(report["summary"]["runs"].items()))
        lines.append(f"history runs: {done}")
    for d in report["dispatches"]:
        why = f": {d['error']}" if d["error"] else ""
        lines.append(
            f"dispatch {d['ocs_id']} ({d['ocs_status']}, job {d['job'] or d['ocs_job']})"
            f" -> {d['kind'] or '-'}: {d['status']}{why}"
        )
    for a in report["aliases"]:
        lines.append(f"alias @{a['alias']} -> {a['channel']}:{a['target']}: {a['status']}")
    if report["alias_config"]:
        lines.append("add to the config:\n" + report["alias_config"])
    for t in report["tables"]:
        rows = f" ({t['rows']} rows)" if t["rows"] else ""
        lines.append(f"table {t['table']}{rows}: {t['reason']}")
    if report["gated"]:
        lines.append(
            f"{report['gated']} dispatch(es) held for approval: requests go out"
            " when the daemon runs"
        )
    return "\n".join(lines) + "\n"
