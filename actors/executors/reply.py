"""Reading an agent turn's reply: the gateway's stream (SSE chunks) or one JSON body,
each chunk a heartbeat for the run's idle timeout, and the verdict on the reply text
(``sentinels.classify_reply``; a draining gateway -> ``Deferred``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:  # imported where used: a runtime without HTTP work never loads httpx
    import httpx

from shepherd.actors.executors.base import ExecResult, RunContext
from shepherd.actors.executors.gateway import GatewayConfig
from shepherd.actors.executors.sentinels import classify_reply, is_drain_error
from shepherd.store.errors import Deferred

__all__ = ["DRAIN_DEFER", "SUMMARY_CHARS", "read_json", "read_sse", "verdict"]

SUMMARY_CHARS = 5000
DRAIN_DEFER = 90.0  # OCS retries a draining gateway after 90 s


def _malformed(what: str) -> ExecResult:
    return ExecResult(ok=False, error=f"gateway sent a malformed reply: {what}")


async def read_sse(response: httpx.Response, ctx: RunContext) -> tuple[str, int] | ExecResult:
    parts: list[str] = []
    chunks = 0
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, comments, "event:" / "id:" fields
        data = line[5:].strip()
        if data == "[DONE]":
            break
        ctx.heartbeat()
        chunks += 1
        try:
            event = msgspec.json.decode(data)
        except msgspec.DecodeError:
            return _malformed(f"stream event is not JSON: {data[:200]!r}")
        if not isinstance(event, dict):
            return _malformed(f"stream event is not an object: {data[:200]!r}")
        if event.get("error"):
            err = event["error"]
            text = err.get("message") if isinstance(err, dict) else err
            return ExecResult(
                ok=False,
                error=f"gateway reported an error mid-stream: {text}",
                details={"gateway_failure": True},
            )
        choices = event.get("choices") or []
        if choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str):
                parts.append(content)
    return "".join(parts), chunks


async def read_json(
    response: httpx.Response, ctx: RunContext, ctype: str
) -> tuple[str, int] | ExecResult:
    data = bytearray()
    chunks = 0
    async for piece in response.aiter_bytes():
        ctx.heartbeat()
        chunks += 1
        data += piece
    try:
        decoded = msgspec.json.decode(bytes(data))
    except msgspec.DecodeError:
        head = bytes(data[:200]).decode("utf-8", errors="replace").strip()
        return ExecResult(
            ok=False,
            error=f"gateway returned a non-JSON reply ({ctype or 'no content-type'}): {head!r}",
        )
    try:
        content = decoded["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return _malformed("no choices[0].message.content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        return _malformed("choices[0].message.content is not a string")
    return content, chunks


def verdict(gw: GatewayConfig, reply: str, chunks: int) -> ExecResult:
    judged = classify_reply(reply)
    details: dict[str, Any] = {"reply_chars": len(reply), "chunks": chunks}
    if judged.sentinel:
        details["sentinel"] = judged.sentinel
    result = {"summary": reply[:SUMMARY_CHARS]}
    if judged.status == "ok":
        return ExecResult(ok=True, result=result, deliver=judged.deliver, details=details)
    if is_drain_error(reply.strip()[:500]):
        raise Deferred(max(float(gw.defer), DRAIN_DEFER), "Gateway is draining")
    return ExecResult(
        ok=False,
        error=judged.reason,
        result=result,
        retry=judged.retry,
        deliver=judged.deliver,
        details=details,
    )
