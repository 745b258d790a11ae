"""Small ASGI backends that record what reached them, or misbehave on purpose."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

from starlette.types import Receive, Scope, Send


@dataclass
class Recorded:
    method: str
    path: str
    query: bytes
    headers: dict[str, str]
    raw_headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class RecordingBackend:
    """Answers every request with a JSON-RPC result and records the request.

    The response carries headers a proxy must pass (Mcp-Session-Id) and ones it
    must drop (hop-by-hop, Set-Cookie).
    """

    requests: list[Recorded] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        raw = list(scope["headers"])
        self.requests.append(
            Recorded(
                scope["method"],
                scope["path"],
                scope["query_string"],
                {k.decode().lower(): v.decode() for k, v in raw},
                raw,
                body,
            )
        )
        payload = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"mcp-session-id", b"session-123"),
                    (b"mcp-protocol-version", b"2025-11-25"),
                    (b"set-cookie", b"affinity=abc; Path=/"),
                    (b"connection", b"x-backend-hop"),
                    (b"x-backend-hop", b"1"),
                    (b"x-backend-visible", b"yes"),
                    (b"keep-alive", b"timeout=5"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class HangingBackend:
    """Never answers until released, like a stuck backend."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        await asyncio.to_thread(self.release.wait, 30)


class EndlessEventStream:
    """An SSE stream that never ends; records when the proxy closes it."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.opened = threading.Event()
        self.closed = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
        )
        self.opened.set()
        disconnected = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.ensure_future(watch())
        n = 0
        try:
            while not disconnected.is_set():
                n += 1
                await send({"type": "http.response.body", "body": f"id: {n}\ndata: tick {n}\n\n".encode(), "more_body": True})
                try:
                    await asyncio.wait_for(disconnected.wait(), self.interval)
                except TimeoutError:
                    pass
        finally:
            watcher.cancel()
            self.closed.set()


class SilentEventStream:
    """Sends one event, then stays silent: keep-alives must fill the silence."""

    def __init__(self) -> None:
        self.release = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
        )
        await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
        await asyncio.to_thread(self.release.wait, 30)
        await send({"type": "http.response.body", "body": b"data: last\n\n", "more_body": False})
