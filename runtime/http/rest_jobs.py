"""``/api/v1/jobs``: list, show, create, replace, change, remove, enable, disable, run
now and the next fire times of jobs, on ``Runtime``'s jobs API (``runtime/_jobs_api.py``).

A job body is a job spec as JSON, decoded with ``decode_spec`` (the validation of job
files) and checked by ``validate_job`` in ``rt.add_job``: an error names the field
(``retry.max_attempts``) and nothing is stored. Creating a name that exists is 409;
replacing or changing one that does not is 404. A name may hold ``/``: the paths take
it as ``{name:path}``, and an action (``/run``, ``/enable``, ``/disable``, ``/next``)
is matched first, as a literal last segment only (``runtime.http.api``: ``GET
/jobs/x/next`` is job ``x``'s fires, ``GET /jobs/x%2Fnext`` the job ``x/next``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from shepherd.runtime.http.answers import (
    Enqueued,
    Fires,
    Jobs,
    Removed,
)
from shepherd.runtime.http.api import ApiError, ApiRequest, Endpoint
from shepherd.runtime.http.schemas import (
    JobBody,
    JobView,
    NextQuery,
    RunNowBody,
)
from shepherd.store.errors import ConfigError, Conflict
from shepherd.store.models import JobSpec, decode_spec

__all__ = ["ENDPOINTS"]

_FIELDS = frozenset(JobSpec.__struct_fields__)


def _spec(body: Any) -> JobSpec:
    return decode_spec(msgspec.to_builtins(body), JobSpec)


async def list_jobs(req: ApiRequest) -> Any:
    return await req.rt.list_jobs()


async def get_job(req: ApiRequest) -> Any:
    return await req.rt.get_job(req.params["name"])


async def create_job(req: ApiRequest) -> Any:
    spec = _spec(req.body)
    if await req.rt.store.job(spec.name) is not None:
        raise Conflict(f"a job named {spec.name!r} exists (PUT /api/v1/jobs/{spec.name})")
    return await req.rt.add_job(spec)


async def replace_job(req: ApiRequest) -> Any:
    name = req.params["name"]
    spec = _spec(req.body)
    if spec.name != name:
        raise ApiError(422, f"the body names {spec.name!r}, the path {name!r}", field="name")
    await req.rt.get_job(name)  # 404 when there is none (create with POST)
    return await req.rt.add_job(spec)


async def patch_job(req: ApiRequest) -> Any:
    changes: dict[str, Any] = req.body
    for key in sorted(changes):
        if key not in _FIELDS:
            raise ConfigError("not a job field", field=key)
    return await req.rt.update_job(req.params["name"], **changes)


async def remove_job(req: ApiRequest) -> Any:
    await req.rt.remove_job(req.params["name"])
    return Removed(removed=req.params["name"])


async def enable_job(req: ApiRequest) -> Any:
    return await req.rt.enable(req.params["name"])


async def disable_job(req: ApiRequest) -> Any:
    return await req.rt.disable(req.params["name"])


async def run_now(req: ApiRequest) -> Any:
    name = req.params["name"]
    return Enqueued(id=await req.rt.run_now(name, req.body.payload), job=name)


async def next_fires(req: ApiRequest) -> Any:
    name = req.params["name"]
    fires = await req.rt.next_fires(name, req.query.count)
    tz = (await req.rt.get_job(name)).spec.tz
    zone = ZoneInfo(tz)
    local = [datetime.fromtimestamp(t, zone).isoformat() for t in fires]
    return Fires(job=name, tz=tz, fires=fires, local=local)


_J = ("jobs",)
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/api/v1/jobs", list_jobs, summary="every job, by name",
             response=Jobs, tags=_J),
    Endpoint("POST", "/api/v1/jobs", create_job, "admin", "create a job (409 if it exists)",
             body=JobBody, response=JobView, status=201, tags=_J, errors=(404, 409)),
    Endpoint("GET", "/api/v1/jobs/{name:path}", get_job, summary="one job",
             response=JobView, tags=_J, errors=(404,)),
    Endpoint("PUT", "/api/v1/jobs/{name:path}", replace_job, "admin", "replace a job's spec",
             body=JobBody, response=JobView, tags=_J, errors=(404, 409)),
    Endpoint("PATCH", "/api/v1/jobs/{name:path}", patch_job, "admin", "change some fields of a job",
             body=dict[str, Any], response=JobView, tags=_J, errors=(404, 409)),
    Endpoint("DELETE", "/api/v1/jobs/{name:path}", remove_job, "admin",
             "remove a job; its queued dispatches are cancelled",
             response=Removed, tags=_J, errors=(404,)),
    Endpoint("POST", "/api/v1/jobs/{name:path}/enable", enable_job, "admin", "enable a job",
             response=JobView, tags=_J, errors=(404,)),
    Endpoint("POST", "/api/v1/jobs/{name:path}/disable", disable_job, "admin", "disable a job",
             response=JobView, tags=_J, errors=(404,)),
    Endpoint("POST", "/api/v1/jobs/{name:path}/run", run_now, "agent",
             "run now (also when disabled); answers the dispatch id",
             body=RunNowBody, response=Enqueued, status=201, tags=_J, errors=(404,)),
    Endpoint("GET", "/api/v1/jobs/{name:path}/next", next_fires, summary="the next fire times",
             query=NextQuery, response=Fires, tags=_J, errors=(404,)),
]  # fmt: skip
