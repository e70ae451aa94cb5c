"""Refused requests on the REST resources, through a real uvicorn on loopback: the
status each refusal answers, the field it names, and that none of them stored a thing
(rows counted through the Runtime API before and after). No token reaches the logs.

    no token / unknown token   401        read token on a change     403
    agent token, other agent   403        empty bucket               429 + Retry-After
    body over max_body         413        malformed JSON             400
    unknown / mistyped field   422 (named) id not an integer          422 field "id"
    unknown id                 404

The limiter itself on a fake clock: the default burst is ``rate_limit`` (a minute's
allowance), an explicit ``rate_burst`` wins, within its bounds.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from shepherd import ConfigError, Runtime
from shepherd.runtime.http.auth import Auth, AuthError
from shepherd.runtime.http.config import HttpConfig, TokenConfig
from tests.http_helpers import ADMIN, AGENT, READ, serve

pytestmark = pytest.mark.anyio


async def counts(rt: Runtime) -> tuple[Any, ...]:
    stats = await rt.stats()
    return (
        stats["dispatches"],
        len(await rt.list_jobs()),
        len(await rt.agents()),
        len(await rt.messages(limit=1000)),
        len(await rt.pauses()),
    )


async def ok(payload: dict[str, Any]) -> None:
    return None


MUTATIONS: list[tuple[str, str, Any]] = [
    ("POST", "/api/v1/jobs", {"name": "x", "target": "ok"}),
    ("POST", "/api/v1/dispatches", {"job": "j"}),
    ("POST", "/api/v1/dispatches/batch", {"items": [{"job": "j"}]}),
    ("POST", "/api/v1/jobs/j/run", {}),
    ("POST", "/api/v1/agents", {"id": "zz"}),
    ("POST", "/api/v1/messages", {"to_agent": "main", "body": "hi", "from_agent": "a1"}),
    ("POST", "/api/v1/pauses", {"scope": "runtime"}),
    ("DELETE", "/api/v1/jobs/j", None),
]


async def test_the_refusals_store_nothing(db_path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve(db_path, http={"max_body": 1024}) as srv:
        srv.rt.register("ok", ok)
        await srv.rt.pause("runtime", reason="keep everything queued")
        async with srv.client() as admin:
            assert (
                await admin.post("/api/v1/jobs", json={"name": "j", "target": "ok"})
            ).status_code == 201
        before = await counts(srv.rt)

        async def refused(token: str | None, agent: str | None, status: int) -> None:
            async with srv.client(token=token, agent=agent) as c:
                for method, path, body in MUTATIONS:
                    resp = await c.request(method, path, json=body)
                    assert resp.status_code == status, (method, path, token, resp.text)
                    assert resp.json()["error"]["status"] == status

        await refused(None, None, 401)
        await refused("not-a-known-token", None, 401)
        await refused(READ, None, 403)
        await refused(AGENT, "someone-else", 403)
        async with srv.client(token=None) as c:
            assert (await c.get("/api/v1/jobs")).headers["www-authenticate"] == "Bearer"

        async with srv.client(token=AGENT) as a1:  # agent scope: no admin work
            for method, path, body in MUTATIONS[:1] + MUTATIONS[4:5] + MUTATIONS[6:]:
                resp = await a1.request(method, path, json=body)
                assert resp.status_code == 403, (path, resp.text)

        async with srv.client() as c:
            big = {"job": "j", "payload": {"blob": "x" * 2000}}
            assert (await c.post("/api/v1/dispatches", json=big)).status_code == 413
            raw = await c.post("/api/v1/dispatches", content=b'{"job": "j",',
                               headers={"Content-Type": "application/json"})  # fmt: skip
            assert raw.status_code == 400 and "malformed JSON" in raw.json()["error"]["message"]
            assert "truncated" in raw.json()["error"]["message"]  # it is cut short
            lone = await c.post("/api/v1/dispatches", content=b'{"job": "j\\ud800"}',
                                headers={"Content-Type": "application/json"})  # fmt: skip
            assert lone.status_code == 400, lone.text
            message = lone.json()["error"]["message"]
            assert message.startswith("malformed JSON: an unpaired surrogate escape \\ud800")
            assert "truncated" not in message
            empty = await c.post("/api/v1/dispatches", content=b"")
            assert empty.status_code == 400
            cases: list[tuple[str, str, Any, str]] = [
                ("POST", "/api/v1/dispatches", {"job": "j", "colour": "red"}, "colour"),
                ("POST", "/api/v1/dispatches", {"job": "j", "priority": 5}, "priority"),
                ("POST", "/api/v1/dispatches", {"job": "j", "max_attempts": "3"}, "max_attempts"),
                ("POST", "/api/v1/dispatches", {"payload": {}}, "job"),
                ("POST", "/api/v1/dispatches", {"job": "j", "delay": -1}, "delay"),
                ("POST", "/api/v1/jobs", {"name": "y", "retry": {"factor": "x"}}, "retry.factor"),
                ("POST", "/api/v1/jobs", {"name": "y", "timeout": "forever"}, "timeout"),
                ("PATCH", "/api/v1/jobs/j", {"tiemout": 1}, "tiemout"),
                ("POST", "/api/v1/agents", {"id": "bad id"}, "id"),
                ("GET", "/api/v1/dispatches/abc", None, "id"),
                ("GET", "/api/v1/runs/-1", None, "id"),
                ("POST", "/api/v1/dead/1.5/retry", None, "id"),
                ("GET", "/api/v1/runs?limit=x", None, "limit"),
            ]
            for method, path, body, field in cases:
                resp = await c.request(method, path, json=body)
                assert resp.status_code == 422, (path, body, resp.text)
                assert resp.json()["error"]["field"] == field, (path, body, resp.text)
            for path in ("/api/v1/dispatches/999999", "/api/v1/runs/999999",
                         "/api/v1/jobs/nope", "/api/v1/approvals/999999"):  # fmt: skip
                assert (await c.get(path)).status_code == 404, path
            missing = await c.post("/api/v1/dispatches", json={"job": "nope"})
            assert missing.status_code == 404
        assert await counts(srv.rt) == before  # nothing stored by any refusal

    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    for token in (ADMIN, READ, AGENT, "not-a-known-token"):
        assert token not in text


async def test_rate_limit_answers_429_with_retry_after(db_path: str) -> None:
    async with serve(db_path, http={"rate_limit": 1, "rate_burst": 2}) as srv:
        before = await counts(srv.rt)
        async with srv.client() as c:
            assert (await c.get("/api/v1/jobs")).status_code == 200
            assert (await c.get("/api/v1/jobs")).status_code == 200
            limited = await c.post("/api/v1/dispatches", json={"job": "j"})
            assert limited.status_code == 429
            assert int(limited.headers["retry-after"]) >= 1
        async with srv.client(token=READ) as r:  # another token has its own bucket
            assert (await r.get("/api/v1/jobs")).status_code == 200
        assert await counts(srv.rt) == before


def _limiter(now: list[float], **http: Any) -> Auth:
    """The auth table of ``[http]`` with one admin token, on the fake clock ``now[0]``."""
    tokens = [TokenConfig(name="t", scope="admin", token=ADMIN)]
    auth = Auth.from_config(HttpConfig(tokens=tokens, **http), env={})
    auth.now = lambda: now[0]
    return auth


def _admitted(auth: Auth, tries: int) -> int:
    """How many of ``tries`` requests at one instant get through before the first 429."""
    for i in range(tries):
        try:
            auth.authenticate({"authorization": f"Bearer {ADMIN}"})
        except AuthError as exc:
            assert exc.status == 429 and exc.retry_after is not None and exc.retry_after >= 1
            return i
    return tries


def test_the_default_burst_is_a_minutes_allowance() -> None:
    """``rate_limit = 10`` lets 10 through at once (not a fixed 120), then one every 6 s."""
    now = [1000.0]
    auth = _limiter(now, rate_limit=10)
    assert _admitted(auth, 200) == 10
    now[0] += 5.9
    assert _admitted(auth, 5) == 0
    now[0] += 0.1  # 6 s: one request's worth
    assert _admitted(auth, 5) == 1
    now[0] += 3600  # a long idle time refills to the burst, no more
    assert _admitted(auth, 200) == 10
    assert _admitted(_limiter([0.0]), 500) == 120  # the defaults: 120 a minute, 120 at once
    assert _admitted(_limiter([0.0], rate_limit=1), 5) == 1


def test_an_explicit_rate_burst_wins_and_is_bounded() -> None:
    assert _admitted(_limiter([0.0], rate_limit=10, rate_burst=3), 50) == 3
    assert _admitted(_limiter([0.0], rate_limit=10, rate_burst=40), 50) == 40
    assert _admitted(_limiter([0.0], rate_limit=0), 500) == 500  # 0: unlimited
    for bad in (0, 1_000_001):
        with pytest.raises(ConfigError) as err:
            HttpConfig(rate_burst=bad)
        assert err.value.field == "http.rate_burst"
