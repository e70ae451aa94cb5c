"""The python targets of ``shepherd demo``, loaded as an application's are:

    shepherd --app shepherd.runtime._demo_app:targets run

``greet`` declares its payload type, so an enqueue whose payload does not fit
(``{"name": 7}``) is refused before it is stored, and the target gets a ``Greeting``.
"""

from __future__ import annotations

import msgspec

from shepherd.actors.executors.base import RunContext
from shepherd.runtime.targets import Targets

__all__ = ["Greeting", "targets"]

targets = Targets()


class Greeting(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    times: int = 1


@targets.task("greet", payload=Greeting)
async def greet(ctx: RunContext) -> dict[str, str]:
    greeting: Greeting = ctx.payload
    return {"said": " ".join([f"hello {greeting.name}!"] * greeting.times)}
