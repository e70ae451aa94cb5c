"""The pure rules of workflow chains (``store.chains``), the system key namespace and
the ``jobs tree`` layout: plain, loop-free tests."""

from __future__ import annotations

import pytest

from shepherd.runtime._chains import check_graph, parents_first
from shepherd.runtime._cli_chains import chain_tree
from shepherd.store import chains, keys
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ("contains:x", None),
        ("regex:^a.*b$", None),
        ("contains:", "must not be empty"),
        ("regex:", "must not be empty"),
        ("foo:bar", "expected 'contains:TEXT' or 'regex:PATTERN'"),
        ("contains", "expected 'contains:TEXT'"),
        ("regex:(", "invalid regular expression"),
        ("contains:" + "x" * 1015, None),  # exactly 1024
        ("contains:" + "x" * 1016, "at most 1024"),
    ],
)
def test_condition_syntax(condition: str, problem: str | None) -> None:
    got = chains.condition_problem(condition)
    assert (got is None) if problem is None else (got is not None and problem in got)


def test_condition_matching() -> None:
    assert chains.condition_matches(None, "")
    assert chains.condition_matches("contains:ERR", "an ERR here")
    assert not chains.condition_matches("contains:err", "an ERR here")
    assert chains.condition_matches(r"regex:\d{3}", "code 404")
    assert not chains.condition_matches("regex:(", "(")  # invalid at run time: never
    assert not chains.condition_matches("other:x", "x")


@pytest.mark.parametrize(
    ("trigger_on", "ok", "fires"),
    [
        ("success", True, True),
        ("success", False, False),
        ("failure", True, False),
        ("failure", False, True),
        ("complete", True, True),
        ("complete", False, True),
        (None, True, False),
    ],
)
def test_which_children_fire(trigger_on: str | None, ok: bool, fires: bool) -> None:
    assert chains.fires(trigger_on, ok) is fires


def _graph(parents: dict[str, str | None]) -> tuple[object, object]:
    def parent_of(job: str) -> object:
        return parents.get(job, chains.MISSING)

    def children_of(job: str) -> list[str]:
        return [k for k, v in parents.items() if v == job]

    return parent_of, children_of


def test_graph_problems_name_the_path() -> None:
    parents: dict[str, str | None] = {"a": None, "b": "a", "c": "b"}
    up, down = _graph(parents)
    assert chains.graph_problem("x", "c", up, down) is None  # type: ignore[arg-type]
    assert chains.graph_problem("a", "c", up, down) == "cycle a → c → b → a"  # type: ignore[arg-type]
    assert chains.graph_problem("x", "nope", up, down) == "unknown parent job 'nope'"  # type: ignore[arg-type]
    deep = {"j0": None, **{f"j{i}": f"j{i - 1}" for i in range(1, 11)}}
    up, down = _graph(deep)  # type: ignore[arg-type]
    assert chains.graph_problem("k", "j9", up, down) is None  # type: ignore[arg-type]
    problem = chains.graph_problem("k", "j10", up, down)  # type: ignore[arg-type]
    assert problem is not None and problem.startswith("depth 11 > 10: j0 → j1")


def test_trigger_context_excerpts_and_offload_paths() -> None:
    ctx = chains.trigger_context(
        parent_job="p",
        parent_run_id=7,
        dispatch_id=3,
        status="error",
        exit_code=2,
        signal=None,
        timed_out=False,
        error="e" * 5000,
        stdout="o" * 4000,
        stderr="err",
        result=None,
        details={"stderr_path": "/x/stderr.txt"},
    )
    assert len(ctx["stdout"]) == chains.EXCERPT == 3000
    assert ctx["stderr_path"] == "/x/stderr.txt" and "stderr" not in ctx
    assert len(ctx["error"]) == 2000
    assert (ctx["parent_job"], ctx["parent_run_id"], ctx["dispatch_id"]) == ("p", 7, 3)
    py = chains.trigger_context(
        parent_job="p", parent_run_id=1, dispatch_id=1, status="ok", exit_code=None,
        signal=None, timed_out=False, error=None, stdout=None, stderr=None,
        result={"rows": 12}, details=None,
    )  # fmt: skip
    assert py["output"] == '{"rows": 12}'


def test_system_keys_live_in_their_own_namespace() -> None:
    key = keys.chain_key(12, 3)
    assert key == "sys:chain:12:3"
    assert keys.key_problem(key) is not None
    assert keys.key_problem("chain:12:3") is None  # a producer may use the word


def test_check_graph_over_a_batch_and_parents_first() -> None:
    root = JobSpec(name="r")
    kid = JobSpec(name="k", parent="r", trigger_on="success")
    grand = JobSpec(name="g", parent="k", trigger_on="failure")
    ordered = parents_first([grand, kid, root])
    assert [s.name for s in ordered] == ["r", "k", "g"]
    check_graph(ordered, [])
    with pytest.raises(ConfigError) as err:
        check_graph([grand], [], field=lambda s: f"jobs ({s.name})")
    assert err.value.field == "jobs (g)" and "unknown parent job 'k'" in str(err.value)


def test_tree_lists_chains_and_orphans() -> None:
    specs = [
        JobSpec(name="lonely"),
        JobSpec(name="r"),
        JobSpec(name="k", parent="r", trigger_on="success"),
        JobSpec(name="orphan", parent="gone", trigger_on="complete"),
    ]
    tree = chain_tree(specs)
    assert [n["name"] for n in tree] == ["orphan", "r"]
    assert tree[0]["orphan"] is True
    assert [c["name"] for c in tree[1]["children"]] == ["k"]
