"""What the CLI's store-backed commands share: opening the store, waking the daemon,
telling whether a daemon serves a database, and argparse value types.

The CLI never goes through a ``Runtime``: it opens the database directly
(``store.factory.open_store``), applies one write op, and sends the daemon a wake-up datagram
(``actors.ingest.send_wake``) so that it reads what changed within milliseconds. The
module is long because the argparse value types of every command (ids, durations,
URLs, bounded numbers) live here, beside the store helpers they check for.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shepherd.runtime._cli_fmt import CliError
from shepherd.runtime._cli_help import first_run_hint
from shepherd.store.bounds import MAX_ID, TOO_DEEP, Range, check_http_url, check_json, check_value
from shepherd.store.errors import ConfigError
from shepherd.store.models import parse_duration

if TYPE_CHECKING:  # the executors and the store engine are imported by the functions
    # that use them, so a command that needs neither does not load them
    from shepherd.actors.executors.base import Executor
    from shepherd.runtime.config import Config
    from shepherd.store.protocol import Store

__all__ = [
    "NotUnicode",
    "bounded_int",
    "builtin_executors",
    "daemon_pid",
    "duration",
    "id_or_name",
    "instant",
    "json_object",
    "loads_json",
    "not_unicode",
    "open_store",
    "origin",
    "positive_int",
    "row_id",
    "wall",
]


def wall() -> float:
    return time.time()


def origin() -> str:
    """The ``origin`` of rows this process writes; never the daemon's own instance id."""
    return f"cli:{os.getpid()}"


def builtin_executors(cfg: Config, *, with_app: bool = True) -> dict[str, Executor]:
    """The executor table of a standalone daemon, built as ``Runtime.open`` builds it
    (``agent`` / ``event`` refuse jobs when ``cfg`` has no ``[gateway]``), to validate
    with. With an ``app`` in ``cfg`` (``--app``) it is imported and a python job must
    name one of its targets, with a payload that fits the target's type; without one,
    a python target need not be registered here: it only has to exist where it runs.
    Nothing here opens a connection (the HTTP client is created on first use)."""
    from shepherd.actors.executors.external import ExternalExecutor
    from shepherd.actors.executors.gateway import HttpClient
    from shepherd.actors.executors.python import PythonExecutor
    from shepherd.actors.executors.shell import ShellExecutor
    from shepherd.actors.primitives.clock import RealClock
    from shepherd.runtime.messaging import gateway_executors
    from shepherd.runtime.targets import load_app

    python = PythonExecutor(app=cfg.app) if with_app and cfg.app else PythonExecutor()
    if with_app and cfg.app:
        for name, target in load_app(cfg.app).items():
            python.register(name, target.fn, payload=target.payload)
    table: dict[str, Executor] = {"python": python, "shell": ShellExecutor()}
    table["external"] = ExternalExecutor(RealClock())
    table.update(gateway_executors(cfg, HttpClient(), RealClock()))
    return table


@asynccontextmanager
async def open_store(cfg: Config, *, create: bool = True) -> AsyncIterator[Store]:
    """The database, after the bounded integrity check (``store.sqlite.integrity``): a damaged
    file is refused (``DatabaseCorrupt``) before this command writes anything. A
    command that only reads or changes what is there (``create=False``) on a file that
    does not exist yet fails with a first-run hint (exit 1)."""
    url = "://" in cfg.database  # a postgresql:// URL (Config refuses other schemes)
    # not there yet, or an empty file (SQLite would make it a database): nothing to read
    if not create and not url and _empty_or_missing(cfg.database):
        raise CliError(first_run_hint(cfg.database), code=1)
    import anyio

    from shepherd.store import factory as store_factory

    store = await store_factory.open_store(
        cfg.database,
        synchronous=cfg.synchronous,
        busy_timeout=float(cfg.busy_timeout),
        create=create,
        check="bounded",
    )
    try:
        yield store
    finally:
        with anyio.CancelScope(shield=True):
            await store.close(checkpoint=False)


def _empty_or_missing(path: str) -> bool:
    try:
        return os.path.getsize(path) == 0
    except FileNotFoundError:
        return True


def daemon_pid(database: str) -> int | None:
    """The pid of the runtime serving ``database``, or None.

    A runtime holds an exclusive flock on ``<database>.lock`` (beside the resolved file:
    every spelling of its path names the same lock, ``actors.socket_path.lock_path``)
    and writes its pid there. The lock is probed (shared, non-blocking) only when that
    pid is alive: probing a lock file whose owner is gone could make a daemon that starts
    at that very moment fail to take its lock. A runtime that serves the file under
    another name (a hard link) holds the flock of the file itself on Linux, found in
    ``/proc/locks`` (``flock_holder``) without opening the database: closing a
    descriptor of it would drop this process's SQLite locks on it.
    """
    from shepherd.actors.socket_path import flock_holder, lock_path, resolved

    pid = _lock_file_pid(lock_path(database))
    if pid is not None:
        return pid
    other = flock_holder(resolved(database))
    return other if other is not None and _alive(other) else None


def _lock_file_pid(path: str) -> int | None:
    try:
        f = open(path, errors="replace")  # noqa: SIM115 - closed below; damaged: no pid
    except OSError:
        return None
    with f:
        words = f.read().split()
        pid = int(words[1]) if len(words) >= 2 and words[0] == "pid" and words[1].isdigit() else 0
        if pid <= 0 or not _alive(pid):
            return None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return pid
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # overflow: no such pid (a damaged file)
        return False
    except PermissionError:
        return True
    return True


# -- argparse value types: a bad value exits 2 with "argument --flag: <why>" -----------


def http_url(text: str) -> str:
    """``--url``: an http:// or https:// URL with a host (and a valid port)."""
    try:
        check_http_url(text, field="")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def duration(text: str) -> float:
    """``30``, ``500ms``, ``5m``, ``1.5h``, ``7d`` → seconds."""
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("duration: ")) from None


_INTEGER = Range(1, 2**63 - 1)  # what an SQLite INTEGER holds


def bounded_int(bounds: Range) -> Callable[[str], int]:
    """An argparse type: an integer within ``bounds`` (``Range`` of the field it sets)."""

    def parse(text: str) -> int:
        # ASCII digits only, as the HTTP API's ids: Python's int() also takes "1_0",
        # " 1", "+1" and other scripts' digits, which would name another row than typed
        digits = text[1:] if text.startswith("-") else text
        if not (digits.isascii() and digits.isdigit()):
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        value = int(text)
        try:
            check_value(value, bounds, field="", integer=True)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    parse.__name__ = "integer"  # argparse's "invalid <name> value" when it fails
    return parse


positive_int = bounded_int(_INTEGER)  # limits, counts
row_id = bounded_int(Range(1, MAX_ID))  # every id argument: the HTTP API's bound too
row_id.__name__ = "id"


def id_or_name(text: str) -> int | str:
    """An argument that is a name or, all digits, an id (``groups show GROUP``): an id
    is bounded as ``row_id``'s (a name is never all digits)."""
    return row_id(text) if text.isascii() and text.isdigit() else text


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


class NotUnicode(ValueError):
    """Decoded JSON holds a string that is not valid Unicode: an unpaired surrogate
    (JSON's ``"\\ud800"`` escape decodes to one), which no UTF-8 encoder can write, so
    the store, a socket or a file would fail on it after the input was accepted."""


_SURROGATE = re.compile("[\ud800-\udfff]")


def not_unicode(text: str) -> str | None:
    """Why ``text`` is not valid Unicode, or None. A command-line word that was not
    UTF-8 reaches Python with each bad byte as a surrogate (``surrogateescape``)."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    code = ord(found.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte it stands for
        return f"is not valid UTF-8 (byte 0x{code - 0xDC00:02x})"
    return f"holds an unpaired surrogate (\\u{code:04x})"


def _check_unicode(value: Any) -> None:
    """NotUnicode naming where the first string (a value or a key) that is not valid
    Unicode sits in ``value``; walked with a stack, as input may be ~1000 levels deep."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            problem = not_unicode(item)
            if problem is not None:
                raise NotUnicode(f"{problem} in {where}" if where else problem)
        elif isinstance(item, dict):
            for key, inner in item.items():
                problem = not_unicode(key)
                if problem is not None:
                    raise NotUnicode(f"{problem} in a key" + (f" of {where}" if where else ""))
                stack.append((inner, f"{where}.{key}" if where else key))
        elif isinstance(item, list):
            stack.extend((inner, f"{where}[{i}]") for i, inner in enumerate(item))


def loads_json(text: str) -> Any:
    """``json.loads`` that refuses NaN / Infinity (Python's extension, not JSON), and
    strings that are not valid Unicode (``NotUnicode``)."""
    import json  # not at import: only a command given JSON decodes it

    try:
        value = json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None
    if not text.isascii() or "\\u" in text:  # else no string can hold a surrogate
        _check_unicode(value)
    return value


def json_object(text: str) -> dict[str, Any]:
    try:
        value = loads_json(text)
    except NotUnicode as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise argparse.ArgumentTypeError(f"invalid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    try:
        check_json(value, field="")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON ({exc})") from None
    return value


def instant(text: str) -> float:
    """An ISO 8601 instant with a time zone (``2025-01-31T09:00:00Z``) → epoch seconds."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid instant {text!r}; use ISO 8601, e.g. 2025-01-31T09:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no time zone; add Z or an offset such as +02:00"
        )
    return when.timestamp()
