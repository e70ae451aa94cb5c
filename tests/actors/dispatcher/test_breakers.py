"""The breaker table, loop-free: which outcomes count, probes, the gate."""

from __future__ import annotations

from typing import Any

from shepherd.actors.dispatcher.breakers import BreakerTable, is_gateway_failure
from shepherd.actors.messages import RunFinished


def finished(**kw: Any) -> RunFinished:
    return RunFinished(run_id=1, dispatch_id=1, **{"outcome": "error", **kw})


def test_only_gateway_failures_count() -> None:
    assert is_gateway_failure(finished(reason="deferred"))
    assert is_gateway_failure(finished(details={"gateway_failure": True}))
    assert not is_gateway_failure(finished(error="the job's own bug"))
    t = BreakerTable(fail_max=2, reset=30.0)
    t.on_outcome("agent", finished(error="the job's own bug"), 0.0)
    assert len(t) == 0 and t.gate("agent", 0.0) is None  # no breaker: all pass


def test_fail_max_gateway_failures_open_it_until_reset() -> None:
    t = BreakerTable(fail_max=2, reset=30.0)
    t.on_outcome("agent", finished(reason="deferred"), 10.0)
    assert t.gate("agent", 10.0) is None
    t.on_outcome("agent", finished(reason="deferred"), 20.0)
    assert t.gate("agent", 21.0) == 50.0  # open: look again when the reset is over
    assert t.statistics() == {"agent": {"state": "open", "failures": 2}}


def test_after_the_reset_one_trial_passes_and_its_success_closes() -> None:
    t = BreakerTable(fail_max=1, reset=30.0)
    t.on_outcome("agent", finished(reason="deferred"), 0.0)
    assert t.gate("agent", 30.0) is None  # the trial
    assert t.gate("agent", 30.0) == 31.0  # one trial at a time
    t.on_outcome("agent", finished(outcome="ok"), 31.0)
    b = t.get("agent")
    assert b is not None and (b.state, b.failures) == ("closed", 0)


def test_a_trial_that_fails_for_its_own_reasons_ends_the_trial_only() -> None:
    t = BreakerTable(fail_max=1, reset=30.0)
    t.on_outcome("agent", finished(reason="deferred"), 0.0)
    assert t.gate("agent", 30.0) is None
    t.on_outcome("agent", finished(error="bad input"), 31.0)
    b = t.get("agent")
    assert b is not None and (b.state, b.trial) == ("half_open", False)
    assert t.gate("agent", 31.0) is None  # the next trial


def test_probes_open_and_half_open_it() -> None:
    t = BreakerTable(fail_max=5, reset=30.0)
    t.on_probe("agent", False, 5.0)
    assert t.gate("agent", 6.0) == 35.0
    t.on_probe("agent", True, 7.0)
    assert t.gate("agent", 7.0) is None  # half open: the trial
