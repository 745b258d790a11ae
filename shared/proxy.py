"""Streaming forwarder to MCP backends.

Bytes go up as the client sends them and come down as the backend sends them
(raw, never decoded or buffered). SSE streams get keep-alive comments at event
boundaries while the backend is quiet, and a client that goes away drops the
upstream connection at once, while its answer is awaited or an event stream relayed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import AsyncIterable, Protocol
from urllib.parse import quote_from_bytes

import httpx
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from .config import ServerConfig
from .errors import BackendTimeout, BackendUnavailable, ClientClosedRequest, GatewayError
from .headers import RawHeaders, downstream_headers
from .httpclient import tls_context
from .transport import Origin, PooledTransport, RequestAbandoned, ResponseStream, UpstreamResponse, origin_of

logger = logging.getLogger("shared.proxy")

KEEP_ALIVE_COMMENT = b": keep-alive\n\n"

# Bytes a query may carry as they are (RFC 3986 query characters and "%"); anything
# else is percent-encoded, so nothing a client sends can break the request line.
_QUERY_SAFE = "/?:@!$&'()*+,;=-._~%"


class Rewriter(Protocol):
    """Rewrites a response body chunk by chunk (the legacy SSE endpoint event)."""

    def feed(self, chunk: bytes) -> bytes: ...


class UpstreamClient:
    """One connection pool per process, shared by every server (see transport.py for why not httpcore)."""

    def __init__(self, ca_bundle: str | None = None) -> None:
        self._ca_bundle = ca_bundle
        self._transport: PooledTransport | None = None

    @property
    def transport(self) -> PooledTransport:
        if self._transport is None:
            self._transport = PooledTransport(ssl_context=tls_context(self._ca_bundle))
        return self._transport

    async def aclose(self) -> None:
        if self._transport is not None:
            transport, self._transport = self._transport, None
            await transport.aclose()


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """Where a server's requests go, worked out once from its URL."""

    origin: Origin
    host: bytes
    path: bytes

    @classmethod
    def parse(cls, url: str) -> "UpstreamTarget":
        parsed = httpx.URL(url)
        return cls(origin_of(parsed), parsed.netloc, parsed.raw_path)

    def with_query(self, query: bytes) -> "UpstreamTarget":
        """The same target with the client's query string after the configured one.

        A configured query (an API version, a tenant) is the backend's
        contract: a client's parameters add to it, never replace it.
        """
        if not query:
            return self
        query = quote_from_bytes(query, safe=_QUERY_SAFE).encode()
        joined = self.path + (b"&" if b"?" in self.path else b"?") + query
        return UpstreamTarget(self.origin, self.host, joined)


async def open_upstream(
    upstream: UpstreamClient,
    server: ServerConfig,
    *,
    method: str,
    target: UpstreamTarget,
    headers: list[tuple[bytes, bytes]],
    content: AsyncIterable[bytes] | None,
    receive: Receive,
) -> UpstreamResponse:
    """Send the request and wait for the backend's response headers, within the server's timeouts.

    `timeouts.connect` bounds the connect; `timeouts.read` the wait for the response
    head from the moment the request has been sent whole. The client's upload is its
    own reader's to bound: what that raises (408, 499, 413) passes through untouched.
    While the head is awaited (the body has been read whole by then, so nothing else
    reads `receive`), a client that leaves drops the upstream request at once (499); a
    bodiless request (GET, DELETE) has its own message received first.
    """

    unread = content is None  # a bodiless request's own message has not been received yet

    async def client_gone() -> bool:
        nonlocal unread
        message = await receive()
        if message["type"] == "http.disconnect":
            return True
        if unread and not message.get("more_body"):
            unread = False
            return False  # that was the request itself: ask again, for the disconnect
        await _never_again()
        return False

    headers.insert(0, (b"host", target.host))
    try:
        return await upstream.transport.send(
            target.origin,
            method,
            target.path,
            headers,
            content,
            connect_timeout=server.timeouts.connect,
            read_timeout=server.timeouts.read,
            client_gone=client_gone,
        )
    except (httpx.TransportError, RequestAbandoned) as error:
        raise _gateway_error(error, server) from None


async def _never_again() -> None:
    """After a whole body only a disconnect may arrive (ASGI); a front door that answers
    `receive` with anything else cannot report one, so stop asking (a loop here would
    spin without ever yielding): the backend and the timeouts end the wait instead."""
    await asyncio.get_running_loop().create_future()


def _gateway_error(error: Exception, server: ServerConfig) -> GatewayError:
    """What the client is told when the exchange failed; each timeout names its limit."""
    timeouts = server.timeouts
    if isinstance(error, RequestAbandoned):
        return ClientClosedRequest("client closed the request before the backend answered")
    if isinstance(error, httpx.ConnectTimeout):
        return BackendTimeout(
            f"backend of server {server.name!r} did not accept a connection within {timeouts.connect:g} s"
        )
    if isinstance(error, httpx.WriteTimeout):
        return BackendTimeout(f"backend of server {server.name!r} took none of the request body for {timeouts.read:g} s")
    if isinstance(error, httpx.TimeoutException):
        return BackendTimeout(f"backend of server {server.name!r} did not answer within {timeouts.read:g} s")
    return BackendUnavailable(f"backend of server {server.name!r} is unreachable ({type(error).__name__})")


class ProxyResponse(StreamingResponse):
    """An ASGI response that relays a backend response, closing it whatever happens.

    A StreamingResponse, so Azure Functions' HTTP streams (FastAPI) send it as is;
    its own `__call__` adds SSE keep-alives, the idle-stream limit, and a quiet end
    when the client leaves.
    """

    def __init__(
        self,
        upstream: UpstreamResponse,
        server: ServerConfig,
        *,
        keep_alive: float,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        rewrite: Rewriter | None = None,
    ) -> None:
        self.stream: ResponseStream = upstream.stream
        self.server = server
        self.background = None
        self.status_code = upstream.status
        self.raw_headers, content_type = downstream_headers(upstream.headers)
        if extra_headers:
            self.raw_headers += extra_headers
        self.keep_alive = keep_alive
        self.is_event_stream = content_type.lower().startswith(b"text/event-stream")
        self.rewrite = rewrite
        if rewrite is not None:
            # A rewritten body has a new length; let the server frame it.
            self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = None
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if self.is_event_stream:
                # By now the request body has gone up (or the backend's early answer
                # ended the upload), so the only message left to receive is the
                # disconnect: watch for it and drop the backend then.
                watcher = asyncio.ensure_future(self._abort_on_disconnect(receive))
                await self._relay_event_stream(send)
            else:
                await self._relay_body(send)
        except OSError:
            logger.debug("client of server %r went away mid-response", self.server.name)
        except (httpx.TransportError, TimeoutError, GatewayError) as exc:
            if watcher is not None and watcher.done():
                logger.debug("client of server %r left an event stream", self.server.name)
            else:
                # Headers are gone already: the only honest move is to end the response.
                logger.warning(
                    "backend of server %r broke off its response (%s)", self.server.name, type(exc).__name__
                )
        finally:
            if watcher is not None:
                watcher.cancel()
            await self.stream.aclose()

    async def _abort_on_disconnect(self, receive: Receive) -> None:
        message: Message = await receive()
        if message["type"] == "http.request" and not message.get("more_body"):
            # A bodiless request (the GET of a stream) whose own message nobody took yet.
            message = await receive()
        if message["type"] == "http.disconnect":
            self.stream.abort()

    async def _relay_body(self, send: Send) -> None:
        read_timeout = self.server.timeouts.read
        while (chunk := await self.stream.read(read_timeout)) is not None:
            if self.rewrite is not None:
                chunk = self.rewrite.feed(chunk)
            # A body that has fully arrived ends with its last chunk: one message fewer.
            last = self.stream.exhausted
            await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if last:
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _relay_event_stream(self, send: Send) -> None:
        idle_limit = self.server.timeouts.idle_stream
        at_boundary = True
        tail = b""
        silent = 0.0
        while True:
            wait = min(self.keep_alive, idle_limit - silent)
            try:
                chunk = await self.stream.read(wait)
            except TimeoutError:
                silent += wait
                if silent >= idle_limit:
                    logger.info("stream of server %r idle for %g s: closing it", self.server.name, silent)
                    break
                if at_boundary:
                    await send({"type": "http.response.body", "body": KEEP_ALIVE_COMMENT, "more_body": True})
                continue
            if chunk is None:
                break
            silent = 0.0
            if self.rewrite is not None:
                chunk = self.rewrite.feed(chunk)
                if not chunk:
                    continue
            tail = (tail + chunk[-4:])[-4:]
            at_boundary = tail.endswith((b"\n\n", b"\r\n\r\n", b"\r\r"))
            # The last events usually arrive with the end of the stream: send them as the end.
            last = self.stream.exhausted
            await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if last:
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
