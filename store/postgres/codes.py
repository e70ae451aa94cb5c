"""asyncpg errors as the store's error classes, chosen by SQLSTATE (never by the words
of a message), and which of them fail a whole group commit rather than one op."""

from __future__ import annotations

import asyncpg

from shepherd.store.errors import DatabaseCorrupt, DatabaseLocked, DiskFull, ReadOnly, StoreError

__all__ = ["LOST", "connection_lost", "fails_batch", "op_error", "translate"]

# What the driver raises when the connection, not the statement, failed: closed, reset,
# or (a backend terminated while idle, its last words read mid-query) out of step
LOST = (OSError, asyncpg.exceptions.InterfaceError, asyncpg.exceptions.InternalClientError)

# SQLSTATE class (two characters) or full code → the class and what it means
_BY_STATE: dict[str, tuple[type[StoreError], str]] = {
    "53100": (DiskFull, "the server's disk is full"),
    "53": (DiskFull, "the server is out of resources"),
    "25006": (ReadOnly, "the server is read-only (a standby, or default_transaction_read_only)"),
    "42501": (ReadOnly, "permission denied"),
    "40P01": (DatabaseLocked, "deadlock detected"),
    "40001": (DatabaseLocked, "serialization failure"),
    "55P03": (DatabaseLocked, "lock not available"),
    "57014": (DatabaseLocked, "statement timed out"),
    "XX001": (DatabaseCorrupt, "data corrupted"),
    "XX002": (DatabaseCorrupt, "index corrupted"),
    "08": (StoreError, "connection to the server failed"),
    "57P": (StoreError, "the server is shutting down"),
}

# Errors after which the transaction (or the connection) cannot go on: the batch fails
# as a whole. Any other error of an op fails that op alone (rolled back to its savepoint).
_WHOLE_BATCH_PREFIXES = ("08", "25", "40", "53", "54", "55", "57", "58", "XX", "F0", "P0")


def _state(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", "") or "")


def translate(exc: BaseException, where: str) -> StoreError:
    """Map an asyncpg (or connection) exception to the project's error classes."""
    if isinstance(exc, StoreError):
        return exc
    state = _state(exc)
    for key in (state, state[:3], state[:2]):
        kind = _BY_STATE.get(key) if key else None
        if kind is not None:
            cls, what = kind
            return cls(f"{where}: {what} ({exc}; SQLSTATE {state})")
    if isinstance(exc, LOST):
        return StoreError(f"{where}: connection to the server failed ({exc})")
    return StoreError(f"{where}: {exc}" + (f" (SQLSTATE {state})" if state else ""))


def fails_batch(exc: BaseException) -> bool:
    """Whether ``exc``, raised by one op, fails its whole batch."""
    if not isinstance(exc, Exception):
        return True  # cancellation, exit: not an error of the op
    if isinstance(exc, LOST):
        return True
    state = _state(exc)
    return bool(state) and state.startswith(_WHOLE_BATCH_PREFIXES)


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection itself is gone (closed, reset, its backend
    terminated by the server or an administrator): what a new connection cures."""
    if isinstance(exc, LOST):
        return True
    return _state(exc).startswith(("08", "57P"))


def op_error(exc: Exception) -> StoreError:
    """What the caller of a failed op gets (its own reply fails, no one else's)."""
    if isinstance(exc, asyncpg.exceptions.IntegrityConstraintViolationError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    error = StoreError(text)
    error.__cause__ = exc
    return error
