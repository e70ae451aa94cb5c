"""Circuit breaker state transitions (pure)."""

from __future__ import annotations

from shepherd.actors import breaker
from shepherd.actors.breaker import Breaker


def test_opens_after_fail_max_consecutive_failures() -> None:
    b = Breaker(fail_max=3, reset=30)
    for _ in range(2):
        b = breaker.on_failure(b, 100.0)
        assert b.state == "closed"
    b = breaker.on_failure(b, 100.0)
    assert (b.state, b.opened_at) == ("open", 100.0)
    assert breaker.allow(b, 129.0)[1] is False
    assert breaker.deferred_until(b, 110.0) == 130.0


def test_success_resets_the_count() -> None:
    b = breaker.on_failure(breaker.on_failure(Breaker(fail_max=3), 0.0), 0.0)
    b = breaker.on_success(b, 1.0)
    assert (b.state, b.failures) == ("closed", 0)
    b = breaker.on_failure(breaker.on_failure(b, 2.0), 2.0)
    assert b.state == "closed"


def test_half_open_lets_exactly_one_trial_through() -> None:
    b = Breaker(fail_max=1, reset=30)
    b = breaker.on_failure(b, 0.0)
    b, ok = breaker.allow(b, 30.0)
    assert ok and b.state == "half_open" and b.trial
    b, ok = breaker.allow(b, 30.5)
    assert not ok
    assert breaker.deferred_until(b, 30.5) == 31.5


def test_trial_outcome_closes_or_reopens() -> None:
    opened = breaker.on_failure(Breaker(fail_max=1, reset=30), 0.0)
    trial, _ = breaker.allow(opened, 31.0)
    assert breaker.on_success(trial, 32.0).state == "closed"
    again = breaker.on_failure(trial, 32.0)
    assert (again.state, again.opened_at) == ("open", 32.0)
    assert breaker.allow(again, 50.0)[1] is False


def test_probes_open_and_half_open() -> None:
    b = breaker.on_probe(Breaker(), False, 10.0)
    assert (b.state, b.opened_at) == ("open", 10.0)
    assert breaker.on_probe(b, False, 20.0).opened_at == 10.0  # stays open from the first
    b = breaker.on_probe(b, True, 20.0)
    assert b.state == "half_open"
    assert breaker.on_probe(Breaker(), True, 0.0) == Breaker()
