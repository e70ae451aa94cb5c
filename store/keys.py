"""Idempotency keys and the ledger's rules: a key is claimed by at most one run at a
time, in the database.

Rules (OCS ``idempotency_ledger``): claiming an absent key inserts it ``claimed``; a
``released`` or expired key is re-claimed (a retry of the same lineage); a key that is
``claimed`` by another run cannot be claimed — that dispatch does not run and is
recorded ``skipped`` (``idempotency-skip``). A run that ends ``ok`` keeps its key
claimed until it expires (7 days; 24 h for ``delete_after_run`` jobs); any other end
releases it so the next attempt can claim it again. The pruner deletes expired keys.
The SQLite engine keeps the ledger in ``store/sqlite/ledger.py``.

The key a producer gives on enqueue is two things: the run key (``dispatches.
idempotency_key``, claimed here, ``<key>:replay<n>`` after a crash replay) and the
dispatch's producer key (``dispatches.producer_key``: set once, never rewritten, unique
per job by an index), which binds the key to that dispatch for as long as its row
exists, whatever its state; enqueueing the key again returns that dispatch.

System-made keys live in their own namespace (SEMANTICS D17): they start with
``sys:``, which a producer's key may not. A chain dispatch's key is
``sys:chain:<parent run>:<child job>`` (``chain_key``), and it is also the dispatch's
producer key, so the unique index makes a second dispatch of one child for one parent
run impossible.
"""

from __future__ import annotations

import functools

__all__ = [
    "DEFAULT_TTL",
    "MAX_KEY",
    "REPLAY",
    "SHORT_TTL",
    "SYSTEM",
    "chain_key",
    "key_problem",
    "lineage_key",
    "replay_key",
]

DEFAULT_TTL = 7 * 86400.0

SHORT_TTL = 86400.0

MAX_KEY = 255  # characters in a producer's key

SYSTEM = "sys:"  # the namespace of system-made keys (``chain_key``)

REPLAY = ":replay"  # ``<key>:replay<n>``: the run key of a crash replay (``replay_key``)


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot be a producer's idempotency key (None: it can). The system's
    own run keys end in ``:replay<n>``, so a producer's key may not hold ``:replay``: it
    would collide with the replay of another key (and be cut there on a replay)."""
    if not isinstance(key, str):
        return f"must be a string, not {type(key).__name__}"
    if not key.strip():
        return "must not be empty or only whitespace"
    if len(key) > MAX_KEY:
        return f"must be at most {MAX_KEY} characters (got {len(key)})"
    if key.startswith(SYSTEM):
        return f"must not start with {SYSTEM!r} (reserved for system-made keys)"
    if REPLAY in key:
        return f"must not contain {REPLAY!r} (reserved for the keys of crash replays)"
    if "\x00" in key:  # a shell run gets it in its environment: the OS cannot take NUL
        return "must not contain a NUL character"
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            return "must be UTF-8 text (it holds an unpaired surrogate)"
    return None


@functools.lru_cache(maxsize=256)  # asked for at a claim and again at its run's start
def lineage_key(dispatch_id: int) -> str:
    """The key shared by every attempt of one dispatch (its retry lineage)."""
    import hashlib  # here: a CLI command that only checks keys need not load OpenSSL

    return hashlib.sha256(f"dispatch:{dispatch_id}".encode()).hexdigest()[:32]


def replay_key(key: str | None, dispatch_id: int, attempt: int) -> str:
    """A fresh key in the same lineage, for the replay of a run orphaned by a crash."""
    base = key or lineage_key(dispatch_id)
    return f"{base.split(REPLAY, 1)[0]}{REPLAY}{attempt}"


def chain_key(parent_run_id: int, child_job_id: int) -> str:
    """The system key of the chain dispatch ``parent_run_id`` fires for a child job."""
    return f"{SYSTEM}chain:{parent_run_id}:{child_job_id}"
