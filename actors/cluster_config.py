"""``[cluster]``, the cluster actor's configuration (``actors.cluster``), apart from the
actor so that loading the configuration (the enqueue command's fast path) imports no
event loop."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shepherd.store.bounds import Range
from shepherd.store.models import Seconds

__all__ = ["ClusterConfig"]


class ClusterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[cluster]``: ``node`` (this runtime's node name; "" = ``host:pid:<8 hex>``,
    unique per process), ``lease`` (seconds a node stays alive without a renew; it
    renews every lease/3), ``concurrency`` (a cluster-wide cap on running runs, split
    between the live nodes; 0 = none: each node's own ``concurrency`` only)."""

    node: str = ""
    lease: Annotated[Seconds, Range(1, 300, "s")] = Seconds(15.0)
    concurrency: Annotated[int, Range(0, 10_000_000)] = 0
