"""``/api/v1/approvals``, ``/agents``, ``/messages``, ``/pauses``, ``/status``, ``/stats``:
the operator's resources, on ``Runtime``'s approvals, agents, messaging and controls
APIs. ``/status`` answers the data ``shepherd status --json`` prints (read by the same
code, ``runtime._cli_status``) in the API's conventions: times as epoch seconds, the
sections past the ``Status`` fields (agents, pauses, rates, unmatched, spawn_failed,
groups_open, cluster, spool) under ``extra``, and the live breakers and actors of this
daemon. ``shepherd --url status`` lifts ``extra`` back (``runtime._cli_remote``).
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from shepherd.runtime._cli_status import gather_status, spool_status, status_data
from shepherd.runtime.http.answers import (
    Agents,
    Approvals,
    Count,
    Messages,
    MessageSent,
    Pauses,
    Removed,
    Resumed,
    Stats,
    Status,
)
from shepherd.runtime.http.api import ApiError, ApiRequest, Endpoint
from shepherd.runtime.http.schemas import (
    AgentBody,
    AgentPatch,
    ApprovalsQuery,
    ApproveBody,
    MessagesQuery,
    PauseBody,
    RejectBody,
    ResumeBody,
    SendBody,
    path_id,
)
from shepherd.store.errors import Conflict
from shepherd.store.models import Agent, AgentSpec, Approval, Message, Pause, decode_spec

__all__ = ["ENDPOINTS"]

_STATUS_FIELDS = frozenset(Status.__struct_fields__)


# -- approvals ---------------------------------------------------------------------------


async def list_approvals(req: ApiRequest) -> Any:
    q: ApprovalsQuery = req.query
    return await req.rt.approvals(q.status, q.job, limit=q.limit)


async def get_approval(req: ApiRequest) -> Any:
    return await req.rt.approval(path_id(req.params))


async def approve(req: ApiRequest) -> Any:
    body: ApproveBody = req.body
    return await req.rt.approve(path_id(req.params), by=body.by or req.principal.name)


async def reject(req: ApiRequest) -> Any:
    body: RejectBody = req.body
    by = body.by or req.principal.name
    return await req.rt.reject(path_id(req.params), body.reason, by=by)


# -- agents ----------------------------------------------------------------------------------


async def list_agents(req: ApiRequest) -> Any:
    return await req.rt.agents()


async def get_agent(req: ApiRequest) -> Any:
    return await req.rt.agent(req.params["id"])


async def add_agent(req: ApiRequest) -> Any:
    spec = decode_spec(msgspec.to_builtins(req.body), AgentSpec, what="agent")
    if await req.rt.store.agent(spec.id) is not None:
        raise Conflict(f"an agent {spec.id!r} exists (PATCH /api/v1/agents/{spec.id})")
    fields = {f: getattr(spec, f) for f in AgentSpec.__struct_fields__ if f != "id"}
    return await req.rt.add_agent(spec.id, **fields)


async def patch_agent(req: ApiRequest) -> Any:
    changes: dict[str, Any] = msgspec.to_builtins(req.body)  # the fields given (UNSET: not)
    return await req.rt.update_agent(req.params["id"], **changes)


async def remove_agent(req: ApiRequest) -> Any:
    await req.rt.remove_agent(req.params["id"])
    return Removed(removed=req.params["id"])


async def drain_agent(req: ApiRequest) -> Any:
    return await req.rt.drain_agent(req.params["id"])


async def undrain_agent(req: ApiRequest) -> Any:
    return await req.rt.undrain_agent(req.params["id"])


# -- messages ---------------------------------------------------------------------------------


async def list_messages(req: ApiRequest) -> Any:
    q: MessagesQuery = req.query
    if q.inbox is not None:
        if q.to_agent is not None or q.from_agent is not None:
            raise ApiError(
                422, "inbox lists one agent's inbox: no to_agent/from_agent", field="inbox"
            )
        return await req.rt.inbox(q.inbox, status=q.status or "pending", limit=q.limit)
    return await req.rt.messages(
        to_agent=q.to_agent, from_agent=q.from_agent, status=q.status, limit=q.limit
    )


async def send_message(req: ApiRequest) -> Any:
    body: SendBody = req.body
    who = req.principal
    sender = body.from_agent or who.acting
    if who.scope == "agent" and sender != who.agent:
        raise ApiError(403, f"this token sends as {who.agent!r} only", field="from_agent")
    if not sender:
        raise ApiError(422, "who sends it: from_agent (or X-Agent-ID)", field="from_agent")
    if body.kind == "spawn" and who.scope != "admin":  # its body becomes a job: admin's work
        raise ApiError(403, "a spawn message (a new job) needs an admin token", field="kind")
    fields = msgspec.structs.asdict(body)
    del fields["from_agent"], fields["to_agent"], fields["body"]
    return MessageSent(id=await req.rt.send_message(sender, body.to_agent, body.body, **fields))


async def get_message(req: ApiRequest) -> Any:
    return await req.rt.message(path_id(req.params))


async def _addressed(req: ApiRequest) -> int:
    """The message id of the path: 404 if unknown; an agent token marks only its own
    agent's messages (and broadcasts)."""
    message_id = path_id(req.params)
    msg: Message = await req.rt.message(message_id)
    who = req.principal
    if who.scope == "agent" and msg.to_agent not in (who.agent, "broadcast"):
        raise ApiError(403, f"message {message_id} is not for {who.agent!r}")
    return message_id


async def ack_message(req: ApiRequest) -> Any:
    return Count(count=await req.rt.ack([await _addressed(req)]))


async def read_message(req: ApiRequest) -> Any:
    return Count(count=await req.rt.mark_read([await _addressed(req)]))


# -- pauses, status, stats -----------------------------------------------------------------


async def list_pauses(req: ApiRequest) -> Any:
    return await req.rt.pauses()


async def pause(req: ApiRequest) -> Any:
    body: PauseBody = req.body
    return await req.rt.pause(body.scope, body.name, body.reason)


async def resume(req: ApiRequest) -> Any:
    body: ResumeBody = req.body
    return {"resumed": await req.rt.resume(body.scope, body.name)}


async def status(req: ApiRequest) -> Any:
    rt = req.rt
    data = status_data(rt.config.database, os.getpid(), *await gather_status(rt.store))
    if rt.config.spool is not None:  # as the local command counts it
        data["spool"] = spool_status(rt.config.spool.dir)
    live = rt.statistics()
    known = {k: v for k, v in data.items() if k in _STATUS_FIELDS}
    extra = {k: v for k, v in data.items() if k not in _STATUS_FIELDS}
    return Status(
        **known,
        breakers=_plain((live.get("dispatcher") or {}).get("breakers") or {}),
        actors=_plain(live.get("supervisor") or {}),
        extra=_plain(extra),
    )


async def stats(req: ApiRequest) -> Any:
    return Stats(store=await req.rt.stats(), runtime=_plain(req.rt.statistics()))


def _plain(value: Any) -> Any:
    """Builtins only (a snapshot may hold tuples, sets or Structs)."""
    return msgspec.to_builtins(value, str_keys=True, enc_hook=repr)


_A, _G, _M, _O = ("approvals",), ("agents",), ("messages",), ("operations",)
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/api/v1/approvals", list_approvals, summary="approval requests, newest first",
             query=ApprovalsQuery, response=Approvals, tags=_A),
    Endpoint("GET", "/api/v1/approvals/{id}", get_approval, summary="one approval request",
             response=Approval, tags=_A, errors=(404,)),
    Endpoint("POST", "/api/v1/approvals/{id}/approve", approve, "admin",
             "approve: its dispatch is queued (409 if already resolved)",
             body=ApproveBody, response=Approval, tags=_A, errors=(404, 409)),
    Endpoint("POST", "/api/v1/approvals/{id}/reject", reject, "admin",
             "reject: its dispatch is cancelled (409 if already resolved)",
             body=RejectBody, response=Approval, tags=_A, errors=(404, 409)),
    Endpoint("GET", "/api/v1/agents", list_agents, summary="registered agents, by id",
             response=Agents, tags=_G),
    Endpoint("POST", "/api/v1/agents", add_agent, "admin", "register an agent (409 if it exists)",
             body=AgentBody, response=Agent, status=201, tags=_G, errors=(409,)),
    Endpoint("GET", "/api/v1/agents/{id}", get_agent, summary="one agent",
             response=Agent, tags=_G, errors=(404,)),
    Endpoint("PATCH", "/api/v1/agents/{id}", patch_agent, "admin", "change fields of an agent",
             body=AgentPatch, response=Agent, tags=_G, errors=(404,)),
    Endpoint("DELETE", "/api/v1/agents/{id}", remove_agent, "admin",
             "unregister an agent; its running runs are cancelled",
             response=Removed, tags=_G, errors=(404,)),
    Endpoint("POST", "/api/v1/agents/{id}/drain", drain_agent, "admin",
             "nothing new for the agent; its running runs finish",
             response=Agent, tags=_G, errors=(404,)),
    Endpoint("POST", "/api/v1/agents/{id}/undrain", undrain_agent, "admin",
             "a draining agent takes work again", response=Agent, tags=_G, errors=(404,)),
    Endpoint("GET", "/api/v1/messages", list_messages, summary="messages (or one inbox)",
             query=MessagesQuery, response=Messages, tags=_M),
    Endpoint("POST", "/api/v1/messages", send_message, "agent", "send a message",
             body=SendBody, response=MessageSent, status=201, tags=_M),
    Endpoint("GET", "/api/v1/messages/{id}", get_message, summary="one message",
             response=Message, tags=_M, errors=(404,)),
    Endpoint("POST", "/api/v1/messages/{id}/ack", ack_message, "agent", "acknowledge a message",
             response=Count, tags=_M, errors=(404,)),
    Endpoint("POST", "/api/v1/messages/{id}/read", read_message, "agent", "mark a message read",
             response=Count, tags=_M, errors=(404,)),
    Endpoint("GET", "/api/v1/pauses", list_pauses, summary="the pauses in force",
             response=Pauses, tags=_O),
    Endpoint("POST", "/api/v1/pauses", pause, "admin", "pause a scope (its queued work waits)",
             body=PauseBody, response=Pause, status=201, tags=_O, errors=(404,)),
    Endpoint("POST", "/api/v1/pauses/resume", resume, "admin", "lift a pause (scope all: every)",
             body=ResumeBody, response=Resumed, tags=_O, errors=(404,)),
    Endpoint("GET", "/api/v1/status", status, summary="what `shepherd status` shows",
             response=Status, tags=_O),
    Endpoint("GET", "/api/v1/stats", stats, summary="store counts and the runtime's snapshot",
             response=Stats, tags=_O),
]  # fmt: skip
