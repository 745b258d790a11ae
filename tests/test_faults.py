"""Backend failures become clean answers; a leaving client leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time

import httpx
import pytest

from backends.recorder import EndlessEventStream, HangingBackend, RecordingBackend, SilentEventStream
from helpers import anonymous, gateway_config, sse_events
from test_transport import RawServer

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


# -- the upstream exchange's lifecycle: leaving clients, timeouts, early and odd answers -----


def _host_port(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def _post_head(base: str, path: str, *, length: int | None = None, extra: bytes = b"") -> bytes:
    host, port = _host_port(base)
    framing = b"Content-Length: %d\r\n" % length if length is not None else b"Transfer-Encoding: chunked\r\n"
    return (
        b"POST %b HTTP/1.1\r\nHost: %b:%d\r\nContent-Type: application/json\r\n"
        b"Accept: application/json, text/event-stream\r\n%b%b\r\n" % (path.encode(), host.encode(), port, framing, extra)
    )


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:"))
    return status, await reader.readexactly(length)


async def raw_exchange(base: str, head: bytes, body) -> tuple[int, bytes]:
    """One request over a plain socket, its answer read while the body still goes up
    (as a client that listens before its upload is done)."""
    reader, writer = await asyncio.open_connection(*_host_port(base))

    async def upload() -> None:
        writer.write(head)
        async for chunk in body:
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.ensure_future(upload())
    try:
        return await asyncio.wait_for(_read_answer(reader), 10)
    finally:
        sender.cancel()
        writer.close()


UPLOAD_LIMIT = 64 * 1024 * 1024


async def big_upload(total: int = 16 * 1024 * 1024):
    """More than loopback socket buffers hold, under the gateway's limit in these tests."""
    piece = b" " * 65536
    for _ in range(total // len(piece)):
        yield piece


class AbandonableRequest:
    """Takes the request body, never answers, and records the gateway dropping the request."""

    def __init__(self) -> None:
        self.received = threading.Event()
        self.dropped = threading.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.received.set()
        if (await receive())["type"] == "http.disconnect":  # waits until the connection goes
            self.dropped.set()


async def test_a_client_leaving_before_the_answer_drops_the_upstream_request_at_once(start_server, start_gateway, problems):
    backend = AbandonableRequest()
    server = start_server(backend)
    base = start_gateway(gateway_config({"slow": anonymous(f"{server.base_url}/mcp", timeouts={"read": 60})}))
    body = json.dumps(CALL).encode()
    reader, writer = await asyncio.open_connection(*_host_port(base))
    writer.write(_post_head(base, "/mcp/slow", length=len(body)) + body)
    await writer.drain()
    assert await asyncio.to_thread(backend.received.wait, 10)
    writer.close()
    assert await asyncio.to_thread(backend.dropped.wait, 5), "the upstream request outlived its client"
    assert [r.getMessage() for r in problems] == []


async def test_a_client_leaving_a_silent_sse_tool_cancels_it_at_once(start_server, start_gateway):
    """Talking to the MCP SDK's SSE server directly, a client that gives up on a call that
    has sent nothing yet ends the tool at once; through the gateway it must too."""
    import anyio
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    started, cancelled = threading.Event(), threading.Event()
    mcp = MCPServer("silent")

    @mcp.tool()
    async def silent() -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    server = start_server(mcp.streamable_http_app(streamable_http_path="/mcp", stateless_http=True, json_response=False))
    base = start_gateway(gateway_config({"quiet": anonymous(f"{server.base_url}/mcp")}))
    async with Client(f"{base}/mcp/quiet") as client:
        async with anyio.create_task_group() as group:
            group.start_soon(client.call_tool, "silent", {})
            assert await asyncio.to_thread(started.wait, 10)
            group.cancel_scope.cancel()
    assert await asyncio.to_thread(cancelled.wait, 5), "the tool ran on after its client gave up"


async def test_the_read_timeout_runs_from_the_sent_request_not_from_the_connect(start_server, start_gateway):
    hanging = HangingBackend()
    backend = start_server(hanging, lifespan="off")
    try:
        config = anonymous(f"{backend.base_url}/mcp", timeouts={"read": 0.5, "connect": 5})
        base = start_gateway(gateway_config({"stuck": config}))
        async with httpx.AsyncClient(timeout=20) as client:
            started = time.monotonic()
            response = await client.post(f"{base}/mcp/stuck", json=CALL, headers=HEADERS)
            elapsed = time.monotonic() - started
        assert response.status_code == 504
        assert "did not answer within 0.5 s" in response.json()["error"]["message"]
        assert elapsed < 3, f"a 0.5 s read timeout answered after {elapsed:.1f} s"
    finally:
        hanging.release.set()


async def test_a_slow_upload_is_not_blamed_on_the_backend(start_server, start_gateway):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    config = anonymous(f"{backend.base_url}/mcp", timeouts={"read": 0.5, "connect": 0.5})
    base = start_gateway(gateway_config({"r": config}))
    body = json.dumps(CALL).encode()

    async def slowly():
        yield body[:10]
        await asyncio.sleep(1.5)  # the stall under test: longer than connect + read together
        yield body[10:]

    status, answer = await raw_exchange(base, _post_head(base, "/mcp/r", length=len(body)), slowly())
    assert status == 200, answer
    assert recorder.requests[0].body == body


async def test_a_backend_that_never_accepts_gets_504_naming_the_connect_timeout(start_gateway):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):  # fills the accept queue: later SYNs are dropped
            config = anonymous(f"http://127.0.0.1:{port}/mcp", timeouts={"connect": 0.5, "read": 30})
            base = start_gateway(gateway_config({"full": config}))
            async with httpx.AsyncClient(timeout=20) as client:
                started = time.monotonic()
                response = await client.post(f"{base}/mcp/full", json=CALL, headers=HEADERS)
                elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert "did not accept a connection within 0.5 s" in response.json()["error"]["message"]
    assert elapsed < 3


async def test_a_backend_taking_none_of_the_upload_gets_504_that_says_so(start_gateway):
    async def never_reads(n, reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.Event().wait()

    async with RawServer(never_reads) as server:
        config = anonymous(server.url, timeouts={"read": 0.5, "connect": 5})
        base = start_gateway(gateway_config({"full": config}, maxBodyBytes=UPLOAD_LIMIT))
        status, answer = await raw_exchange(base, _post_head(base, "/mcp/full"), _chunked(big_upload()))
    assert status == 504
    assert "took none of the request body for 0.5 s" in json.loads(answer)["error"]["message"]


async def _chunked(body):
    async for piece in body:
        yield b"%x\r\n%b\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


async def test_an_answer_before_the_upload_ends_is_relayed_and_the_upload_stops(start_gateway):
    """A backend refusing an upload early (413 here) answers, says it is done sending,
    and drains what still arrives: the client gets the backend's own answer."""
    drained: list[int] = []
    refusal = b'{"error":"too large"}'

    async def refuses_early(n, reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%b" % (len(refusal), refusal))
        await writer.drain()
        writer.write_eof()
        drained.append(0)
        while chunk := await reader.read(65536):
            drained[0] += len(chunk)

    async with RawServer(refuses_early) as server:
        base = start_gateway(gateway_config({"r": anonymous(server.url)}, maxBodyBytes=UPLOAD_LIMIT))
        status, answer = await raw_exchange(base, _post_head(base, "/mcp/r"), _chunked(big_upload()))
    assert (status, answer) == (413, refusal)
    assert drained and drained[0] < 16 * 1024 * 1024


async def test_an_endless_response_head_is_cut_off_with_a_502(start_gateway):
    written: list[int] = [0]
    cut = asyncio.Event()

    async def endless_head(n, reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        try:
            for _ in range(256):  # 16 MiB in all
                writer.write(b"a" * 65536)
                await writer.drain()
                written[0] += 65536
        except ConnectionError:
            cut.set()

    async with RawServer(endless_head) as server:
        base = start_gateway(gateway_config({"big": anonymous(server.url)}))
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(f"{base}/mcp/big", json=CALL, headers=HEADERS)
        assert response.status_code == 502 and response.json()["id"] == 41
        await asyncio.wait_for(cut.wait(), 10)
    assert written[0] < 16 * 1024 * 1024


async def test_expect_100_continue_never_reaches_the_backend(start_server, start_gateway):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    base = start_gateway(gateway_config({"r": anonymous(f"{backend.base_url}/mcp")}))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{base}/mcp/r", json=CALL, headers={**HEADERS, "expect": "100-continue"})
    assert response.status_code == 200
    assert "expect" not in recorder.requests[0].headers
