"""Streaming forwarder to MCP backends.

Bytes go up as the client sends them and come down as the backend sends them
(`aiter_raw`, never decoded or buffered). SSE streams get keep-alive comments at
event boundaries while the backend is quiet, and a client that goes away cancels
the upstream request at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator, Awaitable, Callable

import httpx
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from .config import ServerConfig
from .errors import BackendTimeout, BackendUnavailable, GatewayError
from .headers import RawHeaders, downstream_headers

logger = logging.getLogger("shared.proxy")

KEEP_ALIVE_COMMENT = b": keep-alive\n\n"


class UpstreamClient:
    """One pooled httpx.AsyncClient per process, created on first use in the running loop."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                # Timeouts are applied per server by the forwarder; reads on SSE streams
                # are governed by the idle-stream timeout instead of a per-read one.
                timeout=httpx.Timeout(None),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=30),
                follow_redirects=False,
                trust_env=False,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _is_event_stream(headers: httpx.Headers) -> bool:
    return headers.get("content-type", "").lower().startswith("text/event-stream")


async def open_upstream(
    client: httpx.AsyncClient,
    server: ServerConfig,
    *,
    method: str,
    url: str,
    headers: RawHeaders,
    content: AsyncIterator[bytes] | None,
) -> httpx.Response:
    """Send the request and wait for the backend's response headers, within the server's timeouts."""
    timeout = httpx.Timeout(None, connect=server.timeouts.connect)
    request = client.build_request(method, url, headers=list(headers), content=content, timeout=timeout)
    try:
        async with asyncio.timeout(server.timeouts.connect + server.timeouts.read):
            return await client.send(request, stream=True)
    except TimeoutError:
        raise BackendTimeout(
            f"backend of server {server.name!r} did not answer within {server.timeouts.read:g} s"
        ) from None
    except httpx.TimeoutException:
        raise BackendTimeout(
            f"backend of server {server.name!r} did not accept a connection within {server.timeouts.connect:g} s"
        ) from None
    except httpx.TransportError as exc:
        raise BackendUnavailable(f"backend of server {server.name!r} is unreachable ({type(exc).__name__})") from None


Rewriter = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


class ProxyResponse(StreamingResponse):
    """An ASGI response that relays a backend response, closing it whatever happens.

    A StreamingResponse, so Azure Functions' HTTP streams (FastAPI) send it as is;
    its own `__call__` adds SSE keep-alives, the idle-stream limit, and a quiet end
    when the client leaves.
    """

    def __init__(
        self,
        upstream: httpx.Response,
        server: ServerConfig,
        *,
        keep_alive: float,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        rewrite: Rewriter | None = None,
    ) -> None:
        self.upstream = upstream
        self.server = server
        self.background = None
        self.status_code = upstream.status_code
        self.raw_headers = downstream_headers(upstream.headers.raw) + (extra_headers or [])
        self.keep_alive = keep_alive
        self.is_event_stream = _is_event_stream(upstream.headers)
        self.rewrite = rewrite
        if rewrite is not None:
            # A rewritten body has a new length; let the server frame it.
            self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if self.is_event_stream:
                await _until_disconnect(self._relay_event_stream(send), receive)
            else:
                await self._relay_body(send)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            logger.debug("client of server %r went away mid-response", self.server.name)
        except (httpx.TransportError, TimeoutError, GatewayError) as exc:
            # Headers are gone already: the only honest move is to end the response.
            logger.warning(
                "backend of server %r broke off its response (%s)", self.server.name, type(exc).__name__
            )
        finally:
            await self.upstream.aclose()

    def _chunks(self) -> AsyncIterator[bytes]:
        raw = self.upstream.aiter_raw()
        return self.rewrite(raw) if self.rewrite else raw

    async def _relay_body(self, send: Send) -> None:
        chunks = self._chunks()
        while True:
            async with asyncio.timeout(self.server.timeouts.read):
                chunk = await anext(chunks, None)
            if chunk is None:
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def _relay_event_stream(self, send: Send) -> None:
        chunks = self._chunks()
        idle_limit = self.server.timeouts.idle_stream
        at_boundary = True
        tail = b""
        while True:
            next_chunk = asyncio.ensure_future(anext(chunks, None))
            silent = 0.0
            try:
                while True:
                    wait = min(self.keep_alive, idle_limit - silent)
                    done, _ = await asyncio.wait((next_chunk,), timeout=wait)
                    if done:
                        break
                    silent += wait
                    if silent >= idle_limit:
                        logger.info("stream of server %r idle for %g s: closing it", self.server.name, silent)
                        return
                    if at_boundary:
                        await send({"type": "http.response.body", "body": KEEP_ALIVE_COMMENT, "more_body": True})
            finally:
                if not next_chunk.done():
                    next_chunk.cancel()
                    await asyncio.gather(next_chunk, return_exceptions=True)
            chunk = next_chunk.result()
            if chunk is None:
                return
            tail = (tail + chunk)[-4:]
            at_boundary = tail.endswith((b"\n\n", b"\r\n\r\n", b"\r\r"))
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _until_disconnect(relay: Awaitable[None], receive: Receive) -> None:
    """Run the relay until it ends or the client disconnects, whichever is first.

    By the time a response streams, the request body has gone up, so the only
    message left to receive is the disconnect.
    """
    relay_task = asyncio.ensure_future(relay)
    watch_task = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        done, _ = await asyncio.wait((relay_task, watch_task), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (relay_task, watch_task):
            if not task.done():
                task.cancel()
        await asyncio.gather(relay_task, watch_task, return_exceptions=True)
    if relay_task in done:
        relay_task.result()
    else:
        logger.debug("client disconnected from an event stream")


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
