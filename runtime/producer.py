"""Enqueue from another process: ``Producer(database)``.

A process that is not the runtime (a web app's workers, a batch script, the CLI)
enqueues through the daemon serving ``database``: requests go over its enqueue socket
(``actors.ingest_stream``; mode 0600, so the same user only) and each id comes back once
the daemon has committed the dispatch, in its group commit with everything else, and
its dispatcher has been told (no wake-up, no reload). Requests are pipelined: many in
flight on one connection, answers matched by request id, so one process reaches
thousands of enqueues per second one job at a time::

    from shepherd.runtime.producer import Producer

    with Producer("shepherd.db") as p:
        dispatch_id = p.enqueue("report", {"to": "ops"}, priority="high")
        results = p.enqueue_many([{"job": "resize", "payload": {"n": i}} for i in range(1000)])

With no daemon serving the database (no socket, or nobody listening) it writes
directly, as ``shepherd enqueue`` always did: one transaction per call, then a wake-up
datagram for a daemon that starts later. Each call tries the socket again, so a
producer started before its daemon moves over once the daemon is up.

Errors are those of ``Runtime.enqueue``, with the same messages and fields
(``ConfigError``, ``NotFound``); ``enqueue_many`` returns an error in place of an id
for a refused item (the others are committed). A daemon that dies with requests in
flight raises ``Disconnected`` carrying what was answered before: every id there is
committed, and nothing else is reported as committed.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from shepherd.actors.ingest_wire import Answer, EnqueueItem, frame, split_frames, stream_path
from shepherd.store.errors import (
    ConfigError,
    Conflict,
    DatabaseCorrupt,
    DatabaseLocked,
    DiskFull,
    NotFound,
    ReadOnly,
    ShepherdError,
    StoreError,
)

if TYPE_CHECKING:
    from shepherd.runtime.config import Config

__all__ = ["Disconnected", "Producer", "error_of"]

Result = int | ShepherdError
_encode = msgspec.msgpack.Encoder().encode
_answers = msgspec.msgpack.Decoder(Answer)
_KINDS: dict[str, type[ShepherdError]] = {
    "ConfigError": ConfigError,
    "NotFound": NotFound,
    "Conflict": Conflict,
    # the store's faults keep their class across the socket (``shepherd enqueue``'s
    # message says DiskFull, as a direct write's does)
    **{cls.__name__: cls for cls in (DatabaseLocked, DiskFull, ReadOnly, DatabaseCorrupt)},
}


class Disconnected(StoreError):
    """The daemon went away with requests in flight. ``results`` holds, per request of
    the call, its id or error when it was answered, else None (not known committed)."""

    def __init__(self, message: str, results: list[Result | None]) -> None:
        super().__init__(message)
        self.results = results


def error_of(answer: Answer) -> ShepherdError:
    """The exception an error ``Answer`` stands for (``ConfigError`` keeps its field)."""
    text = answer.error or "refused"
    if answer.kind == "ConfigError" or answer.kind not in _KINDS:
        if answer.field and text.startswith(f"{answer.field}: "):
            return ConfigError(text.removeprefix(f"{answer.field}: "), field=answer.field)
        return ConfigError(text) if answer.kind == "ConfigError" else StoreError(text)
    return _KINDS[answer.kind](text)


class Producer:
    """Enqueue into the runtime serving ``database`` from another process (sync; one
    connection, pipelined). ``config`` is used only by the direct path (no daemon):
    its ``synchronous`` / ``busy_timeout`` settings and its ``app``."""

    def __init__(
        self,
        database: str | os.PathLike[str],
        *,
        config: Config | None = None,
        timeout: float | None = None,
    ) -> None:
        self.database = os.fspath(database)
        self._config = config
        self._timeout = timeout  # seconds without progress before Disconnected; None: wait
        self._sock: socket.socket | None = None
        self._next = 1
        self.sent = 0  # requests sent over the socket
        self.direct = 0  # requests written directly (no daemon)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def connected(self) -> bool:
        """Whether a daemon serves the database (connecting if not yet connected)."""
        if self._sock is None:
            path = stream_path(self.database)
            try:  # in a shared temp directory: only a socket of this user is the daemon's
                if os.stat(path).st_uid != os.getuid():
                    return False
            except OSError:
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
            except OSError:  # no socket file, nobody listening, or not ours to use
                sock.close()
                return False
            sock.setblocking(False)
            self._sock = sock
        return True

    def enqueue(self, job: str, payload: dict[str, Any] | None = None, **opts: Any) -> int:
        """Queue one run of ``job`` (``Runtime.enqueue``'s keyword arguments); its
        dispatch id once committed. Raises the error ``Runtime.enqueue`` raises."""
        [got] = self.enqueue_many([{"job": job, "payload": payload, **opts}])
        if isinstance(got, ShepherdError):
            raise got
        return got

    def enqueue_many(self, requests: Iterable[Mapping[str, Any]]) -> list[Result]:
        """Queue each request (a mapping of ``Runtime.enqueue``'s arguments, ``job``
        included): its dispatch id, or the error refusing it, in the same order."""
        return [r if isinstance(r, ShepherdError) else r[0] for r in self.submit(requests)]

    def submit(
        self, requests: Iterable[Mapping[str, Any]]
    ) -> list[tuple[int, bool] | ShepherdError]:
        """``enqueue_many`` with, per id, whether it is the existing dispatch of the
        request's idempotency key."""
        out: list[tuple[int, bool] | ShepherdError] = []
        items: list[EnqueueItem] = []
        for request in requests:  # a request of the wrong shape is refused here, alone
            got = self._item(request)
            if isinstance(got, EnqueueItem):
                items.append(got)
            out.append(got if isinstance(got, ShepherdError) else (len(items) - 1, False))
        if not items:
            return out
        answers = self._through_daemon(items) if self.connected() else self._direct(items)
        return [r if isinstance(r, ShepherdError) else answers[r[0]] for r in out]

    def _through_daemon(self, items: list[EnqueueItem]) -> list[tuple[int, bool] | ShepherdError]:
        """``items`` over the socket; one the frame cannot carry (an integer past 64 bits
        in its payload: msgpack's limit, not JSON's) is written directly, as with no
        daemon, so it goes in either way and the others are not held up by it."""
        bodies: list[bytes | None] = []
        for item in items:
            try:
                bodies.append(_encode(item))
            except OverflowError:
                bodies.append(None)
        wire = [i for i, body in enumerate(bodies) if body is not None]
        answers: list[tuple[int, bool] | ShepherdError | None] = [None] * len(items)
        if wire:
            try:
                got = self._exchange([items[i] for i in wire], [bodies[i] for i in wire])
            except Disconnected:
                self.close()
                raise
            for i, answer in zip(wire, got, strict=True):
                answers[i] = answer
        if local := [i for i, body in enumerate(bodies) if body is None]:
            for i, answer in zip(local, self._direct([items[i] for i in local]), strict=True):
                answers[i] = answer
        return [a for a in answers if a is not None]  # every one answered, in order

    def _direct(self, items: list[EnqueueItem]) -> list[tuple[int, bool] | ShepherdError]:
        self.direct += len(items)
        from shepherd.runtime._producer_direct import enqueue_direct

        return enqueue_direct(self.database, self._config, items)

    def _item(self, request: Mapping[str, Any]) -> EnqueueItem | ConfigError:
        rid, self._next = self._next, self._next + 1
        try:
            return msgspec.convert({**request, "id": rid}, EnqueueItem)
        except msgspec.ValidationError as exc:
            text, _, where = str(exc).partition(" - at `$.")
            return ConfigError(text, field=where.rstrip("`") or None)

    def _exchange(
        self, items: list[EnqueueItem], bodies: list[bytes | None]
    ) -> list[tuple[int, bool] | ShepherdError]:
        sock = self._sock
        assert sock is not None
        out = memoryview(b"".join(frame(body) for body in bodies if body is not None))
        index = {item.id: i for i, item in enumerate(items)}
        results: list[tuple[int, bool] | ShepherdError | None] = [None] * len(items)
        buf = bytearray()
        sent = 0
        waiting = len(items)
        self.sent += len(items)
        poller = select.poll()
        while waiting:
            poller.register(sock, select.POLLIN | (select.POLLOUT if sent < len(out) else 0))
            events = poller.poll(None if self._timeout is None else self._timeout * 1000)
            if not events:
                raise self._gone(TimeoutError(f"no answer within {self._timeout}s"), results)
            for _, event in events:
                if event & select.POLLOUT:
                    try:
                        sent += sock.send(out[sent : sent + (1 << 20)])
                    except BlockingIOError:
                        pass
                    except OSError as exc:
                        raise self._gone(exc, results) from None
                if event & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    try:
                        data = sock.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        raise self._gone(exc, results) from None
                    if not data:
                        raise self._gone(None, results)
                    buf += data
                    for body in split_frames(buf):
                        answer = _answers.decode(body)
                        i = index.pop(answer.id, None)
                        if i is None:  # an undecodable request's answer (id 0): ours are valid
                            raise StoreError(f"daemon refused the stream: {answer.error}")
                        results[i] = (
                            (answer.dispatch, answer.duplicate)
                            if answer.dispatch is not None
                            else error_of(answer)
                        )
                        waiting -= 1
        return [r for r in results if r is not None]

    def _gone(self, exc: Exception | None, results: list[Any]) -> Disconnected:
        why = f" ({exc})" if exc is not None else ""
        done = [r if not isinstance(r, tuple) else r[0] for r in results]
        return Disconnected(f"the daemon serving {self.database} went away{why}", done)

    def __repr__(self) -> str:
        state = "socket" if self._sock is not None else "direct"
        return f"<Producer {self.database} {state} sent={self.sent} direct={self.direct}>"
