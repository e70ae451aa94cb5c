"""Token buckets, loop-free: parsing, exact refill, the table, and admission deferring
a dispatch without spending a token or an attempt."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from shepherd.actors.dispatcher.admission import Admission, admit
from shepherd.actors.dispatcher.breakers import BreakerTable
from shepherd.actors.dispatcher.controls import Controls
from shepherd.actors.dispatcher.rates import Bucket, RateLimit, RatesConfig, RateTable, parse_rate
from shepherd.actors.dispatcher.ready import ReadyQueue
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec
from tests.actors.dispatcher.helpers import entry


def test_parse_rate_and_the_default_burst() -> None:
    assert parse_rate("10/s") == (Fraction(1, 10), 10)
    assert parse_rate("10/s", 20) == (Fraction(1, 10), 20)
    assert parse_rate("100/m") == (Fraction(60, 100), 100)
    assert parse_rate(" 2 / h ") == (Fraction(1800), 2)
    assert parse_rate("0.5/s") == (Fraction(2), 1)  # burst: N rounded up, at least 1
    assert parse_rate("2.5/s") == (Fraction(2, 5), 3)


@pytest.mark.parametrize(
    ("rate", "burst", "field", "words"),
    [
        ("10/parsec", None, "rate", "N/s, N/m or N/h"),
        ("10", None, "rate", "N/s"),
        ("0/s", None, "rate", "> 0"),
        ("-1/s", None, "rate", "> 0"),
        ("ten/s", None, "rate", "not a number"),
        ("2000000/s", None, "rate", "1,000,000"),
        (10, None, "rate", "a string"),
        ("10/s", 0, "burst", "between 1 and 1,000,000"),
        ("10/s", 1_000_001, "burst", "between 1 and 1,000,000"),
        ("10/s", "20", "burst", "an integer"),
        ("10/s", True, "burst", "an integer"),
    ],
)
def test_bad_rates_name_their_field(rate: object, burst: object, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_rate(rate, burst)
    assert err.value.field == field and words in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_rate(rate, burst, field="rates.executor.shell")
    assert err.value.field == f"rates.executor.shell.{field}"


def test_a_bucket_gives_its_burst_then_exactly_one_per_interval_never_early() -> None:
    b = Bucket("10/s", 20)
    t0 = 1_700_000_000.0
    for _ in range(20):
        assert b.wait(t0) is None
        b.take(t0)
    assert b.tokens(t0) == 0.0
    for k in range(1, 1001):  # a thousand tokens later: exact, no drift
        due = b.wait(t0)
        exact = Fraction(t0) + Fraction(k, 10)
        assert due is not None and Fraction(due) >= exact  # never early
        assert Fraction(math.nextafter(due, 0.0)) < exact  # the first float there
        assert b.wait(math.nextafter(due, 0.0)) == due
        assert b.wait(due) is None
        b.take(due)
    assert b.taken == 1020


def test_an_idle_bucket_refills_up_to_its_burst_only() -> None:
    b = Bucket("1/s", 3)
    for _ in range(3):
        b.take(0.0)
    assert b.tokens(0.0) == 0.0 and b.tokens(1.5) == 1.5
    assert b.tokens(100.0) == 3.0
    for _ in range(3):
        assert b.wait(100.0) is None
        b.take(100.0)
    assert b.wait(100.0) == 101.0


def test_the_table_checks_every_bucket_first_and_takes_from_all() -> None:
    t = RateTable({"executor:shell": RateLimit(rate="1/s"), "pool:db": RateLimit(rate="2/s")})
    keys = ["executor:shell", "pool:db"]
    assert t.check(keys, 0.0) is None
    t.take(keys, 0.0)
    assert t.check(keys, 0.0) == 1.0  # the executor's bucket is the one that waits
    stats = t.statistics(0.0)
    assert stats["executor:shell"] == {
        "rate": "1/s", "burst": 1, "tokens": 0.0, "taken": 1, "deferred": 1,
    }  # fmt: skip
    assert stats["pool:db"]["tokens"] == 1.0 and stats["pool:db"]["deferred"] == 0


def test_rates_config_names_the_bad_bucket() -> None:
    cfg = RatesConfig(executor={"shell": RateLimit(rate="10/s", burst=20)})
    assert cfg.buckets() == {"executor:shell": RateLimit(rate="10/s", burst=20)}
    with pytest.raises(ConfigError) as err:
        RatesConfig(pool={"db": RateLimit(rate="5/day")}).buckets()
    assert err.value.field == "rates.pool.db.rate"


JOB = JobSpec(name="j", target="t", rate="10/s", burst=2)


def test_admission_defers_without_a_token_and_takes_one_only_when_admitted() -> None:
    state = Admission()
    q = ReadyQueue()
    for d in range(1, 5):
        q.add(entry(d, kind="enqueue"), 0.0)
    a = admit(q, {1: JOB}, state, BreakerTable(fail_max=5, reset=30.0), 10, 0.0)
    assert [e.id for e in a.claims] == [1, 2] and a.deferred == 2
    assert q.next_wake() == 0.1
    deferred = q.get(3)
    assert deferred is not None and deferred.attempt == 0 and deferred.not_before == 0.1
    q.promote(0.1)
    a = admit(q, {1: JOB}, state, BreakerTable(fail_max=5, reset=30.0), 10, 0.1)
    assert [e.id for e in a.claims] == [3]  # one token per 100 ms
    bucket = state.controls.rates.get("job:1")
    assert bucket is not None and bucket.taken == 3


def test_no_free_slot_takes_no_token() -> None:
    state = Admission()
    q = ReadyQueue()
    q.add(entry(1, kind="enqueue"), 0.0)
    admit(q, {1: JOB}, state, BreakerTable(fail_max=5, reset=30.0), 0, 0.0)
    assert state.controls.rates.get("job:1") is None  # never even looked at


def test_a_changed_job_rate_makes_a_new_bucket_and_dropping_it_removes_it() -> None:
    c = Controls()
    e = entry(1, kind="enqueue")
    c.take(e, JOB, 0.0)
    c.take(e, JOB, 0.0)
    assert c.wait(e, JOB, 0.0) == 0.1
    faster = JobSpec(name="j", target="t", rate="100/s", burst=2)
    assert c.wait(e, faster, 0.0) is None  # a new, full bucket
    assert c.wait(e, JobSpec(name="j", target="t"), 0.0) is None
    assert "job:1" not in c.rates
