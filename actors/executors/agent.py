"""The ``agent`` executor: one agent turn against the gateway's chat-completions endpoint.

A turn (OCS "isolated" strategy, SEMANTICS.md §2.3 / §2.4):

1. If the last health probe said the gateway is down, probe again; still down →
   ``Deferred`` (requeued, no attempt spent, counted by the breaker).
2. Build the prompt (``prompt.build_prompt``): header, notes, up to 5 pending inbox
   messages of the agent, the parent run's trigger context for chained runs, the
   idempotency key for at-least-once jobs, the payload message. What was injected is
   recorded on the run (``details.context`` / ``details.prompt``).
3. POST ``{url}/v1/chat/completions`` with ``stream: true``; every streamed chunk is
   activity (``ctx.heartbeat()``), so the run actor's idle timeout only fires when the
   gateway goes quiet. The absolute timeout is the job's ``timeout``. Headers:
   ``x-openclaw-agent-id``, ``x-openclaw-session-key``, ``x-openclaw-auth-profile``.
   Once the gateway has accepted the turn (2xx), the injected inbox messages are
   marked delivered (so a refused turn loses none of them).
4. The reply goes through ``sentinels.classify_reply``: HEARTBEAT_OK / NO_FLUSH /
   IDEMPOTENT_SKIP → ok, delivery suppressed; TASK_FAILED or a transient-error phrase in
   the first 500 characters → error (retried); "gateway is draining" → ``Deferred``.
   The run's result is ``{"summary": reply[:5000]}``.

Job fields: ``target`` = agent id (default ``main``); ``payload.message``; options
``model``, ``session_key``, ``auth_profile``, ``stream`` (default true) and the prompt
options of ``prompt.build_prompt``. A dispatch payload may override ``message``,
``agent``, ``model`` and ``session_key``.
The module is long because one turn reads best in order in one place (probe, prompt,
stream, verdict); what stands alone lives in ``prompt.py``, ``reply.py`` (reading the
reply), ``gateway.py`` and ``sentinels.py``.
Asks of the host (``ctx.host``, when there is one): ``inbox``, ``mark_delivered``, ``run``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shepherd.actors.executors.base import ExecResult, RunContext
from shepherd.actors.executors.gateway import (
    AGENT_HEADER,
    AUTH_PROFILE_HEADER,
    SESSION_HEADER,
    GatewayConfig,
    HttpClient,
    failed_response,
    gateway_down,
    transport_failure,
)
from shepherd.actors.executors.host import Host
from shepherd.actors.executors.prompt import (
    InboxMessage,
    ShellParent,
    build_prompt,
    trigger_context_text,
)
from shepherd.actors.executors.reply import SUMMARY_CHARS, read_json, read_sse, verdict
from shepherd.actors.executors.specs import AGENT_OPTIONS, check_agent  # re-exported
from shepherd.store.errors import Deferred, Discard, NotFound
from shepherd.store.models import JobSpec, Run

__all__ = ["AGENT_OPTIONS", "SUMMARY_CHARS", "AgentExecutor", "turn_settings"]


PROMPT_RECORD_CHARS = 20_000  # the prompt text kept on the run (details.prompt)
INBOX_FETCH = 5


def turn_settings(
    job: JobSpec,
    job_id: int,
    payload: dict[str, Any],
    prefix: str,
    assigned: str | None = None,
    assigned_model: str | None = None,
) -> tuple[str, str, str, str | None]:
    """(agent, model, session key, auth profile) for one turn of ``job``. The agent
    assignment chose (``assigned``, by capability) wins, and so does its model."""
    opts = job.options
    agent = str(assigned or payload.get("agent") or job.target or "main")
    model = str(
        (assigned and assigned_model)
        or payload.get("model")
        or opts.get("model")
        or f"{prefix}:{agent}"
    )
    session = str(payload.get("session_key") or opts.get("session_key") or f"scheduler:{job_id}")
    profile = opts.get("auth_profile") or payload.get("auth_profile")
    return agent, model, session, str(profile) if profile else None


class AgentExecutor:
    name = "agent"

    def __init__(self, gateway: GatewayConfig | None, http: HttpClient | None = None) -> None:
        self._gw = gateway
        self._owns_http = http is None
        self._http = http or HttpClient(max_connections=gateway.max_connections if gateway else 256)
        self._healthy: bool | None = None  # last probe / turn said so; None = unknown
        self.turns = 0
        self.deferred = 0
        self.probes = 0

    # -- validation ---------------------------------------------------------------------

    def validate(self, spec: JobSpec) -> None:
        check_agent(self._gw, spec)

    # -- health -------------------------------------------------------------------------

    @property
    def healthy(self) -> bool | None:
        return self._healthy

    async def probe_health(self) -> bool:
        """GET ``{url}/health`` (5 s timeout): True on 2xx. Feeds the circuit breaker.
        Without a configured gateway there is nothing to be down: True."""
        gw = self._gw
        if gw is None:
            return True
        import httpx

        self.probes += 1
        try:
            response = await self._http.get().get(
                gw.endpoint(gw.health_path),
                headers=gw.auth_headers(),
                timeout=float(gw.health_timeout),
            )
        except httpx.HTTPError:
            self._healthy = False
            return False
        self._healthy = 200 <= response.status_code < 300
        return self._healthy

    # -- a turn ---------------------------------------------------------------------------

    async def execute(self, ctx: RunContext) -> ExecResult:
        gw = self._gw
        if gw is None:
            raise Discard("agent job needs [gateway] url in config")
        if self._healthy is False and not await self.probe_health():
            self.deferred += 1
            raise gateway_down(gw, "health probe failed")
        host = ctx.host
        agent, model, session, profile = turn_settings(
            ctx.job, ctx.job_id, ctx.payload, gw.model_prefix, ctx.agent, ctx.agent_model
        )
        inbox = await _inbox(host, agent)
        trigger, trigger_meta = await _trigger(host, ctx.parent_run_id)
        prompt = build_prompt(
            ctx.job,
            job_id=ctx.job_id,
            inbox=inbox,
            trigger_context=trigger,
            idempotency_key=ctx.idempotency_key,
            payload=ctx.payload,
        )
        _record_context(
            ctx,
            agent,
            model,
            session,
            profile,
            prompt.text,
            prompt.sections,
            prompt.delivered_message_ids,
            trigger_meta,
        )
        headers = {
            **gw.auth_headers(),
            AGENT_HEADER: agent,
            SESSION_HEADER: session,
            "accept": "text/event-stream, application/json",
        }
        if profile:
            headers[AUTH_PROFILE_HEADER] = profile
        body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt.text}],
            "stream": bool(ctx.job.options.get("stream", True)),
        }
        self.turns += 1
        try:
            got = await self._turn(gw, ctx, body, headers, host, prompt.delivered_message_ids)
        except Deferred:
            self._healthy = False
            self.deferred += 1
            raise
        if isinstance(got, ExecResult):
            return got
        reply, chunks = got
        return verdict(gw, reply, chunks)

    async def _turn(
        self,
        gw: GatewayConfig,
        ctx: RunContext,
        body: dict[str, Any],
        headers: dict[str, str],
        host: Host | None,
        delivered: Sequence[int],
    ) -> tuple[str, int] | ExecResult:
        client = self._http.get()
        import httpx

        try:
            async with client.stream(
                "POST",
                gw.endpoint(gw.chat_path),
                json=body,
                headers=headers,
                timeout=gw.timeout(),
            ) as response:
                ctx.heartbeat()
                if response.status_code >= 300:
                    raw = await response.aread()
                    return failed_response(gw, "agent turn", response, raw)
                self._healthy = True
                if delivered and host is not None:
                    await host.mark_delivered(list(delivered))
                ctype = response.headers.get("content-type", "")
                if "text/event-stream" in ctype:
                    return await read_sse(response, ctx)
                return await read_json(response, ctx, ctype)
        except httpx.TransportError as exc:
            return transport_failure(gw, "agent turn", exc)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def statistics(self) -> dict[str, Any]:
        return {
            "turns": self.turns,
            "deferred": self.deferred,
            "probes": self.probes,
            "healthy": self._healthy,
        }

    def __repr__(self) -> str:
        where = self._gw.url if self._gw is not None else "no gateway"
        return f"<AgentExecutor {where} turns={self.turns}>"


# -- helpers -------------------------------------------------------------------------------


async def _inbox(host: Host | None, agent: str) -> list[InboxMessage]:
    if host is None:
        return []
    rows = await host.inbox(agent, limit=INBOX_FETCH)
    return [
        InboxMessage(
            id=m.id, from_agent=m.from_agent, kind=m.kind, subject=m.subject, body=m.body,
            priority=m.priority, created_at=m.created_at, owner=m.owner,
        )
        for m in rows
    ]  # fmt: skip


async def _trigger(
    host: Host | None, parent_run_id: int | None
) -> tuple[str | None, dict[str, Any]]:
    if parent_run_id is None or host is None:
        return None, {}
    try:
        run = await host.run(parent_run_id)
    except NotFound:
        return None, {"parent_run_id": parent_run_id, "parent_run_missing": True}
    summary = run.result.get("summary") if isinstance(run.result, dict) else run.result
    text = trigger_context_text(
        run.job_name,
        run.status,
        summary=summary if isinstance(summary, str) else None,
        error_message=run.error,
        shell=_shell_parent(run),
    )
    meta = {"parent_run_id": parent_run_id, "parent_job": run.job_name, "parent_status": run.status}
    return text, meta


def _shell_parent(run: Run) -> ShellParent | None:
    """The shell side of a parent run (None: not a shell run: no exit, no streams)."""
    if run.exit_code is None and run.signal is None and run.stdout is None and run.stderr is None:
        return None
    details = run.details or {}
    out, err = details.get("stdout_path"), details.get("stderr_path")
    return ShellParent(
        timed_out=run.timed_out,
        exit_code=run.exit_code,
        signal=run.signal,
        error=run.error,
        stdout=run.stdout,
        stderr=run.stderr,
        stdout_path=out if isinstance(out, str) else None,
        stderr_path=err if isinstance(err, str) else None,
    )


def _record_context(
    ctx: RunContext,
    agent: str,
    model: str,
    session: str,
    profile: str | None,
    text: str,
    sections: list[str],
    message_ids: list[int],
    trigger_meta: dict[str, Any],
) -> None:
    opts = ctx.job.options
    context = {
        "agent": agent,
        "model": model,
        "session_key": session,
        "auth_profile": profile,
        "sections": sections,
        "messages_injected": len(message_ids),
        "message_ids": message_ids,
        "scope": opts.get("scope", "own"),
        "job_class": opts.get("job_class", "standard"),
        "delivery_guarantee": ctx.job.delivery_guarantee,
        "execution_intent": opts.get("execution_intent", "execute"),
        "read_only": bool(opts.get("read_only")),
        "thinking": opts.get("thinking"),
        **({"trigger": trigger_meta} if trigger_meta else {}),
    }
    details = dict(ctx.reported.get("details") or {})
    details.update(context=context, prompt=text[:PROMPT_RECORD_CHARS])
    ctx.report(details=details)
