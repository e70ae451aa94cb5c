"""The gateway stand-in behaves like a gateway over real sockets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway_standin import StandIn, run_standin

CHAT = "/v1/chat/completions"


@pytest.fixture
def gw() -> Iterator[StandIn]:
    with run_standin() as standin:
        yield standin


def chat_body(stream: bool = False) -> dict[str, object]:
    return {
        "model": "openclaw:main",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": stream,
    }


def sse_content(text: str) -> tuple[str, bool]:
    """Concatenated delta contents and whether the stream ended with [DONE]."""
    out: list[str] = []
    done = False
    for event in text.split("\n\n"):
        if not event.startswith("data: "):
            continue
        data = event.removeprefix("data: ")
        if data == "[DONE]":
            done = True
            continue
        delta = json.loads(data)["choices"][0]["delta"]
        out.append(delta.get("content", ""))
    return "".join(out), done


def test_normal_reply_is_openai_shaped_and_request_is_recorded(gw: StandIn) -> None:
    gw.set_mode(reply="HEARTBEAT_OK")
    r = httpx.post(
        gw.url + CHAT,
        json=chat_body(),
        headers={"x-openclaw-agent-id": "main", "x-openclaw-session-key": "scheduler:7"},
        timeout=5,
    )
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"] == {"role": "assistant", "content": "HEARTBEAT_OK"}
    [req] = gw.requests
    assert req.method == "POST"
    assert req.path == CHAT
    assert req.headers["x-openclaw-session-key"] == "scheduler:7"
    assert req.json["messages"][0]["content"] == "hello"


def test_queued_replies_come_first_then_the_mode_reply(gw: StandIn) -> None:
    gw.set_mode(reply="final")
    gw.queue_replies("rate limit exceeded", "second")
    contents = [
        httpx.post(gw.url + CHAT, json=chat_body(), timeout=5).json()["choices"][0]["message"][
            "content"
        ]
        for _ in range(3)
    ]
    assert contents == ["rate limit exceeded", "second", "final"]


def test_stream_reply_is_sse_chunks_ending_with_done(gw: StandIn) -> None:
    gw.set_mode(reply="the quick brown fox")
    with httpx.stream("POST", gw.url + CHAT, json=chat_body(stream=True), timeout=5) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    content, done = sse_content(text)
    assert content == "the quick brown fox"
    assert done
    assert text.count("data: ") >= 5  # role chunk, 4 words, finish, [DONE]


def test_error_status_returns_json_error(gw: StandIn) -> None:
    gw.set_mode(status=500)
    r = httpx.post(gw.url + CHAT, json=chat_body(), timeout=5)
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "standin_error"
    gw.set_mode(status=429)
    assert httpx.post(gw.url + CHAT, json=chat_body(), timeout=5).status_code == 429


def test_non_json_body(gw: StandIn) -> None:
    gw.set_mode(raw_body="<html>502 Bad Gateway</html>", status=502)
    r = httpx.post(gw.url + CHAT, json=chat_body(), timeout=5)
    assert r.status_code == 502
    with pytest.raises(json.JSONDecodeError):
        r.json()


def test_hang_never_answers_so_the_client_timeout_fires(gw: StandIn) -> None:
    gw.set_mode(hang=True)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.url + CHAT, json=chat_body(), timeout=httpx.Timeout(5, read=0.3))
    assert time.monotonic() - started < 4
    assert [r.path for r in gw.requests] == [CHAT]  # it did arrive


def test_slow_trickle_streams_chunks_at_the_interval(gw: StandIn) -> None:
    gw.set_mode(trickle=(0.05, 4))
    arrivals: list[float] = []
    with httpx.stream("POST", gw.url + CHAT, json=chat_body(stream=True), timeout=5) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                delta = json.loads(line.removeprefix("data: "))["choices"][0]["delta"]
                if delta.get("content", "").startswith("chunk"):
                    arrivals.append(time.monotonic())
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] >= 0.1  # spread out, not sent at once


def test_trickle_outlasts_an_idle_read_timeout(gw: StandIn) -> None:
    gw.set_mode(trickle=(1.0, 3))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.url + CHAT, json=chat_body(), timeout=httpx.Timeout(5, read=0.2))


def test_health_switch(gw: StandIn) -> None:
    assert httpx.get(gw.url + "/health", timeout=5).status_code == 200
    gw.set_mode(healthy=False)
    assert httpx.get(gw.url + "/health", timeout=5).status_code == 503


def test_down_refuses_connections_and_comes_back_on_the_same_port(gw: StandIn) -> None:
    url = gw.url
    gw.set_mode(down=True)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health", timeout=2)
    gw.set_mode(down=False)
    assert gw.url == url
    assert httpx.get(url + "/health", timeout=5).status_code == 200


def test_system_event_is_recorded_and_accepted(gw: StandIn) -> None:
    r = httpx.post(gw.url + "/v1/system-event", json={"text": "wake up", "mode": "now"}, timeout=5)
    assert r.status_code == 202
    assert gw.requests[-1].json == {"text": "wake up", "mode": "now"}


def test_webhook_fails_twice_then_succeeds(gw: StandIn) -> None:
    gw.set_mode(webhook_fail_first=2)
    codes = [
        httpx.post(gw.url + "/webhook", json={"n": i}, timeout=5).status_code for i in range(4)
    ]
    assert codes == [500, 500, 200, 200]
    assert [r.json for r in gw.requests] == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]


def test_unknown_mode_field_is_rejected(gw: StandIn) -> None:
    with pytest.raises(TypeError):
        gw.set_mode(replyy="typo")


def test_stop_releases_a_hanging_request() -> None:
    with run_standin(hang=True) as gw:
        with (
            httpx.Client(timeout=httpx.Timeout(5, read=0.2)) as client,
            pytest.raises(httpx.ReadTimeout),
        ):
            client.post(gw.url + CHAT, json=chat_body())
        started = time.monotonic()
    assert time.monotonic() - started < 5  # stop() did not wait out the hang
    assert not gw.is_up
