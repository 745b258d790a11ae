"""The upstream HTTP/1.1 transport: an httpx transport on asyncio protocols and httptools.

Why not httpcore's pool: it visits every pooled connection and polls its socket on
each request, which bench/ measured at ~5 ms of CPU per proxied request at c=64.
Here a connection learns that the backend closed it from the event loop
(`eof_received` / `connection_lost`), so the idle pool is a stack per origin and
taking a connection costs no system call. Measured in bench/: ~10x less CPU.

The gateway calls `send` directly: building an httpx.Request and httpx.Response per
proxied request cost more CPU than the whole rest of the exchange (bench/README.md).
`handle_async_request` offers the same exchange as an httpx transport, and errors are
httpx's exceptions, so the gateway still has one client library. What it leaves out
on purpose: HTTP/2, proxies, `Expect: 100-continue`.

A request that finds its pooled connection already closed by the backend (the
keep-alive race) is sent again on a fresh connection, but only when no response
byte arrived and no more than the first body chunk had been taken from the client.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from dataclasses import dataclass
from typing import AsyncIterable, AsyncIterator, Sequence

import httptools
import httpx

_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024

Origin = tuple[str, str, int]


def origin_of(url: httpx.URL) -> Origin:
    """The pool's key for a URL: scheme, host and port (the scheme's default if none)."""
    return (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))


@dataclass(slots=True)
class UpstreamResponse:
    """A backend's response head; the body is read from `stream`, which must be closed."""

    status: int
    headers: list[tuple[bytes, bytes]]
    stream: "ResponseStream"


def _request_head(method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]], has_body: bool) -> tuple[bytes, bool]:
    """Request line and headers, and whether the body goes chunked (no Content-Length given).

    Without a body, framing headers are left out: a DELETE that arrived with a
    Content-Length would otherwise leave the backend waiting for bytes never sent.
    """
    parts = [method.encode(), b" ", target, b" HTTP/1.1\r\n"]
    sized = chunked = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            if not has_body:
                continue
            sized = True
        elif lower == b"transfer-encoding":
            if not has_body:
                continue
            chunked = value.lower() == b"chunked"
        parts += [name, b": ", value, b"\r\n"]
    if has_body and not sized and not chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
        chunked = True
    parts.append(b"\r\n")
    return b"".join(parts), chunked and has_body


class _StaleConnection(Exception):
    """A pooled connection turned out closed before the backend answered anything."""


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.error: Exception | None = None
        self.idle_since = 0.0
        self._waiter: asyncio.Future[bool] | None = None
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.read_paused = False
        self.response_started = False

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.response_started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("backend switched protocols"))
            self.close()
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed response from backend: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        self._fail(httpx.RemoteProtocolError("backend closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(httpx.ReadError("backend connection lost"))
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- httptools callbacks -----------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.head_done = True
        self._wake(True)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        self._wake(True)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True
        self._wake(True)

    # -- used by the transport and the response stream ---------------------------------

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self.error is None:
            self.error = error
        self._wake(True)

    def _wake(self, value: bool) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(value)

    async def wait(self, timeout: float | None = None) -> bool:
        """Until something happens (True) or `timeout` passes (False). Safe to cancel."""
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, self._wake, False) if timeout is not None else None
        try:
            return await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise self.error or httpx.WriteError("backend connection closed")
        self.transport.write(data)
        if self._write_paused:
            self._drain = self.loop.create_future()
            await self._drain
            if self.closed:
                raise self.error or httpx.WriteError("backend connection closed")

    def take(self) -> bytes | None:
        """Everything that has arrived (at most the high-water mark), as one chunk:
        a reader that fell behind catches up with one send, not one per chunk."""
        if not self.chunks:
            return None
        chunk = self.chunks.popleft() if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.read_paused and self.buffered < _LOW_WATER and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()
        return chunk

    def close(self) -> None:
        self._fail(httpx.ReadError("backend connection closed by the gateway"))
        if self.transport is not None:
            self.transport.close()


class ResponseStream(httpx.AsyncByteStream):
    """The response body, read chunk by chunk with an optional per-read timeout."""

    def __init__(self, pool: "PooledTransport", origin: Origin, conn: _Connection) -> None:
        self._pool = pool
        self._origin = origin
        self._conn: _Connection | None = conn

    async def read(self, timeout: float | None = None) -> bytes | None:
        """The next chunk; None at the end of the body; TimeoutError if none came in time.

        A timeout leaves the stream intact, so a caller can send a keep-alive and read on.
        """
        conn = self._conn
        if conn is None:
            raise httpx.ReadError("response stream already closed")
        while True:
            chunk = conn.take()
            if chunk is not None:
                return chunk
            if conn.complete:
                return None
            if conn.error is not None:
                raise conn.error
            if not await conn.wait(timeout):
                raise TimeoutError

    @property
    def exhausted(self) -> bool:
        """True once the whole body has arrived and been read."""
        conn = self._conn
        return conn is not None and conn.complete and not conn.chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self.read()) is not None:
            yield chunk

    def abort(self) -> None:
        """Drop the backend connection now (the client left); a pending `read` raises."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.complete and conn.keep_alive and not conn.closed and not conn.chunks:
            self._pool.release(self._origin, conn)
        else:
            conn.close()


class PooledTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_per_origin: int = 256,
        keepalive_expiry: float = 30.0,
    ) -> None:
        self._idle: dict[Origin, collections.deque[_Connection]] = {}
        self._max_idle = max_idle_per_origin
        self._expiry = keepalive_expiry
        self._ssl = ssl_context

    # -- the pool ------------------------------------------------------------------------

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the warmest connection first
            if not conn.closed and now - conn.idle_since < self._expiry:
                return conn
            conn.close()
        return None

    def release(self, origin: Origin, conn: _Connection) -> None:
        idle = self._idle.setdefault(origin, collections.deque())
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn._reset()
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        context = (self._ssl or ssl.create_default_context()) if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop), host, port, ssl=context, server_hostname=host if context else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        return conn

    # -- one exchange -----------------------------------------------------------------------

    async def send(
        self,
        origin: Origin,
        method: str,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: AsyncIterable[bytes] | None,
        *,
        connect_timeout: float | None = None,
    ) -> UpstreamResponse:
        """One request, answered once the response head arrives; the body streams from `.stream`.

        The gateway's hot path: no httpx.Request or httpx.Response is built. `headers`
        must carry Host; a body without Content-Length goes up chunked.
        """
        head, chunked = _request_head(method, target, headers, body is not None)
        chunks = aiter(body) if body is not None else None
        first = await anext(chunks, b"") if chunks is not None else b""
        conn = self._take_idle(origin)
        if conn is not None:
            try:
                return await self._exchange(conn, origin, head, chunked, first, chunks, reused=True)
            except _StaleConnection:
                pass
        conn = await self._connect(origin, connect_timeout)
        return await self._exchange(conn, origin, head, chunked, first, chunks, reused=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The same exchange behind httpx's transport interface."""
        url = request.url
        origin = origin_of(url)
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        answer = await self.send(
            origin,
            request.method,
            url.raw_path,
            request.headers.raw,
            request.stream if has_body else None,  # type: ignore[arg-type]
            connect_timeout=request.extensions.get("timeout", {}).get("connect"),
        )
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=answer.stream,
            extensions={"http_version": b"HTTP/1.1"},
            request=request,
        )

    async def _exchange(
        self,
        conn: _Connection,
        origin: Origin,
        head: bytes,
        chunked: bool,
        first: bytes,
        rest: AsyncIterator[bytes] | None,
        *,
        reused: bool,
    ) -> UpstreamResponse:
        taken_more = False
        try:
            if first:
                head += b"%x\r\n%b\r\n" % (len(first), first) if chunked else first
            await conn.write(head)
            if rest is not None:
                async for chunk in rest:
                    taken_more = True
                    if chunk:
                        await conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                await conn.write(b"0\r\n\r\n")
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait()
        except httpx.TransportError:
            conn.close()
            if reused and not conn.response_started and not taken_more:
                raise _StaleConnection from None
            raise
        except BaseException:
            conn.close()
            raise
        return UpstreamResponse(conn.status, conn.headers, ResponseStream(self, origin, conn))

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
