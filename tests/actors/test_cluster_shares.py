"""A node's shares of the cluster-wide limits (``actors.cluster.Membership``): pool
limits and rate buckets split by the live nodes' count and this node's rank, the
remainder to the lowest ranks; a cluster of one keeps every limit whole."""

from __future__ import annotations

from shepherd.actors.cluster import Membership
from shepherd.actors.dispatcher.admission import Admission
from shepherd.actors.dispatcher.rates import RateLimit
from shepherd.store.cluster import NodeLease


def _member(rank: int, count: int) -> Membership:
    m = Membership("n")
    m.update(NodeLease(node="n", epoch=5, rank=rank, count=count, single=False))
    return m


def test_a_cluster_of_one_keeps_every_limit_whole() -> None:
    m = Membership("n")
    assert m.single and m.share(7) == 7 and m.recovery_scope() is None
    assert _member(0, 1).share(7) == 7 and _member(0, 1).recovery_scope() == "n"


def test_pool_limits_split_by_rank_and_hand_on_what_a_bigger_share_frees() -> None:
    adm = Admission({"db": 5})
    assert adm.pool_limit("db") == 5 and adm.pool_limit("other") == 1
    adm.shares(_member(2, 3))
    assert adm.pool_limit("db") == 1 and adm.pool_limit("other") == 0  # a mutex: rank 0's
    adm.hold(1, "db")
    adm.busy_pools.add("db")
    assert adm.shares(_member(0, 2)) == ["pool:db", "pool:db"]  # 3 now, 1 held
    assert adm.pool_limit("other") == 1


def test_rate_buckets_split_their_rate_and_burst() -> None:
    adm = Admission(rates={"executor:shell": RateLimit(rate="10/s", burst=5)})
    bucket = adm.controls.rates.get("executor:shell")
    assert bucket is not None and bucket.burst == 5
    adm.shares(_member(1, 2))
    half = adm.controls.rates.get("executor:shell")
    assert half is not None and half.burst == 2 and half.interval == bucket.interval * 2
    adm.shares(_member(0, 2))
    lead = adm.controls.rates.get("executor:shell")
    assert lead is not None and lead.burst == 3
    adm.shares(Membership("n"))
    whole = adm.controls.rates.get("executor:shell")
    assert whole is not None and (whole.burst, whole.interval) == (5, bucket.interval)
