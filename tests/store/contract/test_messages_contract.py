"""Store contract: inbox messages (insert, inbox order, marks, expiry, threads) and
announce deliveries (attempts, retries, operator requeue) — through the protocol and
the op Structs only. Two stores on one database mark the same rows once."""

from __future__ import annotations

import anyio
import pytest

from shepherd.store.errors import StoreError
from shepherd.store.factory import open_store
from shepherd.store.models import encode_json
from shepherd.store.ops import (
    Attempt,
    ExpireMessages,
    InsertDeliveries,
    InsertMessages,
    MarkMessages,
    NewDelivery,
    NewMessage,
    RecordAttempts,
    RequeueDeliveries,
)
from shepherd.store.protocol import Store

pytestmark = pytest.mark.anyio


def _msg(to: str = "y", body: str = "hi", **fields: object) -> NewMessage:
    return NewMessage(from_agent=str(fields.pop("sender", "x")), to_agent=to, body=body, **fields)  # type: ignore[arg-type]


async def _send(store: Store, *rows: NewMessage, now: float = 1.0) -> list[int]:
    ids: list[int] = await store.apply_one(InsertMessages(list(rows), now))
    return ids


def _delivery(**fields: object) -> NewDelivery:
    values: dict[str, object] = {
        "kind": "announce",
        "body": "done",
        "channel": "log",
        "target": "ops",
        "max_attempts": 3,
        "next_attempt_at": 1.0,
    }
    values.update(fields)
    return NewDelivery(**values)  # type: ignore[arg-type]


async def test_a_message_reads_back_with_every_field(store: Store) -> None:
    row = NewMessage(
        from_agent="alice", to_agent="bob", body="look", kind="task", subject="s",
        priority=1, metadata=encode_json({"k": [1, 2]}), channel="log", delivery_to="ops",
        expires_at=90.0, job_id=7, run_id=8, owner="team", ack_required=True,
    )  # fmt: skip
    [a, b] = await _send(store, row, _msg(reply_to=None), now=5.0)
    assert b > a
    m = await store.message(a)
    assert m is not None
    assert (m.from_agent, m.to_agent, m.kind, m.subject, m.body, m.priority) == (
        "alice", "bob", "task", "s", "look", 1,
    )  # fmt: skip
    assert (m.status, m.created_at, m.metadata, m.channel, m.delivery_to) == (
        "pending", 5.0, {"k": [1, 2]}, "log", "ops",
    )  # fmt: skip
    assert (m.expires_at, m.job_id, m.run_id, m.owner, m.reply_to) == (90.0, 7, 8, "team", None)
    assert (m.delivered_at, m.read_at, m.ack_at, m.last_error) == (None, None, None, None)
    assert await store.message(b + 100) is None


async def test_the_inbox_orders_by_kind_then_priority_then_age_and_sees_broadcasts(
    store: Store,
) -> None:
    ids = await _send(
        store,
        _msg(kind="text"),
        _msg(kind="task", priority=0),
        _msg(kind="task", priority=2),
        _msg(to="broadcast", kind="constraint"),
        _msg(kind="fact"),
        _msg(kind="preference"),
        _msg(kind="decision"),
        _msg(to="z", kind="constraint"),  # someone else's
    )
    text, task_low, task_high, rule, fact, pref, decision, _other = ids
    got = [m.id for m in await store.inbox("y")]
    assert got == [rule, decision, fact, task_high, task_low, pref, text]
    assert [m.id for m in await store.inbox("y", limit=2)] == [rule, decision]
    assert [m.id for m in await store.inbox("z")] == [rule, _other]  # by age within a kind
    assert await store.apply_one(MarkMessages([text, fact], "delivered", 2.0)) == 2
    assert [m.id for m in await store.inbox("y", statuses=("delivered",))] == [fact, text]
    both = await store.inbox("y", statuses=("pending", "delivered"))
    assert len(both) == 7


async def test_the_inbox_leaves_out_expired_messages_when_given_the_time(store: Store) -> None:
    [gone, later, never] = await _send(
        store, _msg(expires_at=10.0), _msg(expires_at=50.0), _msg(), now=1.0
    )
    assert [m.id for m in await store.inbox("y", now=20.0)] == [later, never]
    assert len(await store.inbox("y")) == 3  # no time: every pending one
    assert await store.apply_one(MarkMessages([later], "read", 2.0)) == 1
    assert await store.apply_one(ExpireMessages(now=60.0)) == 1  # read ones stay read
    assert [(m.id, m.status) for m in await store.messages(status="expired")] == [(gone, "expired")]
    again = await store.message(later)
    assert again is not None and again.status == "read"
    assert await store.apply_one(ExpireMessages(now=60.0)) == 0
    assert [m.id for m in await store.inbox("y")] == [never]


async def test_marks_move_only_from_the_states_they_name(store: Store) -> None:
    [a, b, c, d] = await _send(store, _msg(), _msg(), _msg(), _msg())
    assert await store.apply_one(MarkMessages([], "delivered", 2.0)) == 0
    assert await store.apply_one(MarkMessages([a, b], "delivered", 2.0)) == 2
    assert await store.apply_one(MarkMessages([a, c], "delivered", 3.0)) == 1  # a was
    m = await store.message(a)
    assert m is not None and (m.status, m.delivered_at) == ("delivered", 2.0)
    assert await store.apply_one(MarkMessages([a, c, d], "read", 4.0)) == 3
    m = await store.message(c)
    assert m is not None and (m.status, m.read_at, m.ack_at, m.delivered_at) == (
        "read", 4.0, 4.0, 3.0,
    )  # fmt: skip
    m = await store.message(d)  # read straight from pending: delivered then too
    assert m is not None and (m.read_at, m.delivered_at) == (4.0, 4.0)
    assert await store.apply_one(MarkMessages([a], "read", 5.0)) == 0  # read already
    # ack: any status; pending / delivered ones become read; the first ack time stays
    assert await store.apply_one(MarkMessages([a, b], "ack", 6.0)) == 2
    a_row, b_row = await store.message(a), await store.message(b)
    assert a_row is not None and (a_row.status, a_row.read_at, a_row.ack_at) == ("read", 4.0, 4.0)
    assert b_row is not None and (b_row.status, b_row.read_at, b_row.ack_at) == ("read", 6.0, 6.0)
    with pytest.raises(StoreError):
        await store.apply_one(MarkMessages([a], "nonsense", 7.0))


async def test_an_acked_expired_message_stays_expired(store: Store) -> None:
    [a] = await _send(store, _msg(expires_at=2.0))
    assert await store.apply_one(ExpireMessages(now=3.0)) == 1
    assert await store.apply_one(MarkMessages([a], "ack", 4.0)) == 1
    m = await store.message(a)
    assert m is not None and (m.status, m.ack_at, m.read_at) == ("expired", 4.0, None)


async def test_messages_list_newest_first_by_sender_recipient_and_status(store: Store) -> None:
    [a, b, c] = await _send(store, _msg(to="y", sender="p"), _msg(to="z", sender="p"), _msg())
    assert [m.id for m in await store.messages()] == [c, b, a]
    assert [m.id for m in await store.messages(from_agent="p")] == [b, a]
    assert [m.id for m in await store.messages(to_agent="y")] == [c, a]
    assert [m.id for m in await store.messages(to_agent="y", from_agent="p")] == [a]
    await store.apply_one(MarkMessages([b], "delivered", 2.0))
    assert [m.id for m in await store.messages(status="pending")] == [c, a]
    assert [m.id for m in await store.messages(limit=1)] == [c]


async def test_a_thread_is_its_root_and_every_reply_below_it_oldest_first(store: Store) -> None:
    [root] = await _send(store, _msg(body="root"), now=1.0)
    [r1, other] = await _send(store, _msg(reply_to=root), _msg(body="alone"), now=2.0)
    [r2] = await _send(store, _msg(reply_to=root), now=3.0)
    [r11] = await _send(store, _msg(reply_to=r1), now=4.0)
    whole = [root, r1, r2, r11]
    for member in whole:
        assert [m.id for m in await store.thread(member)] == whole
    assert [m.id for m in await store.thread(other)] == [other]
    assert await store.thread(r11 + 100) == []


async def test_deliveries_round_trip_and_list_by_status_job_and_run(store: Store) -> None:
    rows = [
        _delivery(job_id=1, job_name="a", run_id=10, dispatch_id=5, outcome="ok"),
        _delivery(next_attempt_at=0.5, kind="alert", channel=None, target=None),
        _delivery(job_id=2, job_name="b", run_id=11),
    ]
    [a, b, c] = await store.apply_one(InsertDeliveries(rows, 1.0))
    d = await store.delivery(a)
    assert d is not None
    assert (d.kind, d.status, d.body, d.channel, d.target, d.attempts, d.max_attempts) == (
        "announce", "pending", "done", "log", "ops", 0, 3,
    )  # fmt: skip
    assert (d.created_at, d.updated_at, d.next_attempt_at, d.sent_at, d.sink) == (
        1.0, 1.0, 1.0, None, None,
    )  # fmt: skip
    assert (d.job_id, d.job_name, d.run_id, d.dispatch_id, d.outcome) == (1, "a", 10, 5, "ok")
    assert await store.delivery(c + 100) is None
    assert [x.id for x in await store.deliveries()] == [c, b, a]
    assert [x.id for x in await store.deliveries(job="b")] == [c]
    assert [x.id for x in await store.deliveries(run_id=10)] == [a]
    assert [x.id for x in await store.deliveries(status="pending", limit=2)] == [c, b]
    assert [x.id for x in await store.pending_deliveries()] == [b, a, c]  # earliest due first
    assert [x.id for x in await store.pending_deliveries(limit=1)] == [b]


async def test_an_attempt_sends_retries_or_gives_up_and_only_a_pending_one_changes(
    store: Store,
) -> None:
    [a, b, c] = await store.apply_one(
        InsertDeliveries([_delivery(), _delivery(), _delivery()], 1.0)
    )
    attempts = [
        Attempt(id=a, ok=True, sink="log"),
        Attempt(id=b, ok=False, error="503", next_attempt_at=9.0, sink="http"),
        Attempt(id=c, ok=False, error="gone"),
        Attempt(id=c + 100, ok=True),
    ]
    assert await store.apply_one(RecordAttempts(attempts, 2.0)) == [True, True, True, False]
    sent, retry, failed = [await store.delivery(i) for i in (a, b, c)]
    assert sent is not None and (sent.status, sent.sent_at, sent.sink, sent.attempts) == (
        "sent", 2.0, "log", 1,
    )  # fmt: skip
    assert retry is not None and (retry.status, retry.next_attempt_at, retry.last_error) == (
        "pending", 9.0, "503",
    )  # fmt: skip
    assert failed is not None and (failed.status, failed.last_error, failed.attempts) == (
        "failed", "gone", 1,
    )  # fmt: skip
    assert await store.apply_one(RecordAttempts([Attempt(id=a, ok=True)], 3.0)) == [False]
    # a later attempt keeps the error and the sink it does not replace
    assert await store.apply_one(RecordAttempts([Attempt(id=b, ok=True)], 10.0)) == [True]
    retry = await store.delivery(b)
    assert retry is not None and (retry.status, retry.sink, retry.last_error, retry.attempts) == (
        "sent", "http", "503", 2,
    )  # fmt: skip
    assert [x.id for x in await store.pending_deliveries()] == []


async def test_an_operator_requeues_failed_deliveries_with_a_fresh_budget(store: Store) -> None:
    [a, b] = await store.apply_one(InsertDeliveries([_delivery(max_attempts=2), _delivery()], 1.0))
    await store.apply_one(RecordAttempts([Attempt(id=a, ok=False, next_attempt_at=2.0)], 1.5))
    await store.apply_one(RecordAttempts([Attempt(id=a, ok=False, error="no")], 2.5))
    assert await store.apply_one(RequeueDeliveries([a, b, b + 100], 5.0)) == [a]  # b: pending
    d = await store.delivery(a)
    assert d is not None and (d.status, d.next_attempt_at, d.attempts, d.max_attempts) == (
        "pending", 5.0, 2, 4,
    )  # fmt: skip
    assert d.updated_at == 5.0
    assert await store.apply_one(RequeueDeliveries([a], 6.0)) == []


async def test_two_stores_on_one_database_mark_and_send_each_row_once(
    store: Store, database: str
) -> None:
    ids = await _send(store, *[_msg() for _ in range(20)])
    deliveries = await store.apply_one(InsertDeliveries([_delivery() for _ in range(20)], 1.0))
    other = await open_store(database)
    marked: list[int] = []
    sent: list[list[bool]] = []
    try:

        async def mark(s: Store) -> None:
            marked.append(await s.apply_one(MarkMessages(ids, "delivered", 2.0)))
            attempts = [Attempt(id=d, ok=True) for d in deliveries]
            sent.append(await s.apply_one(RecordAttempts(attempts, 2.0)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(mark, store)
            tg.start_soon(mark, other)
    finally:
        await other.close(checkpoint=False)
    assert sum(marked) == 20
    assert [a or b for a, b in zip(*sent, strict=True)] == [True] * 20
    assert sum(map(sum, sent)) == 20
    rows = await store.messages(status="delivered", limit=100)
    assert len(rows) == 20
