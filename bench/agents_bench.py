"""Capability-based assignment: the cost of one assignment, beside the plain dispatch
path measured the same way in the same run (README "Agents"; issue 11).

Per size ``n`` (queued dispatches; ``n / 100`` agents, so 1,000 agents at 100,000):

- **admission** (the dispatcher's own collaborators, no store, no event loop): a ready
  queue of ``n`` dispatches that need capabilities (1-2 of 24 names, at random; 1 % need
  one no agent has and park as unmatched), agents with 2-6 capabilities each,
  ``max_concurrent`` 3, a mix of ready / sleeping / on-demand / draining. The
  dispatcher's ``admit`` pass runs with 64 free slots, then the runs it admitted end
  (``release``, their keys handed on), until the queue is empty.
  ``assign_per_s``: assignments per second over the admit passes;
  ``assign_p50_us`` / ``_p99``: one admission (``admit`` with one free slot: pop,
  checks, need, choose, hold) timed alone. The same with dispatches that need nothing
  (``plain_*``) is the reference; ``ratio`` is to it. Flat figures from the small to the
  large size say the cost does not grow with the queue or the number of agents.
- **runtime** (``n_e2e`` = min(n, 20,000)): dispatches of a no-op python job through a
  real ``Runtime`` (SQLite file, concurrency 64), ``enqueue_many`` then the last done,
  with capabilities over 1,000 agents vs without (``e2e_*_per_s``).

Run alone: ``python -m bench --only agents``.
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench.context import BenchContext
from bench.report import Result, percentiles
from shepherd.actors.dispatcher.admission import Admission, admit
from shepherd.actors.dispatcher.breakers import BreakerTable
from shepherd.actors.dispatcher.ready import ReadyQueue
from shepherd.actors.messages import Entry
from shepherd.runtime import Config, EnqueueRequest, JobSpec, RunContext, Runtime
from shepherd.store.models import Agent

SCENARIO = "agents"
CAPS = [f"cap{i:02d}" for i in range(24)]
FREE = 64
E2E_MAX = 20_000


def _agents(count: int, rng: random.Random) -> list[Agent]:
    statuses = ["ready"] * 6 + ["sleeping", "draining"]
    return [
        Agent(
            id=f"agent-{i:05d}",
            name=f"agent-{i:05d}",
            capabilities=sorted(rng.sample(CAPS, rng.randint(2, 6))),
            status=rng.choice(statuses),  # type: ignore[arg-type]
            policy=rng.choice(["always-on", "always-on", "on-demand"]),  # type: ignore[arg-type]
            max_concurrent=3,
            rev=i + 1,
        )
        for i in range(count)
    ]


def _needs(rng: random.Random, agents: list[Agent], unmatched: float = 0.01) -> tuple[str, ...]:
    """1-2 capabilities of one agent that takes work (so someone can take it), or, for
    ``unmatched`` of them, one nobody has."""
    if rng.random() < unmatched:
        return ("nobody-has-this",)
    a = rng.choice(agents)
    while a.status == "draining":
        a = rng.choice(agents)
    return tuple(sorted(rng.sample(a.capabilities, rng.randint(1, 2))))


def _queue(n: int, rng: random.Random, agents: list[Agent], with_needs: bool) -> ReadyQueue:
    q = ReadyQueue()
    for i in range(1, n + 1):
        e = Entry(
            id=i,
            seq=i,
            job_id=1,
            priority=rng.randrange(5),
            not_before=0.0,
            attempt=0,
            max_attempts=3,
            needs=_needs(rng, agents) if with_needs else (),
        )
        q.add(e, 0.0)
    return q


def _setup(n: int, agent_count: int, with_needs: bool, seed: int) -> tuple[ReadyQueue, Admission]:
    rng = random.Random(seed)
    agents = _agents(agent_count, rng)
    state = Admission()
    state.agents.load(agents)
    return _queue(n, rng, agents, with_needs), state


def _drain(n: int, agent_count: int, with_needs: bool, seed: int) -> tuple[int, float]:
    """Admit the whole queue in passes of ``FREE`` slots; (assigned, seconds in admit)."""
    queue, state = _setup(n, agent_count, with_needs, seed)
    jobs = {1: JobSpec(name="j")}
    breakers = BreakerTable(fail_max=5, reset=30.0)
    assigned = 0
    spent = 0.0
    while queue.has_ready:
        t = time.perf_counter()
        a = admit(queue, jobs, state, breakers, FREE, 0.0)
        spent += time.perf_counter() - t
        assigned += len(a.claims)
        for e in a.claims:  # the runs end: slots and keys come back
            state.release(e.job_id, None)
            for key in state.agents.release(e.id):
                queue.unpark(key)
    return assigned, spent


def _latency(n: int, agent_count: int, with_needs: bool, seed: int, samples: int) -> list[float]:
    """One admission at a time (one free slot), each timed alone, in µs."""
    queue, state = _setup(n, agent_count, with_needs, seed)
    jobs = {1: JobSpec(name="j")}
    breakers = BreakerTable(fail_max=5, reset=30.0)
    out: list[float] = []
    held: list[Entry] = []
    while queue.has_ready and len(out) < samples:
        t = time.perf_counter_ns()
        a = admit(queue, jobs, state, breakers, 1, 0.0)
        took = time.perf_counter_ns() - t
        if a.claims:
            out.append(took / 1000)
            held += a.claims
        if len(held) >= FREE or (held and not a.claims):  # ~FREE runs in flight
            e = held.pop(0)
            state.release(e.job_id, None)
            for key in state.agents.release(e.id):
                queue.unpark(key)
    return out


async def _noop(ctx: RunContext) -> None:
    return None


async def _e2e(ctx: BenchContext, n: int, agent_count: int, with_needs: bool) -> float:
    db = ctx.path(SCENARIO, f"e2e-{n}-{'caps' if with_needs else 'plain'}.db")
    rng = random.Random(11)
    agents = _agents(agent_count, rng)
    async with Runtime.open(
        Config(database=str(db), concurrency=64), targets={"noop": _noop}
    ) as rt:
        await rt.add_job(JobSpec(name="work", target="noop"))
        if with_needs:
            for a in agents:
                status = None if a.status == "draining" else a.status
                await rt.add_agent(
                    a.id, capabilities=a.capabilities, policy=a.policy, status=status
                )
                if status is None:
                    await rt.drain_agent(a.id)
        reqs: list[Any] = []
        for _ in range(n):
            needs = list(_needs(rng, agents, unmatched=0)) if with_needs else None
            reqs.append(EnqueueRequest(job="work", capabilities=needs))
        began = time.perf_counter()
        ids: list[int] = []
        for lo in range(0, n, 1_000):
            ids += await rt.enqueue_many(reqs[lo : lo + 1_000])
        for dispatch_id in ids:
            await rt.wait(dispatch_id, timeout=600)
        return n / (time.perf_counter() - began)


async def run(ctx: BenchContext) -> list[Result]:
    out: list[Result] = []
    for n in ctx.sizes:
        agent_count = max(10, n // 100)
        note = f"{agent_count} agents, {n} queued"
        figures: dict[str, float] = {}
        for kind, with_needs in (("plain", False), ("assign", True)):
            assigned, spent = _drain(n, agent_count, with_needs, seed=n)
            figures[f"{kind}_per_s"] = assigned / spent
            lat = percentiles(_latency(n, agent_count, with_needs, seed=n, samples=20_000))
            figures[f"{kind}_p50_us"] = lat.p50
            figures[f"{kind}_p99_us"] = lat.p99
        for kind in ("plain", "assign"):
            ref = None if kind == "plain" else "plain"
            out.append(Result(scenario=SCENARIO, metric=f"{kind}_per_s", n=n, unit="/s",
                              value=figures[f"{kind}_per_s"], note=note,
                              ratio_to=f"{SCENARIO}:plain_per_s" if ref else None))  # fmt: skip
            for p in ("p50", "p99"):
                metric = f"{kind}_{p}_us"
                to = f"{SCENARIO}:plain_{p}_us" if ref else None
                out.append(Result(scenario=SCENARIO, metric=metric, n=n, unit="µs",
                                  value=figures[metric], note=note, ratio_to=to))  # fmt: skip
        n_e2e = min(n, 1_000 if ctx.quick else E2E_MAX)
        plain = await _e2e(ctx, n_e2e, agent_count, False)
        caps = await _e2e(ctx, n_e2e, min(1_000, agent_count), True)
        note = f"{n_e2e} dispatches, {min(1_000, agent_count)} agents, concurrency 64"
        out.append(Result(scenario=SCENARIO, metric="e2e_plain_per_s", n=n, unit="/s",
                          value=plain, note=note))  # fmt: skip
        to = f"{SCENARIO}:e2e_plain_per_s"
        out.append(Result(scenario=SCENARIO, metric="e2e_assign_per_s", n=n, unit="/s",
                          value=caps, note=note, ratio_to=to))  # fmt: skip
    return out
