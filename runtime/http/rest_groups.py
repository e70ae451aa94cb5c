"""``/api/v1/groups``: task groups (README "Task groups") on ``Runtime``'s task-group
API (``runtime/_groups_api.py``): list, show, create, a member's report and heartbeat.

A group is addressed by its name or its id (a number: group names are never only
digits); a name may hold ``/`` and is taken as ``{ref:path}``, with the actions
(``/report``, ``/heartbeat``) matched first as a literal last segment, as for jobs
(``runtime.http.api``). Members are named in the body, never in the path, since a label
may hold ``/`` too. Every bad value is the API's ``ConfigError`` naming its field (422:
``members[2]``, ``timeout``, ``member``, ``status``), and nothing is stored; an unknown
group is 404. Scopes: reads ``read``; create, report and heartbeat ``agent``, the work
an agent does (as enqueue and messages).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from shepherd.runtime.http.api import ApiRequest, Endpoint
from shepherd.runtime.http.schemas import Limit
from shepherd.store.models import Seconds, TaskGroup
from shepherd.store.ops import Reported

__all__ = ["ENDPOINTS"]


class GroupsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    status: Literal["open", "completed", "failed"] | None = None
    limit: Limit = 100


class GroupBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new group: ``timeout`` (default 600 s) and ``heartbeat_window`` (default
    min(timeout, 300 s)) are seconds or texts such as ``"10m"``; ``to`` / ``channel``
    where its summary goes (an alias such as ``@ops``)."""

    name: str
    members: list[str]
    timeout: Seconds | None = None
    heartbeat_window: Seconds | None = None
    to: str | None = None
    channel: str | None = None
    created_by: str | None = None  # default: the caller's agent (X-Agent-ID) or token


class ReportBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``message``: a completed member's result, a failed one's error."""

    member: str
    status: Literal["started", "completed", "failed"]
    message: str | None = None


class HeartbeatBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    member: str


Groups = list[TaskGroup]


def _ref(req: ApiRequest) -> str | int:
    """The group of the path: a number is its id, anything else its name."""
    ref = req.params["ref"]
    return int(ref) if ref.isascii() and ref.isdigit() and len(ref) < 19 else ref


async def list_groups(req: ApiRequest) -> Any:
    q: GroupsQuery = req.query
    return await req.rt.groups(status=q.status, limit=q.limit)


async def get_group(req: ApiRequest) -> Any:
    return await req.rt.group(_ref(req))


async def create_group(req: ApiRequest) -> Any:
    body: GroupBody = req.body
    kw: dict[str, Any] = {"to": body.to, "channel": body.channel}
    if body.timeout is not None:
        kw["timeout"] = float(body.timeout)
    if body.heartbeat_window is not None:
        kw["heartbeat_window"] = float(body.heartbeat_window)
    by = body.created_by or req.principal.acting or req.principal.name
    return await req.rt.create_group(body.name, body.members, created_by=by, **kw)


async def report(req: ApiRequest) -> Any:
    body: ReportBody = req.body
    return await req.rt.report(_ref(req), body.member, body.status, message=body.message)


async def heartbeat(req: ApiRequest) -> Any:
    body: HeartbeatBody = req.body
    return await req.rt.heartbeat(_ref(req), body.member)


_T = ("groups",)
_ONE = "/api/v1/groups/{ref:path}"
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/api/v1/groups", list_groups, summary="task groups, newest first",
             query=GroupsQuery, response=Groups, tags=_T),
    Endpoint("POST", "/api/v1/groups", create_group, "agent",
             "create a task group (422 naming the field; an open one of the name exists)",
             body=GroupBody, response=TaskGroup, status=201, tags=_T),
    Endpoint("GET", _ONE, get_group, summary="one task group (a name or an id), its members",
             response=TaskGroup, tags=_T, errors=(404,)),
    Endpoint("POST", f"{_ONE}/report", report, "agent",
             "a member reports started, completed or failed",
             body=ReportBody, response=Reported, tags=_T, errors=(404,)),
    Endpoint("POST", f"{_ONE}/heartbeat", heartbeat, "agent",
             "a member is alive: its deadline moves on",
             body=HeartbeatBody, response=Reported, tags=_T, errors=(404,)),
]  # fmt: skip
