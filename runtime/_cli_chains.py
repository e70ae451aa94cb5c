"""CLI of workflow chains: ``jobs tree [NAME]`` (README "Chains").

Shows each chain as an indented tree: a root job that has children (or, with NAME,
the subtree below NAME), each child with its ``trigger_on``, condition, delay and
whether it is enabled. A child whose parent no longer exists is listed as an orphan
(it never fires). ``--json`` gives the same tree as nested objects.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import anyio

from shepherd.runtime._cli_fmt import emit_json, human_duration
from shepherd.runtime._cli_store import open_store
from shepherd.runtime.config import Config
from shepherd.store.errors import NotFound
from shepherd.store.models import JobSpec

__all__ = ["add_chain_commands", "chain_tree", "cmd_jobs_tree"]


def add_chain_commands(jobs: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """The chain commands of the ``jobs`` group in ``build_parser``."""
    p = cmd(jobs, "tree", cmd_jobs_tree, "show workflow chains (parent → children)")
    p.add_argument("name", nargs="?", metavar="NAME", help="only the chain below this job")


def chain_tree(specs: list[JobSpec], name: str | None = None) -> list[dict[str, Any]]:
    """The chains among ``specs`` as nested nodes: every root with children and every
    orphan (its parent is gone), or just the subtree of ``name``."""
    by_name = {s.name: s for s in specs}
    kids: dict[str, list[JobSpec]] = {}
    for s in specs:
        if s.parent is not None:
            kids.setdefault(s.parent, []).append(s)

    def node(s: JobSpec, seen: frozenset[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"name": s.name, "enabled": s.enabled}
        if s.parent is not None:
            out.update(
                parent=s.parent,
                trigger_on=s.trigger_on,
                trigger_condition=s.trigger_condition,
                trigger_delay=float(s.trigger_delay),
            )
            if s.parent not in by_name:
                out["orphan"] = True
        below = [c for c in kids.get(s.name, []) if c.name not in seen]
        if below:
            out["max_fanout"] = s.max_fanout
        out["children"] = [node(c, seen | {c.name}) for c in sorted(below, key=_key)]
        return out

    if name is not None:
        if name not in by_name:
            raise NotFound(f"no job named {name!r}")
        return [node(by_name[name], frozenset({name}))]
    tops = [
        s
        for s in specs
        if (s.parent is None and s.name in kids)
        or (s.parent is not None and s.parent not in by_name)
    ]
    return [node(s, frozenset({s.name})) for s in sorted(tops, key=_key)]


def _key(s: JobSpec) -> str:
    return s.name


def cmd_jobs_tree(args: argparse.Namespace, cfg: Config) -> int:
    specs = anyio.run(_specs, cfg)
    tree = chain_tree(specs, args.name)
    if args.json:
        emit_json(tree)
        return 0
    if not tree:
        print("no chains (no job has a parent)")
        return 0
    for top in tree:
        for line in _lines(top, "", "", root=True):
            print(line)
    return 0


async def _specs(cfg: Config) -> list[JobSpec]:
    async with open_store(cfg, create=False) as store:
        return [r.spec for r in await store.jobs()]


def _lines(n: dict[str, Any], lead: str, rest: str, *, root: bool = False) -> list[str]:
    out = [f"{lead}{n['name']}{_label(n, root)}"]
    children = n["children"]
    for i, c in enumerate(children):
        last = i == len(children) - 1
        out += _lines(c, rest + ("└── " if last else "├── "), rest + ("    " if last else "│   "))
    return out


def _label(n: dict[str, Any], root: bool) -> str:
    parts: list[str] = []
    if n.get("trigger_on"):
        parts.append(f"on {n['trigger_on']}")
    if n.get("trigger_condition"):
        parts.append(f"if {n['trigger_condition']}")
    if n.get("trigger_delay"):
        parts.append(f"after {human_duration(n['trigger_delay'])}")
    if n.get("orphan"):
        parts.append(f"orphan: parent {n['parent']!r} is gone")
    if not n["enabled"]:
        parts.append("disabled")
    if root and n.get("max_fanout") is not None and n["max_fanout"] != 25:
        parts.append(f"max fan-out {n['max_fanout']}")
    return f"  ({', '.join(parts)})" if parts else ""
