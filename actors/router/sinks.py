"""Delivery sinks: send one delivery once and say which sink took it and how it went.

A sink is a Python callback registered by the embedding gateway (``SinkFn``), a
webhook (an HTTP POST of the delivery as JSON) or the gateway's delivery endpoint;
``delivery.pick_sink`` chooses by the delivery's channel. ``Sinks.send`` never
raises for a failed send: the failure text is the result, and the router retries.
It does not bound the time a send takes: the router's send task does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from shepherd.actors.executors.gateway import GatewayConfig, HttpClient, http_error_text
from shepherd.actors.router.delivery import DeliveryConfig, pick_sink
from shepherd.store.models import Delivery

__all__ = ["SinkFn", "Sinks"]

SinkFn = Callable[[Delivery], Awaitable[None]]


class Sinks:
    def __init__(
        self,
        cfg: DeliveryConfig,
        callbacks: Mapping[str, SinkFn],
        http: HttpClient,
        gateway: GatewayConfig | None = None,
    ) -> None:
        self._cfg = cfg
        self._callbacks = callbacks  # the runtime's registry; read here, written by it
        self._http = http
        self._gateway = gateway

    def names(self) -> list[str]:
        """The registered callback sinks."""
        return sorted(self._callbacks)

    def __repr__(self) -> str:
        return f"<Sinks callbacks={self.names()} webhooks={sorted(self._cfg.webhooks)}>"

    async def send(self, d: Delivery) -> tuple[str | None, str | None]:
        """Send ``d`` once: (sink name, error or None)."""
        picked = pick_sink(
            d.channel, self._cfg.default_sink, self._callbacks.keys(), self._cfg.webhooks
        )
        if picked is None:
            return None, f"no delivery sink for channel {d.channel or self._cfg.default_sink!r}"
        kind, name = picked
        if kind == "callback":
            try:
                await self._callbacks[name](d)
            except Exception as exc:
                # A third place that catches broadly, on purpose: the sink is the
                # embedding application's code, and its failure is a delivery failure
                # to retry, never a crash of the router.
                return name, f"{type(exc).__name__}: {exc}"
            return name, None
        if kind == "webhook":
            return name, await self._post(self._cfg.webhooks[name], webhook_body(d), {})
        gw = self._gateway
        if gw is None:
            return name, "no [gateway] configured for the gateway sink"
        body = {"text": d.body, "mode": "now", "channel": d.channel, "to": d.target}
        return name, await self._post(gw.endpoint(gw.delivery_path), body, gw.auth_headers())

    async def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> str | None:
        import httpx

        try:
            response = await self._http.get().post(
                url, json=body, headers=headers, timeout=float(self._cfg.timeout)
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}".rstrip(": ")
        if 200 <= response.status_code < 300:
            return None
        return http_error_text(response, response.content)


def webhook_body(d: Delivery) -> dict[str, Any]:
    """The JSON a webhook sink receives."""
    return {
        "id": d.id, "kind": d.kind, "text": d.body, "channel": d.channel, "to": d.target,
        "job": d.job_name, "run_id": d.run_id, "dispatch_id": d.dispatch_id,
        "outcome": d.outcome, "attempt": d.attempts + 1,
    }  # fmt: skip
