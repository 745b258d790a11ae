"""Backend failures become clean answers; a leaving client leaves nothing behind."""

from __future__ import annotations

import asyncio
import logging
import socket

import httpx
import pytest

from backends.recorder import EndlessEventStream, HangingBackend, RecordingBackend, SilentEventStream
from helpers import anonymous, gateway_config, sse_events

CALL = {"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": {"name": "x", "arguments": {}}}
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def problems():
    """Warnings and errors from every logger, uvicorn's own included (they do not propagate)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.WARNING)
    loggers = [logging.getLogger(), logging.getLogger("uvicorn"), logging.getLogger("uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)
    yield records
    for logger in loggers:
        logger.removeHandler(handler)


async def test_backend_refusing_connections_gives_502_with_the_request_id(start_gateway):
    base = start_gateway(gateway_config({"down": anonymous(f"http://127.0.0.1:{_closed_port()}/mcp")}))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{base}/mcp/down", json=CALL, headers=HEADERS)
    assert response.status_code == 502
    body = response.json()
    assert body["jsonrpc"] == "2.0" and body["id"] == 41
    assert "unreachable" in body["error"]["message"] and "'down'" in body["error"]["message"]


async def test_backend_refusing_a_get_stream_gives_plain_json_502(start_gateway):
    base = start_gateway(gateway_config({"down": anonymous(f"http://127.0.0.1:{_closed_port()}/mcp")}))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{base}/mcp/down", headers={"accept": "text/event-stream"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "backend_unavailable"


async def test_hanging_backend_gives_504_within_the_read_timeout(start_server, start_gateway):
    hanging = HangingBackend()
    backend = start_server(hanging, lifespan="off")
    try:
        config = anonymous(f"{backend.base_url}/mcp", timeouts={"read": 0.5, "connect": 1})
        base = start_gateway(gateway_config({"stuck": config}))
        # The client would give up after 10 s: a 504 at all means the gateway's own limit fired.
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(f"{base}/mcp/stuck", json=CALL, headers=HEADERS)
        assert response.status_code == 504
        assert response.json()["id"] == 41
        assert "did not answer within 0.5 s" in response.json()["error"]["message"]
        assert hanging.calls == 1
    finally:
        hanging.release.set()


async def test_client_leaving_mid_stream_closes_the_upstream_quietly(start_server, start_gateway, problems):
    stream = EndlessEventStream()
    backend = start_server(stream, lifespan="off")
    base = start_gateway(gateway_config({"sse": anonymous(f"{backend.base_url}/mcp")}))
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", f"{base}/mcp/sse", headers={"accept": "text/event-stream"}) as response:
            async for event in sse_events(response):
                assert event["data"].startswith("tick")
                break
    assert await asyncio.to_thread(stream.closed.wait, 10), "backend stream was never closed"
    assert [r.getMessage() for r in problems] == []


async def test_silent_stream_gets_keep_alive_comments_between_events(start_server, start_gateway):
    silent = SilentEventStream()
    backend = start_server(silent, lifespan="off")
    base = start_gateway(gateway_config({"quiet": anonymous(f"{backend.base_url}/mcp")}, keepAliveSeconds=1))
    seen: list[str] = []
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            async with client.stream("GET", f"{base}/mcp/quiet", headers={"accept": "text/event-stream"}) as response:
                async for line in response.aiter_lines():
                    seen.append(line)
                    if line == ": keep-alive":
                        silent.release.set()
                    if line == "data: last":
                        break
    finally:
        silent.release.set()
    assert seen[:2] == ["data: first", ""]
    assert ": keep-alive" in seen and seen[-1] == "data: last"


async def test_stream_silent_past_the_idle_limit_is_ended(start_server, start_gateway):
    silent = SilentEventStream()
    backend = start_server(silent, lifespan="off")
    config = anonymous(f"{backend.base_url}/mcp", timeouts={"idleStream": 1.5})
    base = start_gateway(gateway_config({"quiet": config}, keepAliveSeconds=1))
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            async with client.stream("GET", f"{base}/mcp/quiet", headers={"accept": "text/event-stream"}) as response:
                lines = [line async for line in response.aiter_lines()]
    finally:
        silent.release.set()
    assert "data: first" in lines and "data: last" not in lines


async def test_oversized_body_gets_413_and_never_reaches_the_backend(start_server, start_gateway):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    base = start_gateway(gateway_config({"r": anonymous(f"{backend.base_url}/mcp")}, maxBodyBytes=1024))
    big = {**CALL, "params": {"name": "x", "arguments": {"blob": "x" * 4000}}}
    async with httpx.AsyncClient(timeout=10) as client:
        declared = await client.post(f"{base}/mcp/r", json=big, headers=HEADERS)

        async def chunks():
            payload = httpx.Request("POST", "http://x", json=big).content
            for i in range(0, len(payload), 500):
                yield payload[i : i + 500]

        streamed = await client.post(f"{base}/mcp/r", content=chunks(), headers=HEADERS)
    assert declared.status_code == 413 and streamed.status_code == 413
    assert "1024-byte limit" in declared.json()["error"]["message"]
    assert all(len(r.body) <= 1024 for r in recorder.requests)
    assert not any(r.body.endswith(b"}") for r in recorder.requests)


async def test_unknown_server_is_a_404_json(start_gateway):
    base = start_gateway(gateway_config({"known": anonymous("http://127.0.0.1:9/mcp")}))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{base}/mcp/unknown", json=CALL, headers=HEADERS)
        elsewhere = await client.get(f"{base}/not-mcp")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "unknown_server", "message": "no MCP server named 'unknown'"}}
    assert elsewhere.status_code == 404


async def test_client_leaving_mid_body_is_quiet_and_never_completes_upstream(start_server, start_gateway, problems):
    import anyio

    access: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            access.append(record.getMessage())

    handler = Keep(level=logging.INFO)
    access_logger = logging.getLogger("shared.access")
    access_logger.addHandler(handler)
    access_logger.setLevel(logging.INFO)
    try:
        recorder = RecordingBackend()
        backend = start_server(recorder, lifespan="off")
        base = start_gateway(gateway_config({"r": anonymous(f"{backend.base_url}/mcp")}))
        host, port = base.removeprefix("http://").split(":")
        stream = await anyio.connect_tcp(host, int(port))
        head = (f"POST /mcp/r HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000\r\n\r\n")
        await stream.send(head.encode() + b'{"jsonrpc":"2.0","id":1,')
        await stream.aclose()
        with anyio.fail_after(10):
            while not any("status=499" in line for line in access):
                await anyio.sleep(0.05)  # poll interval until the gateway has handled the disconnect
    finally:
        access_logger.removeHandler(handler)
    assert all(len(r.body) < 1000 for r in recorder.requests)
    assert [r.getMessage() for r in problems] == []
