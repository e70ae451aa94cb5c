"""Embedding in an ASGI application (Starlette, FastAPI): a lifespan that opens the
runtime for the application's lifetime and hands it to the app as ``app.state.shepherd``.

    from shepherd.runtime.asgi import lifespan, runtime_of

    app = FastAPI(lifespan=lifespan(Config(database="app.db"), targets=targets, jobs=[...]))

    @app.post("/reports")
    async def report(request: Request):
        rt = runtime_of(request)
        dispatch_id = await rt.enqueue("send-report", {"to": "ops"})
        return {"id": dispatch_id}

The runtime starts in the lifespan's task (the actor tree lives there until the server
shuts down), so request handlers call it from their own tasks on the same loop. The
server's shutdown leaves ``Runtime.open``'s block: running runs get ``shutdown_grace``
to finish. Nothing here imports Starlette: the app is only asked for ``app.state``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from shepherd.runtime.app import Runtime
from shepherd.runtime.config import Config
from shepherd.runtime.targets import TargetSource
from shepherd.store.models import JobSpec

__all__ = ["lifespan", "runtime_of"]

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def lifespan(
    config: Config | None = None,
    *,
    targets: TargetSource | None = None,
    jobs: Iterable[JobSpec] = (),
    state: str = "shepherd",
    inner: Lifespan | None = None,
) -> Lifespan:
    """A lifespan for ``Starlette(lifespan=...)`` / ``FastAPI(lifespan=...)``: opens
    ``Runtime.open(config, targets=targets)``, adds ``jobs`` (replacing jobs of the same
    names), sets ``app.state.<state>`` and, when given, runs the application's own
    lifespan ``inner`` inside (it can use the runtime already); what ``inner`` yields is
    the lifespan state the server sees."""
    declared = list(jobs)

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        async with Runtime.open(config, targets=targets) as rt:
            for spec in declared:
                await rt.add_job(spec)
            setattr(app.state, state, rt)
            try:
                if inner is None:
                    yield None
                else:
                    async with inner(app) as inner_state:
                        yield inner_state
            finally:
                delattr(app.state, state)

    return run


def runtime_of(request: Any) -> Runtime:
    """The runtime the lifespan put on ``request.app.state.shepherd`` (also a FastAPI
    dependency: ``rt: Runtime = Depends(runtime_of)``)."""
    rt = getattr(request.app.state, "shepherd", None)
    if not isinstance(rt, Runtime):
        raise RuntimeError(
            "no shepherd runtime on app.state.shepherd: pass shepherd.runtime.asgi.lifespan()"
            " as the application's lifespan"
        )
    return rt
