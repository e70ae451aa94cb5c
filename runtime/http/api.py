"""Endpoints declared as data, turned into Starlette routes with one wrapper.

An endpoint module exposes ``ENDPOINTS: list[Endpoint]``. Each names its method, path
(Starlette syntax, ``/api/v1/jobs/{name}``), the scope it needs, and the msgspec types
of its query string, body and answer; the wrapper authenticates (an ``X-Agent-ID`` that
is no agent id: 422 naming it), decodes (bad JSON: 400; a wrong field, type or value:
422 naming it; too large: 413), calls the handler
and encodes what it returns. ``runtime.http.openapi`` documents the same list, so the
document and the behaviour cannot drift apart. The module is long because the one
wrapper, its decoding and its routes (with the name-suffix rule below) belong together.

A handler is ``async def h(req: ApiRequest) -> Any``; it returns a Struct, a dict, a
list or a Starlette ``Response`` (streams, redirects, HTML), or raises ``ApiError`` /
one of shepherd's errors, which map onto statuses in ``status_of``.

Names with ``/`` (jobs, task groups): such a path takes the name as ``{name:path}``,
sent as is or with ``%2F``. An action after it (``/jobs/{name:path}/run``) is a
``_SuffixRoute``: it is tried before the plain name's routes (``ordered``) and matches
only when its last segment is a literal one in the raw path, so ``GET /jobs/x/next`` is
job ``x``'s next fires and ``GET /jobs/x%2Fnext`` is the job ``x/next``. A method no
action has (GET ``/jobs/x/run``) falls through to the name's route: the job ``x/run``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope as AsgiScope

from shepherd.runtime.http.auth import AuthError, Principal
from shepherd.runtime.http.config import Scope
from shepherd.store.bounds import TOO_DEEP
from shepherd.store.errors import (
    ConfigError,
    Conflict,
    DatabaseLocked,
    DiskFull,
    MailboxClosed,
    MailboxFull,
    NotFound,
    ReadOnly,
    ShepherdError,
    StoreError,
)
from shepherd.store.json_errors import json_problem
from shepherd.store.models import _dec_hook, _enc_hook
from shepherd.store.records import check_agent_id

if TYPE_CHECKING:
    from shepherd.runtime.http.context import HttpContext

__all__ = [
    "ApiError",
    "ApiRequest",
    "Endpoint",
    "ErrorBody",
    "json_response",
    "ordered",
    "route_of",
]

log = logging.getLogger("shepherd.http")

Handler = Callable[["ApiRequest"], Awaitable[Any]]


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error answer: ``{"error": {"status", "message", "field"?}}``."""

    status: int
    message: str
    field: str | None = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    scope: Scope = "read"
    summary: str = ""
    query: type | None = None
    body: Any = None  # a msgspec-decodable type (Struct, list[Struct], ...)
    response: Any = None  # the 2xx answer's type, for the document
    status: int = 200
    tags: tuple[str, ...] = ()
    # the 4xx statuses worth documenting besides 400 / 401 / 403 / 422 / 429 (another
    # 2xx, such as 204, is documented without a body)
    errors: tuple[int, ...] = ()
    name: str = ""  # the operationId; default: from method and path


@dataclass
class ApiRequest:
    ctx: HttpContext
    request: Request
    principal: Principal
    params: dict[str, str]
    query: Any = None
    body: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rt(self) -> Any:
        return self.ctx.rt


_FIELD = re.compile(r"at `\$\.?(.*?)`")
_UNKNOWN = re.compile(r"(?:unknown|missing required) field `([^`]*)`")


def _field_of(message: str) -> str | None:
    m = _FIELD.search(message)
    path = m.group(1).lstrip(".") if m is not None else ""
    unknown = _UNKNOWN.search(message)  # name the unknown field itself, not its object
    if unknown is not None:
        path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
    return path or None


def status_of(exc: BaseException) -> tuple[int, str, str | None]:
    """An exception -> (status, message, field)."""
    if isinstance(exc, ApiError):
        return exc.status, exc.message, exc.field
    if isinstance(exc, ConfigError):
        return 422, str(exc), getattr(exc, "field", None)
    if isinstance(exc, NotFound):
        return 404, str(exc), None
    if isinstance(exc, Conflict):
        return 409, str(exc), None
    if isinstance(exc, DiskFull):
        return 507, str(exc), None
    if isinstance(exc, DatabaseLocked | ReadOnly | MailboxFull | MailboxClosed):
        return 503, str(exc), None
    if isinstance(exc, StoreError):
        return 503, str(exc), None
    if isinstance(exc, ShepherdError):
        return 400, str(exc), None
    if isinstance(exc, msgspec.ValidationError):
        return 422, str(exc), _field_of(str(exc))
    return 500, "internal error", None


def error_response(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    body = msgspec.json.encode(
        ErrorEnvelope(ErrorBody(status=status, message=message, field=field))
    )
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def json_response(value: Any, status: int = 200) -> Response:
    body = msgspec.json.encode(value, enc_hook=_enc_hook)  # durations (Seconds) as numbers
    return Response(body, status_code=status, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_query(request: Request, type_: type) -> Any:
    raw: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in raw:  # repeated: a list (?state=queued&state=running)
            prev = raw[key]
            raw[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            raw[key] = value
    hints = getattr(type_, "__annotations__", {})
    for key, value in list(raw.items()):
        hint = str(hints.get(key, ""))
        if "list" in hint and not isinstance(value, list):
            raw[key] = value.split(",") if value else []
    try:
        return msgspec.convert(raw, type_, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        raise ApiError(422, f"query: {text}", field=_field_of(text)) from None


def decode_body(data: bytes, type_: Any) -> Any:
    if not data.strip():
        raise ApiError(400, "a JSON body is required")
    try:
        return msgspec.json.decode(data, type=type_, dec_hook=_dec_hook)  # "30s" durations
    except msgspec.ValidationError as exc:
        text = str(exc)
        raise ApiError(422, text, field=_field_of(text)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"malformed JSON: {json_problem(data, str(exc))}") from None
    except RecursionError:
        raise ApiError(422, f"the body is {TOO_DEEP}") from None


def _agent_problem(agent: str) -> str | None:
    """Why an ``X-Agent-ID`` is no agent id (the agents registry's rule), or None."""
    try:
        check_agent_id(agent, field="X-Agent-ID")
    except ConfigError as exc:
        return str(exc)
    return None


def route_of(ep: Endpoint, ctx: HttpContext) -> Route:
    async def endpoint(request: Request) -> Response:
        try:
            principal = ctx.auth.authenticate(request.headers)
        except AuthError as exc:
            headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else None
            if exc.status == 401:
                headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
            return error_response(exc.status, exc.message, headers=headers)
        if not principal.allows(ep.scope):
            return error_response(
                403, f"this needs a token of scope {ep.scope!r} (yours: {principal.scope!r})"
            )
        agent = request.headers.get("x-agent-id", "")
        if agent and (bad := _agent_problem(agent)) is not None:
            return error_response(422, bad, "X-Agent-ID")  # before it could hold a lease
        try:
            query = decode_query(request, ep.query) if ep.query is not None else None
            body = None
            if ep.body is not None:
                body = decode_body(await read_body(request, ctx.config.max_body), ep.body)
            req = ApiRequest(ctx, request, principal, dict(request.path_params), query, body)
            out = await ep.handler(req)
        except Exception as exc:  # every error becomes a JSON answer; a 500 is logged
            status, message, fld = status_of(exc)
            if status >= 500 and status != 503 and status != 507:
                log.exception("http.error %s %s", ep.method, ep.path)
            headers = getattr(exc, "headers", None) or None
            if status == 503 and headers is None:
                headers = {"Retry-After": "1"}
            return error_response(status, message, fld, headers)
        if isinstance(out, Response):
            return out
        return json_response(out, ep.status)

    suffix = _SUFFIX.search(ep.path)
    if suffix is not None:
        return _SuffixRoute(
            ep.path, endpoint, methods=[ep.method], name=ep.name or None, suffix=suffix.group(1)
        )
    return Route(ep.path, endpoint, methods=[ep.method], name=ep.name or None)


# an action after a name that may hold "/": "/api/v1/jobs/{name:path}/run" -> "run"
_SUFFIX = re.compile(r":path}/([^{}/]+)$")


def ordered(endpoints: list[Endpoint]) -> list[Endpoint]:
    """The endpoints in the order their routes are tried: the actions after a
    ``{...:path}`` name first (else ``/jobs/{name:path}`` would take ``x/run`` as a
    name), the rest as listed."""
    return sorted(endpoints, key=lambda ep: _SUFFIX.search(ep.path) is None)


class _SuffixRoute(Route):
    """A route whose last segment must be literal in the raw path (not ``%2F...``)."""

    def __init__(self, *args: Any, suffix: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.suffix = suffix

    def matches(self, scope: AsgiScope) -> tuple[Match, AsgiScope]:
        match, child = super().matches(scope)
        if match is Match.NONE or _literal_tail(scope, self.suffix):
            return match, child
        return Match.NONE, {}


def _literal_tail(scope: AsgiScope, suffix: str) -> bool:
    """Whether the raw path's last ``/``-separated segment decodes to ``suffix`` (a
    server that gives no ``raw_path``: the decoded path, which matched, decides)."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        return True
    tail = raw.partition(b"?")[0].rsplit(b"/", 1)[-1]
    return unquote(tail.decode("latin-1")) == suffix
