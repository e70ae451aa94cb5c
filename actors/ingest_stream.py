"""Enqueue socket: other processes enqueue through this runtime's group commit.

Role: a unix stream socket beside the wake socket (``ingest_wire.stream_path``, mode
0600: the same user only) where producers of other processes (``runtime.producer``,
``shepherd enqueue``) send ``EnqueueItem`` frames; each is validated as the in-process
``Runtime.enqueue`` validates it and committed through the store writer, so they share
its group commits with everything else, and the dispatcher hears of them at once (no
wake-up, no reload). Each request gets one ``Answer`` once its dispatch is committed or
refused. Inbox: the socket. Sends: ``enqueue_each`` requests to the runtime (one
``InsertDispatches`` transaction per batch, then ``Enqueued`` to the dispatcher).
Restart type: permanent. Timers: none.

- **Batches**: each connection takes every frame already received (up to
  ``max_batch``) and enqueues them in one call; a producer that pipelines many
  requests pays one commit per batch, not one per request.
- **One bad item**: a frame that does not decode, or a request ``enqueue`` would refuse,
  gets its error ``Answer`` (same message and field as in-process); the others of the
  batch are committed and the connection stays usable.
- **Durability**: an ``Answer`` with a dispatch id is written only after its commit;
  killed before, the producer gets no id (its connection breaks) and nothing it was
  told exists is lost.
- A connection is served only once the config's jobs exist (``jobs_loaded``): a producer
  connected early waits, it is not refused.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any, Protocol

import anyio
import msgspec
from anyio.abc import SocketStream, TaskStatus

from shepherd.actors.ingest_wire import (
    Answer,
    EnqueueItem,
    decode_item,
    frame,
    split_frames,
    stream_path,
)
from shepherd.store.errors import ConfigError, ShepherdError, os_error
from shepherd.store.models import EnqueueRequest

__all__ = ["IngestStream", "Producer", "StreamProducer", "answer_for"]

_encode = msgspec.msgpack.Encoder().encode
_CONNECTION_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError)


class Producer(Protocol):
    """What an intake actor (this one, the spool's) asks of the runtime: its enqueue (one
    transaction, then the dispatcher told) and the event set once the config's jobs
    exist."""

    jobs_loaded: anyio.Event

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[int]: ...


class StreamProducer(Producer, Protocol):
    """The runtime's enqueue, item by item (``JobsApi.enqueue_each``)."""

    async def enqueue_each(
        self, items: Sequence[EnqueueItem]
    ) -> list[tuple[int, bool] | ShepherdError]: ...


def answer_for(rid: int, got: tuple[int, bool] | ShepherdError) -> Answer:
    """The reply to request ``rid``: (dispatch id, duplicate) or the error refusing it."""
    if isinstance(got, tuple):
        return Answer(id=rid, dispatch=got[0], duplicate=got[1])
    field = got.field if isinstance(got, ConfigError) else None
    return Answer(id=rid, error=str(got), kind=type(got).__name__, field=field)


class IngestStream:
    def __init__(self, db_path: str, producer: StreamProducer, *, max_batch: int = 2048) -> None:
        self._path = stream_path(db_path)
        self._producer = producer
        self._max_batch = max_batch
        self.connections = 0  # accepted, in all
        self.open = 0  # connected now
        self.requests = 0  # frames received
        self.committed = 0  # answered with a dispatch id
        self.refused = 0  # answered with an error
        self.batches = 0  # enqueue_each calls

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        try:  # bound, then chmod 0600, then listening: nobody else connects in between
            listener = await anyio.create_unix_listener(self._path, mode=0o600)
        except OSError as exc:  # a full or read-only temp directory: a store-level fault
            raise os_error(exc, f"enqueue socket {self._path}") from None
        try:
            async with listener, anyio.create_task_group() as tg:
                task_status.started()
                await listener.serve(self._serve, task_group=tg)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self._path)

    async def _serve(self, stream: SocketStream) -> None:
        self.connections += 1
        self.open += 1
        buf = bytearray()
        try:
            async with stream:
                await self._producer.jobs_loaded.wait()
                while True:
                    try:
                        buf += await stream.receive(1 << 20)
                        bodies = split_frames(buf)
                    except anyio.EndOfStream:
                        return
                    except ValueError as exc:  # not this protocol: say why, then hang up
                        await stream.send(frame(_encode(Answer(id=0, error=str(exc)))))
                        return
                    for start in range(0, len(bodies), self._max_batch):
                        answers = await self._enqueue(bodies[start : start + self._max_batch])
                        await stream.send(b"".join(frame(_encode(a)) for a in answers))
        except _CONNECTION_GONE:  # the producer left; what it was answered is committed
            return
        finally:
            self.open -= 1

    async def _enqueue(self, bodies: list[bytes]) -> list[Answer]:
        self.requests += len(bodies)
        answers: list[Answer] = []
        items: list[EnqueueItem] = []
        for body in bodies:
            got = decode_item(body)
            if isinstance(got, Answer):
                answers.append(got)
            else:
                items.append(got)
        if items:
            self.batches += 1
            results: list[tuple[int, bool] | ShepherdError]
            try:
                results = await self._producer.enqueue_each(items)
            except ShepherdError as exc:  # the store refused the batch: nothing committed
                results = [exc] * len(items)
            answers.extend(answer_for(item.id, r) for item, r in zip(items, results, strict=True))
        done = sum(a.dispatch is not None for a in answers)
        self.committed += done
        self.refused += len(answers) - done
        return answers

    def statistics(self) -> dict[str, Any]:
        return {
            "socket": self._path,
            "connections": self.connections,
            "open": self.open,
            "requests": self.requests,
            "committed": self.committed,
            "refused": self.refused,
            "batches": self.batches,
        }

    def __repr__(self) -> str:
        return f"<IngestStream {self._path} open={self.open} requests={self.requests}>"
