"""``[retention]``, the pruner's configuration (``actors.retention``: the rules and
their defaults), apart from the pruner's decisions so that loading the configuration
(every CLI command) imports no store write op."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shepherd.store.bounds import DAY, Range, check_bounds
from shepherd.store.durations import Seconds

__all__ = ["RetentionConfig"]


_Age = Annotated[Seconds, Range(0, 100 * 365 * DAY, "s")]


class RetentionConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[retention]`` in the config file."""

    interval: Annotated[Seconds, Range(1, 30 * DAY, "s")] = Seconds(3600.0)  # between passes
    batch_size: Annotated[int, Range(1, 10_000)] = 1000  # rows per write op
    runs_per_job: Annotated[int, Range(0, 1_000_000)] = 100
    runs_max_age: _Age = Seconds(0.0)
    dispatches_max_age: _Age = Seconds(7 * DAY)
    dead_max_age: _Age = Seconds(0.0)
    messages_max_age: _Age = Seconds(30 * DAY)
    messages_delivered_max_age: _Age = Seconds(3 * DAY)
    deliveries_max_age: _Age = Seconds(30 * DAY)
    deliveries_sent_max_age: _Age = Seconds(3 * DAY)
    approvals_max_age: _Age = Seconds(30 * DAY)  # OCS
    groups_max_age: _Age = Seconds(30 * DAY)

    def __post_init__(self) -> None:
        check_bounds(self, prefix="retention.")
