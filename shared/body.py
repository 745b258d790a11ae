"""The inbound request body, streamed up as it arrives, within bounded time and bytes.

Only a bounded prefix is kept, so that an error answer can carry the JSON-RPC `id`
of the request it answers; the body itself is never buffered whole.

Time counts only while the gateway waits for the client: a chunk must come within
the idle limit, and once a body has taken that long it must have averaged the
minimum rate (so a trickle of one byte per idle period is cut off too). Time the
backend takes to read what it was sent is not the client's, and is not counted.

Waits are policed by one heartbeat for all bodies (UploadWatch, see watch.py), not
by a timer per chunk: arming and cancelling a timer cost more CPU than the rest of
reading a one-chunk body.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Message, Receive

from .deadline import Deadline
from .errors import BodyTooLarge, ClientClosedRequest, GatewayError, RequestTimeout
from .jsonrpc_id import request_id
from .limits import BodyLimits
from .watch import Watch

CAPTURE_LIMIT = 64 * 1024
ERROR_READ_SECONDS = 1.0
"""How long an error answer waits for the start of a body it has not read (then it answers without the id)."""


class UploadWatch(Watch):
    """The heartbeat for every body being uploaded through one gateway, with their limits."""

    def __init__(self, limits: BodyLimits) -> None:
        super().__init__(tick=min(1.0, limits.idle_seconds / 4))
        self.limits = limits


class RequestBody:
    """An async iterator over the body's chunks, read from the ASGI `receive` as the
    backend takes them (no generator chain between the client and the backend).

    A failure (too large, too slow, client gone) is raised as a GatewayError from the
    iterator, so whoever is sending the body upstream stops with the client's error.
    """

    def __init__(
        self,
        receive: Receive,
        watch: UploadWatch,
        *,
        declared_length: int | None = None,
        expects_continue: bool = False,
    ) -> None:
        self._receive = receive
        self._watch = watch
        self._limits = watch.limits
        self._declared_length = declared_length
        self._expects_continue = expects_continue
        self._loop = asyncio.get_running_loop()
        self._size = 0
        self._prefix = bytearray()
        self._more = True
        self._asked = False
        self._waited = 0.0
        self._task: asyncio.Task | None = None
        self._expired = False
        self._error: GatewayError | None = None
        self.complete = False

    def refuse_declared_oversize(self) -> None:
        """Raises BodyTooLarge at once when Content-Length is over the limit."""
        if self._declared_length is not None and self._declared_length > self._limits.max_bytes:
            raise BodyTooLarge(
                f"request body of {self._declared_length} bytes is over the {self._limits.max_bytes}-byte limit"
            )

    def __aiter__(self) -> "RequestBody":
        return self

    async def __anext__(self) -> bytes:
        if self._error is not None:
            raise self._error
        while self._more:
            message = await self._next_message()
            if message["type"] != "http.request":  # http.disconnect: the body stays incomplete
                raise self._fail(ClientClosedRequest("client closed the request while sending its body"))
            self._more = message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                self._take(chunk)
                if not self._more:
                    self.complete = True
                return chunk
        self.complete = True
        raise StopAsyncIteration

    async def _next_message(self) -> Message:
        limits = self._limits
        # The body may take as long as the idle limit, and longer only at the minimum rate.
        budget = min(limits.idle_seconds, max(limits.idle_seconds, self._size / limits.min_rate) - self._waited)
        if budget <= 0:
            raise self._fail(self._too_slow())
        self._asked = True
        task = self._task = self._task or asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        started = self._loop.time()
        self._watch.watch(self, self._loop, started + budget)
        try:
            return await self._receive()
        except asyncio.CancelledError:
            # The watch's cancellation is taken back; anyone else's (shutdown) stays one.
            if self._expired and task.uncancel() <= cancelling:
                raise self._fail(
                    RequestTimeout(f"request body: nothing arrived for {limits.idle_seconds:g} s")
                    if budget >= limits.idle_seconds
                    else self._too_slow()
                ) from None
            raise
        finally:
            self._watch.release(self)
            self._waited += self._loop.time() - started

    def expire(self) -> None:
        """Called by the watch: the current wait is over its budget."""
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    def _too_slow(self) -> RequestTimeout:
        return RequestTimeout(f"request body arrived slower than {self._limits.min_rate:g} bytes/s")

    def _fail(self, error: GatewayError) -> GatewayError:
        self._error = error
        return error

    def _take(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if len(self._prefix) < CAPTURE_LIMIT:
            self._prefix += chunk[: CAPTURE_LIMIT - len(self._prefix)]
        if self._size > self._limits.max_bytes:
            raise self._fail(BodyTooLarge(f"request body is over the {self._limits.max_bytes}-byte limit"))

    async def read_for_error(self) -> None:
        """Read the start of a body the backend never took, so the error answer can still
        name the request's id: at most CAPTURE_LIMIT bytes, within ERROR_READ_SECONDS.

        Nothing is read after the body failed, nor from a client waiting for
        `100 Continue` (reading would invite the body the answer refuses).
        """
        if self._error is not None or not self._more or len(self._prefix) >= CAPTURE_LIMIT:
            return
        if self._expects_continue and not self._asked:
            return
        deadline = Deadline(min(ERROR_READ_SECONDS, self._limits.idle_seconds))
        try:
            while self._more and len(self._prefix) < CAPTURE_LIMIT:
                message = await self._receive()
                if message["type"] != "http.request":
                    self._error = ClientClosedRequest("client closed the request while sending its body")
                    return
                self._more = message.get("more_body", False)
                chunk = message.get("body", b"")
                self._size += len(chunk)
                self._prefix += chunk[: CAPTURE_LIMIT - len(self._prefix)]
            self.complete = not self._more
        except asyncio.CancelledError as cancelled:
            if not deadline.caused(cancelled):
                raise
        except Exception:  # the answer is best effort: the error being answered wins
            return
        finally:
            deadline.cancel()

    def jsonrpc_id(self) -> Any:
        """The id of the single JSON-RPC request in the body (or its prefix), else NO_ID."""
        return request_id(bytes(self._prefix), complete=self.complete and self._size <= CAPTURE_LIMIT)
