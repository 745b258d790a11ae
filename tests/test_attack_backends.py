"""Attacks from the other side: hostile backends, and clients that leave a backend working.

Backends here are scripts on a bare socket (each answers every request with the same
bytes), or ASGI apps that record what the gateway did to their request.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Iterator

import httpx
import pytest

from helpers import anonymous, gateway_config

PING = b'{"jsonrpc":"2.0","id":8,"method":"ping"}'
JSON = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


class ScriptedBackend:
    """Reads each request head and answers it with `answer`, then closes the connection."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, name="scripted-backend", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/mcp"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                conn.sendall(self.answer)

    def stop(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (a close alone does not)
        self.sock.close()
        self.thread.join(10)


@pytest.fixture
def scripted() -> Iterator:
    started: list[ScriptedBackend] = []

    def start(answer: bytes) -> ScriptedBackend:
        started.append(ScriptedBackend(answer))
        return started[-1]

    yield start
    for backend in started:
        backend.stop()


@pytest.mark.parametrize("status", [600, 799, 999])
async def test_a_status_outside_100_to_599_is_a_502_not_a_dropped_connection(scripted, start_gateway, status):
    backend = scripted(b"HTTP/1.1 %d Odd\r\nContent-Length: 2\r\n\r\nok" % status)
    base = start_gateway(gateway_config({"odd": anonymous(backend.url)}))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{base}/mcp/odd", content=PING, headers=JSON)
    assert response.status_code == 502
    assert response.json()["id"] == 8 and response.json()["error"]["code"] == -32002


async def test_cookies_and_the_server_name_of_a_backend_never_reach_the_client(scripted, start_gateway):
    backend = scripted(b"HTTP/1.1 200 OK\r\nSet-Cookie: session=backend-secret\r\nset-cookie: b=2\r\n"
                       b"SET-COOKIE: c=3\r\nServer: internal-backend/1.2\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 2\r\n\r\n{}")
    base = start_gateway(gateway_config({"cookies": anonymous(backend.url)}))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{base}/mcp/cookies", content=PING, headers=JSON)
    assert response.status_code == 200 and response.content == b"{}"
    assert "set-cookie" not in response.headers and "internal-backend" not in repr(response.headers)


# -- a client that leaves while the backend is still working ----------------------------------------------


class Unanswering:
    """Takes a request, never answers, and records the gateway dropping it."""

    def __init__(self) -> None:
        self.received = threading.Event()
        self.dropped = threading.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        while (message := await receive())["type"] == "http.request" and message.get("more_body"):
            pass
        self.received.set()
        while (await receive())["type"] != "http.disconnect":
            pass
        self.dropped.set()


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_a_client_leaving_a_bodiless_request_drops_it_upstream_at_once(start_server, start_gateway, method):
    """A GET opens an MCP event stream; a backend that takes its time to answer must not keep
    the upstream request (and its work) for the whole read timeout after the client left."""
    backend = Unanswering()
    server = start_server(backend)
    base = start_gateway(gateway_config({"slow": anonymous(f"{server.base_url}/mcp", timeouts={"read": 60})}))
    host = base.removeprefix("http://")
    reader, writer = await asyncio.open_connection(*host.split(":"))
    writer.write(f"{method} /mcp/slow HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    assert await asyncio.to_thread(backend.received.wait, 10)
    writer.close()
    assert await asyncio.to_thread(backend.dropped.wait, 5), "the upstream request outlived its client"


class QuietStream:
    """Answers a GET with one event, then stays silent until the gateway drops it."""

    def __init__(self) -> None:
        self.dropped = threading.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        self.dropped.set()


async def test_a_client_leaving_a_quiet_event_stream_drops_it_before_any_keep_alive(start_server, start_gateway):
    backend = QuietStream()
    server = start_server(backend)
    base = start_gateway(gateway_config({"quiet": anonymous(f"{server.base_url}/mcp")}, keepAliveSeconds=60))
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", f"{base}/mcp/quiet", headers={"accept": "text/event-stream"}) as response:
            async for line in response.aiter_lines():
                if line == "data: first":
                    break
    assert await asyncio.to_thread(backend.dropped.wait, 5), "the stream outlived its client"


@pytest.mark.parametrize("endpoint", [
    "http://evil.example/messages?s=1",
    "//evil.example/messages?s=1",
    "http://{origin}@evil.example/messages",
    "http://{host}:1/messages",
    "https://{origin}/messages",
])
async def test_a_legacy_backend_cannot_send_clients_and_credentials_to_another_origin(scripted, start_gateway, endpoint):
    """The endpoint event names where clients post, with the gateway's backend credential: only
    the backend's own origin may be named, however the URL is dressed."""
    backend = scripted(b"")
    origin = backend.url.removeprefix("http://").removesuffix("/mcp")
    data = endpoint.format(origin=origin, host=origin.split(":")[0])
    backend.answer = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                      b"event: endpoint\ndata: " + data.encode() + b"\n\n")
    base = start_gateway(gateway_config({"legacy": anonymous(backend.url.replace("/mcp", "/sse"), transport="sse")}))
    received = b""
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", f"{base}/mcp/legacy/sse", headers={"accept": "text/event-stream"}) as response:
            with pytest.raises(httpx.RemoteProtocolError):
                async for chunk in response.aiter_raw():
                    received += chunk
    assert b"evil" not in received and b"endpoint=" not in received
    assert b":1/" not in received and b"https://" not in received
