"""Write ops on pauses (rate limits live in the config and the job specs, not here).

- ``SetPause``: pause a scope (``runtime``, or ``job`` / ``pool`` / ``executor`` /
  ``agent`` with a name). Pausing what is already paused keeps the first pause (its
  time and who) and replaces the reason if one is given. Returns True if it is new.
- ``ClearPauses``: resume ``scope`` / ``name``, or with ``scope`` None every pause.
  Returns the keys resumed (``runtime``, ``job:nightly`` …).
"""

from __future__ import annotations

import msgspec

from shepherd.store.models import PauseScope

__all__ = ["CONTROL_OP_TYPES", "ClearPauses", "ControlOp", "SetPause"]


class SetPause(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    scope: PauseScope
    name: str  # "" for the runtime
    at: float
    by: str = ""
    reason: str | None = None


class ClearPauses(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    scope: PauseScope | None = None  # None: every pause
    name: str = ""


ControlOp = SetPause | ClearPauses
CONTROL_OP_TYPES: tuple[type, ...] = (SetPause, ClearPauses)
