"""Workflow chains on the runtime side: checking a job's chain fields before it is
stored (README "Chains"; the rules are ``store.chains``).

- ``validate_chain``: the fields on their own (``validate_job`` calls it);
- ``check_graph``: a batch of specs against the stored jobs (parent exists, no cycle,
  depth), so a file of jobs is refused as a whole before anything is written; the
  store checks the graph again inside ``SaveJob``'s transaction (two concurrent saves);
- ``parents_first``: the order a batch is saved in;
- ``config_error``: the ConfigError a refused job write carries, as such.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from shepherd.store import chains
from shepherd.store.errors import ConfigError, StoreError
from shepherd.store.models import JobSpec

__all__ = ["check_graph", "config_error", "parents_first", "validate_chain"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,199}$")


def validate_chain(spec: JobSpec) -> None:
    """The chain fields on their own: ``trigger_on`` is required for a child and
    forbidden (with a condition or delay) on a root; a child has no schedule of its
    own; the condition's syntax. The graph is ``check_graph`` / the store's."""
    if spec.parent is None:
        for field, given in (
            ("trigger_on", spec.trigger_on is not None),
            ("trigger_condition", spec.trigger_condition is not None),
            ("trigger_delay", spec.trigger_delay > 0),
        ):
            if given:
                raise ConfigError(
                    "only a child job (with a parent) has it; clear it with the parent",
                    field=field,
                )
        return
    if not _NAME.match(spec.parent):
        raise ConfigError(f"invalid job name {spec.parent!r}", field="parent")
    if spec.parent == spec.name:
        raise ConfigError(f"cycle {spec.name} → {spec.name}", field="parent")
    if spec.trigger_on is None:
        raise ConfigError(
            "a child job needs trigger_on: success, failure or complete", field="trigger_on"
        )
    for field in ("cron", "at", "every"):
        if getattr(spec, field) is not None:
            raise ConfigError(
                "a child job fires from its parent's runs, never from a schedule of its own",
                field=field,
            )
    if spec.trigger_condition is not None:
        problem = chains.condition_problem(spec.trigger_condition)
        if problem is not None:
            raise ConfigError(problem, field="trigger_condition")


def check_graph(
    specs: Sequence[JobSpec],
    stored: Sequence[JobSpec],
    *,
    field: Callable[[JobSpec], str] = lambda s: "parent",
) -> None:
    """Refuse the first of ``specs`` (saved in this order over ``stored``) whose parent
    is unknown, makes a cycle or lies too deep; the error names ``field(spec)``."""
    parent: dict[str, str | None] = {s.name: s.parent for s in stored}
    for s in specs:
        if s.parent is not None:
            problem = chains.graph_problem(
                s.name,
                s.parent,
                lambda job: parent.get(job, chains.MISSING),
                lambda job: [k for k, v in parent.items() if v == job],
            )
            if problem is not None:
                raise ConfigError(problem, field=field(s))
        parent[s.name] = s.parent


def parents_first(specs: Sequence[JobSpec]) -> list[JobSpec]:
    """``specs`` with every parent before its children (a stable order otherwise), so
    a file or config that lists a child first is saved in an order the store accepts."""
    names = {s.name for s in specs}
    done: set[str] = set()
    out: list[JobSpec] = []
    waiting = list(specs)
    while waiting:
        later = []
        for s in waiting:
            if s.parent is None or s.parent not in names or s.parent in done:
                out.append(s)
                done.add(s.name)
            else:
                later.append(s)
        if len(later) == len(waiting):  # a cycle among them: check_graph refuses it
            out += later
            break
        waiting = later
    return out


def config_error(exc: StoreError) -> Exception:
    """What a failed job write raises: the store's check refused it with a ConfigError
    (a chain's graph, a parent that has children), else the StoreError itself."""
    return exc.__cause__ if isinstance(exc.__cause__, ConfigError) else exc
