"""``GET /metrics``: Prometheus text format, through prometheus-client.

A custom collector on a registry of its own reads, at scrape time, the runtime's
statistics (dispatcher, supervisor, store writer, event hubs) and one grouped count
from the store (``Store.queue_depth``: the active dispatches by state, priority and
job, over an index); ``Observed`` keeps the counters and histograms fed from the event
stream (an ``EventHub`` listener: a few additions per event, no lock, no task). The
names are listed in ``METRICS`` (and in the README). A read token is needed, as for
the rest of the API (none when no token is configured).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from shepherd.actors.messages import Event, OutcomeEvent, RunStarted
from shepherd.actors.primitives.histogram import LATENCY, Histogram
from shepherd.runtime.http.api import error_response
from shepherd.runtime.http.context import HttpContext
from shepherd.runtime.http.events import caller
from shepherd.store.models import PRIORITIES

__all__ = ["METRICS", "Observed", "routes"]

METRICS: dict[str, str] = {
    "shepherd_queue_depth": "active dispatches by state, priority and job (gauge)",
    "shepherd_runs_total": "runs ended, by outcome",
    "shepherd_runs_started_total": "runs started",
    "shepherd_dispatches_total": "dispatches ended for good, by outcome and status",
    "shepherd_runs_running": "runs in flight in this process (gauge)",
    "shepherd_run_duration_seconds": "run start to outcome (histogram)",
    "shepherd_pickup_latency_seconds": "due (not_before) to run start (histogram)",
    "shepherd_schedule_lateness_seconds": "slot time to the slot's commit (histogram)",
    "shepherd_breaker_state": "1 for each executor's circuit breaker state",
    "shepherd_supervisor_restarts_total": "restarts by the root supervisor",
    "shepherd_supervisor_crashes_total": "actor crashes seen by the root supervisor",
    "shepherd_actor_starts_total": "starts per actor of the tree",
    "shepherd_store_batch_size": "write ops per commit of the store writer (histogram)",
    "shepherd_store_commit_seconds": "commit time of the store writer (histogram)",
    "shepherd_store_commit_failures_total": "commits the store refused",
    "shepherd_dispatcher_inbox": "messages waiting in the dispatcher's inbox (gauge)",
    "shepherd_events_dropped_total": "events a slow subscriber lost, by where",
    "shepherd_event_subscribers": "event stream clients connected (gauge)",
    "shepherd_nats_published_total": "events published to NATS",
    "shepherd_nats_dropped_total": "events not published to NATS (offline or feed full)",
}
_STARTS_KEPT = 100_000  # runs whose start is remembered for their duration


class Observed:
    """What the event stream feeds: counters and histograms (an ``EventHub`` listener)."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}
        self.finals: dict[tuple[str, str], int] = {}
        self.started = 0
        self.duration = Histogram(LATENCY)
        self.pickup = Histogram(LATENCY)
        self.lateness = Histogram(LATENCY)
        self._starts: dict[int, float] = {}
        self.first: Any = None  # called with the first event (the tree exists by then)

    def on_event(self, ev: Event) -> None:
        if self.first is not None:
            self.first, first = None, self.first
            first()
        if isinstance(ev, RunStarted):
            self.started += 1
            self.pickup.observe(max(0.0, ev.at - ev.not_before) if ev.not_before else 0.0)
            if len(self._starts) >= _STARTS_KEPT:  # outcomes lost: forget the oldest
                self._starts.pop(next(iter(self._starts)))
            self._starts[ev.run_id] = ev.at
        elif isinstance(ev, OutcomeEvent):
            if ev.run_id is not None:
                self.runs[ev.outcome] = self.runs.get(ev.outcome, 0) + 1
                began = self._starts.pop(ev.run_id, None)
                if began is not None:
                    self.duration.observe(max(0.0, ev.at - began))
            if ev.final:
                key = (ev.outcome, ev.status)
                self.finals[key] = self.finals.get(key, 0) + 1

    def on_slots(self, done: float, slots: list[float]) -> None:
        """The scheduler's ``observe`` hook: slots committed at ``done``."""
        for slot in slots:
            self.lateness.observe(max(0.0, done - slot))


def _histogram(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc)
    fam.add_metric([], buckets=h.buckets(), sum_value=h.sum)
    return fam


def _counter(name: str, doc: str, labels: list[str], rows: Any) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, doc, labels=labels)
    for values, n in rows:
        fam.add_metric(list(values), n)
    return fam


class Collector:
    """Reads the runtime at scrape time; ``depth`` is fetched (async) just before."""

    def __init__(self, rt: Any, observed: Observed, ctx: HttpContext) -> None:
        self.rt, self.observed, self.ctx = rt, observed, ctx
        self.depth: list[tuple[str, int, str, int]] = []

    def collect(self) -> Iterator[Metric]:
        o, rt, doc = self.observed, self.rt, METRICS
        actors: dict[str, Any] = getattr(rt, "_actors", {})
        _hook_scheduler(actors, o)
        depth = GaugeMetricFamily(
            "shepherd_queue_depth", doc["shepherd_queue_depth"], labels=["state", "priority", "job"]
        )
        for state, rank, job, n in self.depth:
            prio = PRIORITIES[rank] if 0 <= rank < len(PRIORITIES) else str(rank)
            depth.add_metric([state, prio, job], n)
        yield depth
        yield _counter(
            "shepherd_runs", doc["shepherd_runs_total"], ["outcome"],
            (((k,), v) for k, v in sorted(o.runs.items())),
        )  # fmt: skip
        yield CounterMetricFamily(
            "shepherd_runs_started", doc["shepherd_runs_started_total"], value=o.started
        )
        yield _counter(
            "shepherd_dispatches", doc["shepherd_dispatches_total"], ["outcome", "status"],
            sorted(o.finals.items()),
        )  # fmt: skip
        yield _histogram(
            "shepherd_run_duration_seconds", doc["shepherd_run_duration_seconds"], o.duration
        )
        yield _histogram(
            "shepherd_pickup_latency_seconds", doc["shepherd_pickup_latency_seconds"], o.pickup
        )
        yield _histogram(
            "shepherd_schedule_lateness_seconds",
            doc["shepherd_schedule_lateness_seconds"],
            o.lateness,
        )
        yield from _actors(actors, doc)
        root = getattr(rt, "_root", None)
        if root is not None:
            sup = root.statistics()
            yield CounterMetricFamily(
                "shepherd_supervisor_restarts",
                doc["shepherd_supervisor_restarts_total"],
                value=sup["restarts"],
            )
            yield CounterMetricFamily(
                "shepherd_supervisor_crashes",
                doc["shepherd_supervisor_crashes_total"],
                value=sup["crashes"],
            )
            yield _counter(
                "shepherd_actor_starts", doc["shepherd_actor_starts_total"], ["actor"],
                (((name, ), c["starts"]) for name, c in sup["children"].items()),
            )  # fmt: skip
        yield from self._events(actors)

    def _events(self, actors: dict[str, Any]) -> Iterator[Metric]:
        doc = METRICS
        hub = self.ctx.state.get("events")
        dropped = [(("runtime",), self.rt.events.dropped)]
        if hub is not None:
            dropped.append((("stream",), hub.dropped))
            yield GaugeMetricFamily(
                "shepherd_event_subscribers",
                doc["shepherd_event_subscribers"],
                value=hub.statistics()["subscribers"],
            )
        yield _counter(
            "shepherd_events_dropped", doc["shepherd_events_dropped_total"], ["where"], dropped
        )
        nats = actors.get("nats")
        if nats is not None:
            st = nats.statistics()
            yield CounterMetricFamily(
                "shepherd_nats_published", doc["shepherd_nats_published_total"],
                value=st["published"],
            )  # fmt: skip
            yield _counter(
                "shepherd_nats_dropped", doc["shepherd_nats_dropped_total"], ["why"],
                [(("offline",), st["offline_dropped"]), (("feed",), st["feed_dropped"])],
            )  # fmt: skip


def _actors(actors: dict[str, Any], doc: dict[str, str]) -> Iterator[Metric]:
    dispatcher = actors.get("dispatcher")
    if dispatcher is not None:
        st = dispatcher.statistics()
        yield GaugeMetricFamily(
            "shepherd_runs_running", doc["shepherd_runs_running"], value=st["running"]
        )
        yield GaugeMetricFamily(
            "shepherd_dispatcher_inbox", doc["shepherd_dispatcher_inbox"], value=st["inbox"]
        )
        breakers = GaugeMetricFamily(
            "shepherd_breaker_state", doc["shepherd_breaker_state"], labels=["executor", "state"]
        )
        for name, b in sorted(st["breakers"].items()):
            for state in ("closed", "open", "half_open"):
                breakers.add_metric([name, state], 1.0 if b["state"] == state else 0.0)
        yield breakers
    writer = actors.get("store")
    if writer is not None:
        yield _histogram(
            "shepherd_store_batch_size", doc["shepherd_store_batch_size"], writer.batch_sizes
        )
        yield _histogram(
            "shepherd_store_commit_seconds",
            doc["shepherd_store_commit_seconds"],
            writer.commit_seconds,
        )
        yield CounterMetricFamily(
            "shepherd_store_commit_failures",
            doc["shepherd_store_commit_failures_total"],
            value=writer.failures,
        )


def _hook_scheduler(actors: dict[str, Any], o: Observed) -> None:
    """Hear the scheduler's commits (its ``observe`` hook), once it exists."""
    scheduler = actors.get("scheduler")
    if scheduler is not None and getattr(scheduler, "observe", 0) is None:
        scheduler.observe = o.on_slots


def routes(ctx: HttpContext) -> list[BaseRoute]:
    rt = ctx.rt
    observed = Observed()
    ctx.state["metrics"] = observed
    observed.first = lambda: _hook_scheduler(getattr(rt, "_actors", {}), observed)
    if hasattr(rt, "events"):
        unlisten = rt.events.listen(observed.on_event, RunStarted, OutcomeEvent)
        ctx.state["metrics_unlisten"] = unlisten
    collector = Collector(rt, observed, ctx)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]

    async def metrics(request: Request) -> Response:
        who = caller(ctx, request)
        if isinstance(who, Response):
            return who
        if not who.allows("read"):
            return error_response(403, f"this needs a token of scope 'read' (yours: {who.scope!r})")
        _hook_scheduler(getattr(rt, "_actors", {}), observed)
        try:
            collector.depth = await rt.store.queue_depth()
        except Exception as exc:  # a scrape answers what it can: the rest still counts
            collector.depth = []
            ctx.state["metrics_error"] = str(exc)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics, methods=["GET"], name="metrics")]
