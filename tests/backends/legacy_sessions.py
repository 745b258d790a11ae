"""A legacy HTTP+SSE backend that puts the session in the message path (`/messages/<id>`),
as some real servers do, and answers each message on its own session's stream with the
session id, so a test can tell which session a message reached."""

from __future__ import annotations

import asyncio
import json
import uuid

from starlette.types import Receive, Scope, Send


class PathSessionBackend:
    def __init__(self) -> None:
        self.streams: dict[str, asyncio.Queue[bytes]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and scope["path"] == "/sse":
            await self._stream(receive, send)
        elif scope["method"] == "POST" and scope["path"].startswith("/messages/"):
            await self._message(scope["path"].rsplit("/", 1)[1], receive, send)
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def _stream(self, receive: Receive, send: Send) -> None:
        session = uuid.uuid4().hex
        queue = self.streams[session] = asyncio.Queue()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": f"event: endpoint\ndata: /messages/{session}\n\n".encode(), "more_body": True})
        left = asyncio.ensure_future(_disconnected(receive))
        try:
            while True:
                event = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({event, left}, return_when=asyncio.FIRST_COMPLETED)
                if left in done:
                    event.cancel()
                    return
                await send({"type": "http.response.body", "body": event.result(), "more_body": True})
        finally:
            del self.streams[session]

    async def _message(self, session: str, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        queue = self.streams.get(session)
        status = 202 if queue is not None else 404
        if queue is not None:
            request = json.loads(body)
            answer = {"jsonrpc": "2.0", "id": request["id"], "result": {"session": session}}
            await queue.put(f"event: message\ndata: {json.dumps(answer)}\n\n".encode())
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
