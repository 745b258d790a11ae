"""Request bodies are bounded in time and bytes, and every error answer is a clean 4xx.

The gateway runs as users run it (`python -m shared serve`, stopped by its pid) in
front of recording backends; clients are bare sockets, so they can be as short,
slow or large as an attacker's.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Iterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from backends.recorder import RecordingBackend
from emulators.server import BackgroundServer
from gateway_process import start_gateway_process
from raw_socket import RawConnection, request_head
from shared.inbound.keys import key_digest

KEY = "limits-key-0123456789abcdef"
MAX_BODY = 16 * 1024 * 1024
IDLE = 1.0
MIN_RATE = 2000
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


class SlowReadingBackend:
    """Waits before it reads the request body, like a busy backend: the upload waits on it."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.bodies: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await asyncio.sleep(self.pause)  # the backend's own slowness, which the test is about
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.bodies.append(size)
        payload = b'{"jsonrpc":"2.0","id":1,"result":{}}'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]})
        await send({"type": "http.response.body", "body": payload})


class Setup:
    def __init__(self, base: str, recorder: RecordingBackend, slow: SlowReadingBackend) -> None:
        self.base = base
        self.host = base.removeprefix("http://")
        self.recorder = recorder
        self.slow = slow

    def recorded(self, tag: str):
        return [r for r in self.recorder.requests if r.query == f"t={tag}".encode()]


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    recorder, slow = RecordingBackend(), SlowReadingBackend(pause=2.5)
    backends = [BackgroundServer(recorder).start(), BackgroundServer(slow).start()]
    try:
        rec_url, slow_url = (f"{b.base_url}/mcp" for b in backends)
        document = {
            "servers": {
                "open": {"url": rec_url, "anonymous": True, "timeouts": {"read": 30}},
                "keyed": {"url": rec_url, "auth": {"subscriptionKey": {}}, "timeouts": {"read": 30}},
                "slowreader": {"url": slow_url, "anonymous": True, "timeouts": {"read": 30}},
            },
            "subscriptions": {"alice": {"servers": ["keyed"], "primaryKey": {"sha256": key_digest(KEY)}}},
            "gateway": {"maxBodyBytes": MAX_BODY, "bodyIdleTimeoutSeconds": IDLE, "minBodyBytesPerSecond": MIN_RATE},
        }
        gateway = start_gateway_process(document)
        try:
            yield Setup(gateway.url, recorder, slow)
        finally:
            gateway.stop()
    finally:
        for backend in backends:
            backend.stop()


def _post_head(setup: Setup, path: str, length: int | None, **extra: str) -> bytes:
    headers = dict(JSON_HEADERS)
    if length is not None:
        headers["Content-Length"] = str(length)
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return request_head("POST", path, setup.host, headers)


async def _answer(conn: RawConnection, within: float = 8.0):
    async with asyncio.timeout(within):
        return await conn.response()


# -- the error path reads a bounded prefix in bounded time ------------------------------


async def test_unauthenticated_request_with_a_short_body_is_answered_without_waiting_for_it(setup):
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(_post_head(setup, "/mcp/keyed?t=short", 1000) + b'{"jsonrpc":"2.0","id":1,')
        response = await _answer(conn)
        assert response.status == 403
        assert response.json()["error"]["code"] == "forbidden"  # no id had arrived: a plain JSON error
        assert response.headers.get("connection") == "close"
        async with asyncio.timeout(5):
            assert await conn.closed_by_server()
    finally:
        conn.close()


async def test_unauthenticated_request_names_the_id_that_arrived_before_the_body_stalled(setup):
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(_post_head(setup, "/mcp/keyed?t=short-id", 1000)
                        + b'{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{')
        response = await _answer(conn)
        assert response.status == 403 and response.json()["id"] == 5
    finally:
        conn.close()


# -- the body as it streams up ---------------------------------------------------------


async def test_a_body_that_stops_midway_gets_408_and_never_completes_upstream(setup):
    conn = await RawConnection.open(setup.base)
    try:
        started = time.monotonic()
        await conn.send(_post_head(setup, "/mcp/open?t=stall", 1000)
                        + b'{"jsonrpc":"2.0","id":"s1","method":"tools/call",')
        response = await _answer(conn)
        waited = time.monotonic() - started
    finally:
        conn.close()
    assert response.status == 408
    body = response.json()
    assert body["id"] == "s1" and body["error"]["data"]["status"] == 408
    assert "1 s" in body["error"]["message"]
    assert waited >= IDLE * 0.9
    assert all(len(r.body) < 1000 for r in setup.recorded("stall"))


async def test_a_trickle_below_the_minimum_rate_gets_408_though_it_never_pauses_for_long(setup):
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(_post_head(setup, "/mcp/open?t=trickle", 100_000) + b'{"jsonrpc":"2.0","id":9,"method":"x",')
        answer = asyncio.ensure_future(_answer(conn))
        started = time.monotonic()
        while not answer.done() and time.monotonic() - started < 8:
            await conn.send(b" " * 20)  # 80 bytes/s, well under the minimum, pauses far shorter than IDLE
            await asyncio.wait([answer], timeout=0.25)
        response = await answer
    finally:
        conn.close()
    assert response.status == 408 and response.json()["id"] == 9
    assert f"{MIN_RATE} bytes/s" in response.json()["error"]["message"]
    assert not any(r.body.endswith(b"}") for r in setup.recorded("trickle"))


async def test_a_slow_upload_above_the_minimum_rate_goes_through_whole(setup):
    payload = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                          "params": {"name": "x", "arguments": {"blob": "y" * 24_000}}}).encode()
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(_post_head(setup, "/mcp/open?t=steady", len(payload)))
        for i in range(0, len(payload), 2400):
            await conn.send(payload[i : i + 2400])
            await asyncio.sleep(0.15)  # the client's pace (16 KB/s, 1.5 s in all), not a synchronisation
        response = await _answer(conn)
    finally:
        conn.close()
    assert response.status == 200
    assert [r.body for r in setup.recorded("steady")] == [payload]


async def test_a_backend_that_reads_slowly_does_not_count_against_the_client(setup):
    payload = b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"blob":"' + b"z" * (8 * 1024 * 1024) + b'"}}'
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{setup.base}/mcp/slowreader", content=payload, headers=JSON_HEADERS)
    assert response.status_code == 200
    assert setup.slow.bodies[-1] == len(payload)


# -- a 413 names the request's id when its prefix holds it ------------------------------


def _call_prefix(request_id: str, size: int) -> bytes:
    start = b'{"jsonrpc":"2.0","id":"%s","method":"tools/call","params":{"arguments":{"blob":"' % request_id.encode()
    return start + b"x" * (size - len(start))


async def test_413_on_a_declared_length_names_the_id_from_the_first_bytes(setup):
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(_post_head(setup, "/mcp/open?t=declared", 2 * MAX_BODY) + _call_prefix("big-1", 5000))
        response = await _answer(conn)
    finally:
        conn.close()
    assert response.status == 413
    assert response.json()["id"] == "big-1" and response.json()["error"]["data"]["status"] == 413
    assert response.headers.get("connection") == "close"
    assert setup.recorded("declared") == []


async def test_413_while_streaming_names_the_id(setup):
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(_post_head(setup, "/mcp/open?t=streamed", None, Transfer_Encoding="chunked"))

        async def upload() -> None:
            first = _call_prefix("big-2", 64 * 1024)
            if not await conn.send(b"%x\r\n%b\r\n" % (len(first), first)):
                return
            chunk = b"x" * (256 * 1024)
            for _ in range(MAX_BODY // len(chunk) + 2):
                if not await conn.send(b"%x\r\n%b\r\n" % (len(chunk), chunk)):
                    return

        uploading = asyncio.ensure_future(upload())
        response = await _answer(conn, within=20)
        uploading.cancel()
    finally:
        conn.close()
    assert response.status == 413 and response.json()["id"] == "big-2"
    assert all(len(r.body) <= MAX_BODY for r in setup.recorded("streamed"))


async def test_413_with_the_id_after_more_than_the_prefix_holds_is_a_plain_error(setup):
    late = b'{"jsonrpc":"2.0","method":"tools/call","params":{"blob":"' + b"x" * 70_000 + b'"},"id":1}'
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(_post_head(setup, "/mcp/open?t=late", 2 * MAX_BODY) + late)
        response = await _answer(conn)
    finally:
        conn.close()
    assert response.status == 413
    assert response.json()["error"]["code"] == "body_too_large" and "id" not in response.json()


async def test_an_oversized_length_with_expect_100_continue_is_refused_before_the_body_is_invited(setup):
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(_post_head(setup, "/mcp/open?t=expect", 2 * MAX_BODY, Expect="100-continue"))
        response = await _answer(conn)
    finally:
        conn.close()
    assert response.status == 413  # not "100 Continue": the client never sends the body


# -- every input gets a 4xx ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected_id"),
    [
        (b"[" * 30000, None),
        (b'{"a":' * 30000, None),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":' + b"[" * 30000 + b"]" * 30000 + b"}", 1),
        (b'{"jsonrpc":"2.0","id":2,"method":"x","params":' + b"[" * 30000, 2),
    ],
)
async def test_deeply_nested_bodies_get_a_4xx_never_a_500(setup, body, expected_id):
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{setup.base}/mcp/keyed", content=body, headers=JSON_HEADERS)
    assert response.status_code == 403
    assert response.json().get("id") == expected_id
