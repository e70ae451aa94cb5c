"""Retention decisions (actors/retention.py): plain functions, no event loop."""

from __future__ import annotations

import pytest

from shepherd.actors.retention import (
    FIRST_PASS_DELAY,
    RetentionConfig,
    first_pass_at,
    follow,
    kind_of,
    plan,
    summary,
)
from shepherd.runtime.config import load_config
from shepherd.store.errors import ConfigError
from shepherd.store.keys import DEFAULT_TTL
from shepherd.store.models import Seconds
from shepherd.store.ops import (
    PruneApprovals,
    Pruned,
    PruneDeliveries,
    PruneDispatches,
    PruneGroups,
    PruneKeys,
    PruneMessages,
    PruneRunsBefore,
    PruneRunsPerJob,
)

DAY = 86400.0
NOW = 1_700_000_000.0


def test_the_default_plan_is_the_documented_rules_in_order() -> None:
    n = 1000
    assert plan(RetentionConfig(), NOW) == [
        PruneKeys(now=NOW, limit=n),
        PruneRunsPerJob(keep=100, limit=n),
        PruneDispatches(status="done", before=NOW - 7 * DAY, keyed_before=NOW - 7 * DAY, limit=n),
        PruneDispatches(
            status="cancelled", before=NOW - 7 * DAY, keyed_before=NOW - 7 * DAY, limit=n
        ),
        PruneMessages(status="read", before=NOW - 30 * DAY, limit=n),
        PruneMessages(status="expired", before=NOW - 30 * DAY, limit=n),
        PruneMessages(status="failed", before=NOW - 30 * DAY, limit=n),
        PruneMessages(status="delivered", before=NOW - 3 * DAY, limit=n),
        PruneDeliveries(status="failed", before=NOW - 30 * DAY, limit=n),
        PruneDeliveries(status="sent", before=NOW - 3 * DAY, limit=n),
        PruneApprovals(before=NOW - 30 * DAY, limit=n),
        PruneGroups(before=NOW - 30 * DAY, limit=n),
    ]


def test_zero_turns_a_rule_off_and_optional_rules_turn_on() -> None:
    cfg = RetentionConfig(
        runs_per_job=0,
        runs_max_age=Seconds(2 * DAY),
        dispatches_max_age=Seconds(0),
        dead_max_age=Seconds(30 * DAY),
        messages_max_age=Seconds(0),
        messages_delivered_max_age=Seconds(0),
        deliveries_max_age=Seconds(0),
        deliveries_sent_max_age=Seconds(0),
        approvals_max_age=Seconds(0),
        groups_max_age=Seconds(0),
        batch_size=50,
    )
    assert plan(cfg, NOW) == [
        PruneKeys(now=NOW, limit=50),
        PruneRunsBefore(before=NOW - 2 * DAY, limit=50),
        PruneDispatches(
            status="dead", before=NOW - 30 * DAY, keyed_before=NOW - 30 * DAY, limit=50
        ),
    ]


def test_a_keyed_dispatch_outlives_a_short_age_until_its_key_expires() -> None:
    cfg = RetentionConfig(dispatches_max_age=Seconds(3600), dead_max_age=Seconds(60))
    ops = [op for op in plan(cfg, NOW) if isinstance(op, PruneDispatches)]
    assert [(op.status, op.before, op.keyed_before) for op in ops] == [
        ("done", NOW - 3600, NOW - DEFAULT_TTL),
        ("cancelled", NOW - 3600, NOW - DEFAULT_TTL),
        ("dead", NOW - 60, NOW - DEFAULT_TTL),
    ]
    longer = plan(cfg, NOW, key_lifetime=DAY)
    assert {op.keyed_before for op in longer if isinstance(op, PruneDispatches)} == {NOW - DAY}


def test_follow_continues_a_rule_while_its_batches_come_back_full() -> None:
    keys = PruneKeys(now=NOW, limit=10)
    assert follow(keys, Pruned(10, 0)) is keys
    assert follow(keys, Pruned(3, None)) is None
    runs = PruneRunsPerJob(keep=5, limit=10)
    assert follow(runs, Pruned(0, 41)) == PruneRunsPerJob(keep=5, limit=10, after_job=41)
    assert follow(runs, Pruned(7, None)) is None


def test_kinds_and_summary() -> None:
    assert [kind_of(op) for op in plan(RetentionConfig(dead_max_age=Seconds(1)), NOW)] == [
        "keys",
        "runs",
        "dispatches",
        "dispatches",
        "dead",
        *["messages"] * 4,
        *["deliveries"] * 2,
        "approvals",
        "groups",
    ]
    assert summary({"keys": 0, "runs": 1000, "dispatches": 20, "dead": 0}) == (
        "1000 runs, 20 dispatches"
    )
    assert summary({"runs": 0}) == ""


def test_the_first_pass_is_a_minute_after_start_or_one_short_interval() -> None:
    assert first_pass_at(NOW, RetentionConfig()) == NOW + FIRST_PASS_DELAY == NOW + 60
    assert first_pass_at(NOW, RetentionConfig(interval=Seconds(5))) == NOW + 5


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"runs_per_job": -1}, "retention.runs_per_job"),
        ({"batch_size": 0}, "retention.batch_size"),
        ({"batch_size": 10_001}, "retention.batch_size"),
        ({"interval": "0s"}, "retention.interval"),
        ({"dispatches_max_age": "-1d"}, "retention.dispatches_max_age"),
        ({"dead_max_age": "soon"}, "retention.dead_max_age"),
        ({"approvals_max_age": "-1d"}, "retention.approvals_max_age"),
        ({"approvals_max_age": "101y"}, "retention.approvals_max_age"),
        ({"groups_max_age": "later"}, "retention.groups_max_age"),
        ({"groups_max_age": -5}, "retention.groups_max_age"),
        ({"runs_to_keep": 5}, "runs_to_keep"),
    ],
)
def test_bad_retention_config_names_the_field(table: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(None, env={}, retention=table)


def test_retention_config_from_toml_durations() -> None:
    cfg = load_config(None, env={}, retention={"runs_max_age": "14d", "runs_per_job": 0})
    assert cfg.retention.runs_max_age == 14 * DAY and cfg.retention.runs_per_job == 0
    cfg = load_config(None, env={}, retention={"approvals_max_age": "7d", "groups_max_age": 0})
    assert cfg.retention.approvals_max_age == 7 * DAY and cfg.retention.groups_max_age == 0
    assert (RetentionConfig().approvals_max_age, RetentionConfig().groups_max_age) == (
        30 * DAY,
        30 * DAY,
    )
    with pytest.raises(ConfigError, match=r"retention\.runs_per_job"):
        RetentionConfig(runs_per_job=-3)  # a Struct built in Python is checked too
