"""The OpenAPI 3.1 document, generated from the endpoints' msgspec types.

msgspec writes the JSON Schema of every type (``schema_components``); each endpoint
becomes an operation with its path and query parameters, body, answer and errors, so
``/openapi.json`` describes exactly what ``runtime.http.api`` decodes and encodes.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from shepherd.runtime.http.api import Endpoint, ErrorEnvelope
from shepherd.store.models import Seconds

__all__ = ["openapi_document"]

_PARAM = re.compile(r"{(\w+)(?::\w+)?}")
_REF = "#/components/schemas/{name}"
_STD_ERRORS = {400: "bad request", 401: "no or unknown token", 403: "wrong scope",
               422: "a field is wrong (named in error.field)", 429: "rate limited",
               503: "store busy or unavailable; retry"}  # fmt: skip


def _schema_hook(type_: type) -> dict[str, Any]:
    """A duration (``Seconds``): a number of seconds or a text such as ``"30s"``."""
    if type_ is Seconds:
        return {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}
    raise NotImplementedError(f"no schema for {type_!r}")


def _op_id(ep: Endpoint) -> str:
    if ep.name:
        return ep.name
    plain = re.sub(r"[{}]", "", _PARAM.sub(r"{\1}", ep.path))  # {name:path} -> name
    words = plain.strip("/").replace("/", "_").replace("-", "_")
    return f"{ep.method.lower()}_{words}"


def openapi_document(endpoints: list[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    types: list[Any] = [ErrorEnvelope]
    for ep in endpoints:
        for t in (ep.query, ep.body, ep.response):
            if t is not None:
                types.append(t)
    schemas, components = msgspec.json.schema_components(
        types, ref_template=_REF, schema_hook=_schema_hook
    )
    lookup = dict(zip(map(id, types), schemas, strict=True))
    error_ref = lookup[id(ErrorEnvelope)]
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        path = _PARAM.sub(r"{\1}", ep.path)
        params: list[dict[str, Any]] = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in _PARAM.findall(ep.path)
        ]
        if ep.query is not None:
            qschema = components.get(ep.query.__name__, {})
            required = set(qschema.get("required", []))
            for pname, pschema in qschema.get("properties", {}).items():
                params.append({"name": pname, "in": "query", "required": pname in required,
                               "schema": pschema, "style": "form", "explode": False})  # fmt: skip
        responses: dict[str, Any] = {}
        ok: dict[str, Any] = {"description": ep.summary or "ok"}
        if ep.response is not None:
            ok["content"] = {"application/json": {"schema": lookup[id(ep.response)]}}
        responses[str(ep.status)] = ok
        for code in sorted({*_STD_ERRORS, *ep.errors}):
            if code < 400:  # another answer without a body (204: nothing to claim)
                responses[str(code)] = {"description": "no content"}
                continue
            responses[str(code)] = {
                "description": _STD_ERRORS.get(code, "error"),
                "content": {"application/json": {"schema": error_ref}},
            }
        if ep.body is not None:
            too_large = {"application/json": {"schema": error_ref}}
            responses.setdefault("413", {"description": "body too large", "content": too_large})
        op: dict[str, Any] = {
            "operationId": _op_id(ep),
            "summary": ep.summary,
            "tags": list(ep.tags),
            "parameters": params,
            "responses": responses,
            "security": [{"bearer": []}],
        }
        if ep.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": lookup[id(ep.body)]}},
            }
        paths.setdefault(path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def encode(doc: dict[str, Any]) -> bytes:
    return msgspec.json.encode(doc)
