"""The OpenAPI fuzz run: schemathesis generates requests for every operation of
``/openapi.json`` and sends them to a real uvicorn on loopback (a runtime served in a
thread of its own through an anyio blocking portal), with an admin token. Every answer
must be no 5xx, carry a documented status and content type, and match its documented
schema; requests that break the schema (negative generation) must be refused with a
documented 4xx. Bounded and deterministic: a fixed number of examples per operation,
``derandomize=True``, no example database.

The runtime is paused before the run (and the resume operation left out), so the jobs
the fuzzer creates are stored and validated but never run: no generated shell command
is ever executed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import anyio.from_thread
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shepherd import JobSpec
from shepherd.runtime.http.app import ENDPOINT_MODULES, endpoints_of
from tests.http_helpers import ADMIN, Served, serve

EXAMPLES = 15  # per operation and mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# lifting the pause would let fuzzed jobs (shell commands among them) run
EXCLUDED = r"^/api/v1/pauses/resume$"


async def _noop(payload: dict[str, Any]) -> None:
    return None


def _operations() -> list[tuple[str, str]]:
    """Every documented operation, known at collection time (one test each)."""
    found = [(ep.method, re.sub(r"{(\w+)(?::\w+)?}", r"{\1}", ep.path))
             for ep in endpoints_of(ENDPOINT_MODULES)]  # fmt: skip
    return [(m, p) for m, p in found if not re.match(EXCLUDED, p)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = str(tmp_path_factory.mktemp("fuzz") / "fuzz.db")
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        http = {"long_poll_max": 0, "rate_limit": 0}
        with portal.wrap_async_context_manager(serve(db, http=http, shutdown_grace=1)) as srv:
            srv.rt.register("noop", _noop)
            portal.call(srv.rt.pause, "runtime")
            portal.call(srv.rt.add_job, JobSpec(name="noop", target="noop"))
            yield srv


@pytest.fixture(scope="module")
def schema(served: Served) -> Any:
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json")


def test_every_rest_resource_is_documented(schema: Any) -> None:
    paths = set(schema.raw_schema["paths"])
    for path in ("/api/v1/jobs/{name}/next", "/api/v1/dispatches/batch", "/api/v1/runs/{id}",
                 "/api/v1/dead/purge", "/api/v1/approvals/{id}/reject", "/api/v1/agents/{id}",
                 "/api/v1/messages/{id}/ack", "/api/v1/status", "/api/v1/stats"):  # fmt: skip
        assert path in paths


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda m: m.value)  # fmt: skip
@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda v: str(v))
def test_operation_answers_no_5xx_and_keeps_to_its_schema(
    served: Served, schema: Any, method: str, path: str, mode: GenerationMode
) -> None:
    """Valid requests (positive) and requests that break the schema (negative: refused
    with a documented 4xx, never a 5xx)."""
    op = schema[path][method]
    headers = {"Authorization": f"Bearer {ADMIN}"}

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        resp = case.call(base_url=served.url, headers=headers, timeout=10)
        case.validate_response(resp, checks=CHECKS)

    run()
