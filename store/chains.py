"""Workflow chains: the rules, as pure functions (README "Chains", SEMANTICS §2.7, D6).

A child job names its ``parent`` (a job name) and fires when a run of the parent ends
as its ``trigger_on`` says. This module holds what the engines and the runtime share:

- the condition syntax (``contains:TEXT`` / ``regex:PATTERN``, at most 1024 characters)
  and how it is matched against the parent run's output (``condition_problem``,
  ``condition_matches``: a pattern that does not compile at run time never matches);
- the graph rules (``graph_problem``): the parent exists, no cycle, a job's depth (its
  number of ancestors) at most ``MAX_DEPTH`` (10) including the subtree below it;
  errors name the path (``cycle a → b → a``);
- which outcome fires which children (``fires``): a parent's run that ends ``ok``
  fires ``success`` and ``complete`` children, a final failure (its dispatch dead:
  retries exhausted or none left) fires ``failure`` and ``complete`` ones, a cancelled
  run fires none;
- the trigger context a child's payload carries (``trigger_context``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "EXCERPT",
    "MAX_CONDITION",
    "MAX_DEPTH",
    "MISSING",
    "condition_matches",
    "condition_problem",
    "fires",
    "graph_problem",
    "output_text",
    "trigger_context",
]

MAX_DEPTH = 10  # ancestors of a job (OCS MAX_CHAIN_DEPTH)
MAX_CONDITION = 1024  # characters of a trigger_condition
EXCERPT = 3000  # characters of each output stream in a child's trigger context
_PREFIXES = ("contains:", "regex:")


def condition_problem(condition: str) -> str | None:
    """Why ``condition`` is not a valid ``trigger_condition`` (None: it is)."""
    if len(condition) > MAX_CONDITION:
        return f"must be at most {MAX_CONDITION} characters (got {len(condition)})"
    kind, sep, pattern = condition.partition(":")
    if not sep or f"{kind}:" not in _PREFIXES:
        return f"expected 'contains:TEXT' or 'regex:PATTERN', got {condition[:60]!r}"
    if not pattern:
        return f"the {kind} pattern must not be empty"
    if kind == "regex":
        try:
            re.compile(pattern)
        except re.error as exc:
            return f"invalid regular expression {pattern[:60]!r}: {exc}"
    return None


def condition_matches(condition: str | None, content: str) -> bool:
    """Whether a parent's output ``content`` satisfies ``condition`` (None: always).
    ``contains:`` is a case-sensitive substring; ``regex:`` is ``re.search``. A
    condition that is not valid (stored by an older version) never matches."""
    if condition is None:
        return True
    kind, _, pattern = condition.partition(":")
    if kind == "contains":
        return bool(pattern) and pattern in content
    if kind == "regex":
        try:
            return re.search(pattern, content) is not None
        except re.error:
            return False
    return False


def fires(trigger_on: str | None, ok: bool) -> bool:
    """Whether a child with ``trigger_on`` fires for a parent's final run (``ok``: it
    ended ``ok``; otherwise it failed for good)."""
    return trigger_on == "complete" or trigger_on == ("success" if ok else "failure")


MISSING: Any = object()  # ``parent_of``'s answer for a job that does not exist


def graph_problem(
    name: str,
    parent: str,
    parent_of: Callable[[str], object],
    children_of: Callable[[str], Iterable[str]],
) -> str | None:
    """Why ``name`` cannot have ``parent`` (None: it can). ``parent_of(job)``: the stored
    parent of a job (a name or None), or ``MISSING`` if there is no such job;
    ``children_of(job)``: the names of the jobs whose parent is ``job``."""
    path = [name, parent]
    depth = 1
    current = parent
    while True:
        if current == name:
            return f"cycle {' → '.join(path)}"
        up = parent_of(current)
        if up is MISSING:
            if current == parent:
                return f"unknown parent job {parent!r}"
            return f"{' → '.join(path)}: job {current!r} does not exist"
        if up is None:
            break
        assert isinstance(up, str)
        depth += 1
        path.append(up)
        current = up
        if depth > MAX_DEPTH + 1:
            break  # a stored cycle (never made here): stop walking
    below = _height(name, children_of)
    if depth + below > MAX_DEPTH:
        chain = " → ".join(reversed(path))
        extra = f" (and {below} level(s) of children below {name!r})" if below else ""
        return f"depth {depth + below} > {MAX_DEPTH}: {chain}{extra}"
    return None


def _height(name: str, children_of: Callable[[str], Iterable[str]]) -> int:
    """Levels of descendants below ``name`` (0: none); stops past MAX_DEPTH."""
    level, frontier, seen = 0, [name], {name}
    while frontier and level <= MAX_DEPTH:
        nxt = [c for job in frontier for c in children_of(job) if c not in seen]
        seen.update(nxt)
        if not nxt:
            break
        level += 1
        frontier = nxt
    return level


def output_text(stdout: str | None, result: Any) -> str:
    """What a condition is matched against: the run's stdout if it has one, else its
    result (a string as is; a shell or agent result's ``summary``; else JSON text)."""
    if stdout:
        return stdout
    if isinstance(result, str):
        return result
    if isinstance(result, dict) and isinstance(result.get("summary"), str):
        return str(result["summary"])
    if result is None:
        return ""
    import json

    try:
        return json.dumps(result, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(result)


def trigger_context(
    *,
    parent_job: str,
    parent_run_id: int,
    dispatch_id: int,
    status: str,
    exit_code: int | None,
    signal: int | None,
    timed_out: bool,
    error: str | None,
    stdout: str | None,
    stderr: str | None,
    result: Any,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``trigger`` object of a child's payload: the parent run, its status and an
    excerpt of its output (each stream ≤ ``EXCERPT`` characters), or the paths where a
    shell parent's streams were offloaded."""
    ctx: dict[str, Any] = {
        "parent_job": parent_job,
        "parent_run_id": parent_run_id,
        "dispatch_id": dispatch_id,
        "status": status,
        "exit_code": exit_code,
        "signal": signal,
        "timed_out": timed_out,
        "error": error[:2000] if error else error,
    }
    details = details or {}
    for name, text in (("stdout", stdout), ("stderr", stderr)):
        path = details.get(f"{name}_path")
        if isinstance(path, str):
            ctx[f"{name}_path"] = path
        elif text:
            ctx[name] = text[:EXCERPT]
    if "stdout" not in ctx and "stdout_path" not in ctx:
        out = output_text(None, result)
        if out:
            ctx["output"] = out[:EXCERPT]
    return ctx
