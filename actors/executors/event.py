"""The ``event`` executor: a system event into the gateway's main session.

Fire-and-forget (OCS "main" strategy as its seed describes it): POST
``{url}/v1/system-event`` with ``{"text", "mode"}``; a 2xx answer means the gateway took
it, and the run ends ``ok`` with summary "System event dispatched" — the agent's
reaction is not awaited. Failures are classified like agent turns (gateway down →
``Deferred``; 4xx / 5xx → error run). Delivery: ``announce`` never announces an event
run; ``announce-always`` does (``output.delivery_decision``).

Job fields: ``payload.message`` (else ``target``) is the text; ``options.mode`` is
``now`` (default) or ``next-heartbeat``.
"""

from __future__ import annotations

from shepherd.actors.executors.base import ExecResult, RunContext
from shepherd.actors.executors.gateway import (
    GatewayConfig,
    HttpClient,
    failed_response,
    transport_failure,
)
from shepherd.actors.executors.specs import (  # re-exported
    EVENT_MODES,
    EVENT_OPTIONS,
    check_event,
    event_text,
)
from shepherd.store.errors import Discard
from shepherd.store.models import JobSpec

__all__ = ["EVENT_MODES", "EVENT_OPTIONS", "EventExecutor"]

DISPATCHED = "System event dispatched"


class EventExecutor:
    name = "event"

    def __init__(self, gateway: GatewayConfig | None, http: HttpClient | None = None) -> None:
        self._gw = gateway
        self._owns_http = http is None
        self._http = http or HttpClient(max_connections=gateway.max_connections if gateway else 16)
        self.sent = 0

    def validate(self, spec: JobSpec) -> None:
        check_event(self._gw, spec)

    async def execute(self, ctx: RunContext) -> ExecResult:
        gw = self._gw
        if gw is None:
            raise Discard("event job needs [gateway] url in config")
        import httpx

        text = event_text(ctx.job, ctx.payload)
        mode = str(ctx.job.options.get("mode", "now"))
        ctx.report(
            details={
                **(ctx.reported.get("details") or {}),
                "event": {"mode": mode, "chars": len(text)},
            }
        )
        try:
            response = await self._http.get().post(
                gw.endpoint(gw.event_path),
                json={"text": text, "mode": mode},
                headers=gw.auth_headers(),
                timeout=gw.timeout(read=float(gw.write_timeout)),
            )
        except httpx.TransportError as exc:
            return transport_failure(gw, "system event", exc)
        if response.status_code >= 300:
            return failed_response(gw, "system event", response, response.content)
        self.sent += 1
        return ExecResult(ok=True, result={"summary": DISPATCHED})

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def __repr__(self) -> str:
        where = self._gw.url if self._gw is not None else "no gateway"
        return f"<EventExecutor {where} sent={self.sent}>"
