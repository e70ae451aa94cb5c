"""Controls: the pauses and rate limits admission obeys, and who waits for a drain.

**Pauses** (``store.ops.controls``, table ``pauses``): a scope — the whole ``runtime``,
a ``job`` (by name), a ``pool``, an ``executor``, an ``agent`` — whose queued
dispatches must not start. Admission parks such a dispatch on ``paused:<key>``
(``paused:runtime``, ``paused:job:nightly``): it leaves the ready heap, stays
``queued`` in the store, costs no timer and no poll, and is handed back to admission
the moment its scope is resumed (``load`` returns the resumed park keys; the loader
unparks every waiter). Running runs are not touched. The table is loaded at start and
on every ``Poke(controls=True)`` (a pause or resume from this process or another).

**Rates** (``rates.RateTable``): the buckets a dispatch draws from — ``executor:<name>``,
``pool:<name>``, ``agent:<id>`` (the config's ``[rates]``) and ``job:<id>`` (its spec's
``rate`` / ``burst``, made on first use and rebuilt when they change). ``wait`` is
when every one of them has a token (None: now); ``take`` spends them once admission
has said ``run``.

**Agents**: a dispatch's agent is, until the registry assigns one, its payload's
``agent`` or its job's ``target`` for the ``agent`` executor. The assignment step can
ask about the agent it picked with ``agent_held(agent_id)`` (a park key or None),
``agent_wait(agent_id, now)`` and ``agent_take(agent_id, now)``.

**Drain waiters**: ``Quiesce`` requests (``Runtime.drain``) wait here until no run is in
flight; ``idle(running)`` answers them after each pass.

A plain class, no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shepherd.actors.dispatcher.rates import RateLimit, RateTable
from shepherd.actors.messages import Entry
from shepherd.actors.primitives.mailbox import Reply
from shepherd.store.models import JobSpec, Pause

__all__ = ["PARKED_PREFIX", "Controls", "agent_of", "scope_keys"]

PARKED_PREFIX = "paused:"


def agent_of(entry: Entry, job: JobSpec) -> str | None:
    """The agent a dispatch of the ``agent`` executor talks to (as the executor picks it);
    None for one that needs capabilities: assignment picks its agent, and admission asks
    about that one (``agent_held`` / ``agent_wait``)."""
    if job.executor != "agent" or job.capabilities or entry.needs:
        return None
    agent = (entry.payload or {}).get("agent")
    return str(agent) if agent else (job.target or "main")


def scope_keys(entry: Entry, job: JobSpec) -> list[str]:
    """The pause keys that hold a dispatch of ``job``, widest first."""
    keys = ["runtime", f"job:{job.name}", f"executor:{job.executor}"]
    if job.pool:
        keys.append(f"pool:{job.pool}")
    agent = agent_of(entry, job)
    if agent is not None:
        keys.append(f"agent:{agent}")
    return keys


class Controls:
    __slots__ = ("_last", "_leaders", "_led", "_paused", "_waiters", "rates")

    def __init__(self, rates: Mapping[str, RateLimit] | None = None) -> None:
        self.rates = RateTable(rates)
        self._paused: dict[str, Pause] = {}
        self._waiters: list[Reply[int]] = []
        self._last: tuple[int, list[str]] = (0, [])  # wait's keys, for take's same entry
        self._leaders: dict[str, int] = {}  # bucket key → the dispatch deferred for it
        self._led: dict[int, str] = {}  # that dispatch → its bucket key

    # -- pauses --------------------------------------------------------------------

    def load(self, pauses: list[Pause]) -> list[str]:
        """The pauses now in force; returns the park keys of the scopes resumed."""
        new = {p.key: p for p in pauses}
        resumed = [PARKED_PREFIX + key for key in self._paused if key not in new]
        self._paused = new
        return resumed

    def paused(self, key: str) -> bool:
        return key in self._paused

    def held_key(self, entry: Entry, job: JobSpec) -> str | None:
        """``paused:<key>`` if a pause holds this dispatch, else None."""
        if not self._paused:
            return None
        for key in scope_keys(entry, job):
            if key in self._paused:
                return PARKED_PREFIX + key
        return None

    def agent_held(self, agent_id: str) -> str | None:
        key = f"agent:{agent_id}"
        return PARKED_PREFIX + key if key in self._paused else None

    # -- rates -----------------------------------------------------------------------

    def _keys(self, entry: Entry, job: JobSpec) -> list[str]:
        rates = self.rates
        if job.rate is not None:
            rates.set_job(entry.job_id, job.rate, job.burst)
        elif not rates:
            return []
        elif f"job:{entry.job_id}" in rates:
            rates.set_job(entry.job_id, None, None)
        keys = [f"executor:{job.executor}", f"job:{entry.job_id}"]
        if job.pool:
            keys.append(f"pool:{job.pool}")
        agent = agent_of(entry, job)
        if agent is not None:
            keys.append(f"agent:{agent}")
        return [k for k in keys if k in rates]

    def wait(self, entry: Entry, job: JobSpec, now: float) -> float | None:
        """None if every bucket of this dispatch has a token at ``now``; else when."""
        keys = self._keys(entry, job)
        self._last = (entry.id, keys)
        return self.rates.check(keys, now) if keys else None

    def take(self, entry: Entry, job: JobSpec, now: float) -> None:
        """The dispatch was admitted: one token from each of its buckets."""
        last_id, keys = self._last
        if last_id != entry.id:
            keys = self._keys(entry, job)
        if keys:
            self.rates.take(keys, now)

    # -- one dispatch waits on the clock per empty bucket; the rest are parked ---------

    def leader(self, bucket: str) -> int | None:
        """The dispatch deferred until ``bucket``'s next token, if any."""
        return self._leaders.get(bucket)

    def lead(self, bucket: str, dispatch_id: int) -> None:
        self._leaders[bucket] = dispatch_id
        self._led[dispatch_id] = bucket

    def unlead(self, dispatch_id: int) -> str | None:
        """``dispatch_id`` no longer waits on the clock (it is being checked again, started
        or gone): the bucket it led, whose next parked waiter takes its turn."""
        bucket = self._led.pop(dispatch_id, None)
        if bucket is not None and self._leaders.get(bucket) == dispatch_id:
            del self._leaders[bucket]
        return bucket

    @property
    def leading(self) -> bool:
        return bool(self._led)

    def agent_wait(self, agent_id: str, now: float) -> float | None:
        return self.rates.check([f"agent:{agent_id}"], now)

    def agent_take(self, agent_id: str, now: float) -> None:
        self.rates.take([f"agent:{agent_id}"], now)

    # -- drain waiters -------------------------------------------------------------

    def quiesce(self, reply: Reply[int]) -> None:
        """Answer ``reply`` once no run is in flight (after the pauses were read)."""
        self._waiters.append(reply)

    def idle(self, running: int) -> None:
        """After each pass: with nothing running, answer the drain waiters (with 0)."""
        if running or not self._waiters:
            return
        waiters, self._waiters = self._waiters, []
        for reply in waiters:
            reply.set(running)

    def statistics(self, now: float, waiting: Callable[[str], int]) -> dict[str, Any]:
        """Each pause (with the dispatches parked behind it now) and each bucket."""
        pauses = {
            key: {
                "paused_at": p.paused_at,
                "by": p.by,
                "reason": p.reason,
                "waiting": waiting(PARKED_PREFIX + key),
            }
            for key, p in self._paused.items()
        }
        return {"pauses": pauses, "rates": self.rates.statistics(now)}

    def __repr__(self) -> str:
        return f"<Controls {len(self._paused)} pauses, {len(self.rates)} buckets>"
