"""The inbound request body, streamed up as it arrives.

Only a bounded prefix is kept, so that an error answer can carry the JSON-RPC `id`
of the request it answers; the body itself is never buffered whole.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Receive

from .errors import NO_ID, BodyTooLarge, ClientClosedRequest

CAPTURE_LIMIT = 64 * 1024


class RequestBody:
    """An async iterator over the body's chunks, read from the ASGI `receive` as the
    backend takes them (no generator chain between the client and the backend)."""

    def __init__(self, receive: Receive, *, limit: int, declared_length: int | None) -> None:
        if declared_length is not None and declared_length > limit:
            raise BodyTooLarge(f"request body of {declared_length} bytes is over the {limit}-byte limit")
        self._receive = receive
        self._limit = limit
        self._size = 0
        self._prefix = bytearray()
        self._more = True
        self._disconnected = False
        self.complete = False

    def __aiter__(self) -> "RequestBody":
        return self

    async def __anext__(self) -> bytes:
        if self._disconnected:
            raise ClientClosedRequest("client closed the request while sending its body")
        while self._more:
            message = await self._receive()
            if message["type"] != "http.request":  # http.disconnect: the body stays incomplete
                self._disconnected = True
                raise ClientClosedRequest("client closed the request while sending its body")
            self._more = message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                self._take(chunk)
                if not self._more:
                    self.complete = True
                return chunk
        self.complete = True
        raise StopAsyncIteration

    def _take(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            raise BodyTooLarge(f"request body is over the {self._limit}-byte limit")
        if len(self._prefix) < CAPTURE_LIMIT:
            self._prefix += chunk[: CAPTURE_LIMIT - len(self._prefix)]

    async def read_for_error(self) -> None:
        """Read what the backend never took (e.g. it refused the connection), bounded,
        so the error answer can still name the request's id."""
        try:
            async for _ in self:
                if len(self._prefix) >= CAPTURE_LIMIT:
                    return
        except Exception:  # the error answer is best effort; the original error wins
            return

    def jsonrpc_id(self) -> Any:
        """The id of a single JSON-RPC request, or NO_ID (notification, batch, not JSON)."""
        if not self.complete or self._size > CAPTURE_LIMIT:
            return NO_ID
        try:
            message = json.loads(self._prefix)
        except ValueError:
            return NO_ID
        if isinstance(message, dict) and "method" in message and isinstance(message.get("id"), (str, int)):
            return message["id"]
        return NO_ID
