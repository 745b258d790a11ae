"""Prototype: an httpx transport for HTTP/1.1 on asyncio protocols + httptools.

Why: httpcore's pool scans every pooled connection on every request and probes
each idle one with a socket poll (`has_expired -> is_socket_readable`), so its
cost grows with concurrency. Here a connection learns it was closed from the
event loop (`connection_lost` / `eof_received`), so the idle pool is a LIFO
deque per origin and taking a connection is O(1) with no system call.

Kept as an httpx transport (`httpx.AsyncClient(transport=FastTransport())`) so the
gateway keeps one client library and its API (build_request, send(stream=True),
aiter_raw, exceptions). A PROTOTYPE for the benchmark: no HTTP/2, no proxies,
no retry of a request that lost a race with a server closing an idle connection.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import AsyncIterator

import httptools
import httpx

_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.error: Exception | None = None
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
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

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(str(exc)))
            self.transport.close()  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self._fail(httpx.RemoteProtocolError("server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(httpx.ReadError(str(exc) if exc else "connection closed"))
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- httptools callbacks --------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True
        self._wake()

    # -- used by the transport ------------------------------------------------------
    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> None:
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise self.error or httpx.WriteError("connection closed")
        self.transport.write(data)  # type: ignore[union-attr]
        if self._write_paused:
            self._drain = self.loop.create_future()
            await self._drain

    def take(self) -> bytes | None:
        if not self.chunks:
            return None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.read_paused and self.buffered < _LOW_WATER:
            self.read_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        return chunk

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, transport: "FastTransport", key: tuple, conn: _Connection) -> None:
        self._transport = transport
        self._key = key
        self._conn: _Connection | None = conn

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        assert conn is not None
        while True:
            chunk = conn.take()
            if chunk is not None:
                yield chunk
                continue
            if conn.complete:
                return
            if conn.error is not None:
                raise conn.error
            await conn.wait()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.complete and conn.keep_alive and not conn.closed and not conn.chunks:
            self._transport._release(self._key, conn)
        else:
            conn.close()


class FastTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_idle_per_origin: int = 256, keepalive_expiry: float = 30.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[tuple, collections.deque[_Connection]] = {}
        self._max_idle = max_idle_per_origin
        self._expiry = keepalive_expiry
        self._ssl = ssl_context

    def _take_idle(self, key: tuple) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # LIFO: the warmest connection
            if not conn.closed and now - conn.idle_since < self._expiry:
                return conn
            conn.close()
        return None

    def _release(self, key: tuple, conn: _Connection) -> None:
        idle = self._idle.setdefault(key, collections.deque())
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn._reset()
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _connect(self, request: httpx.Request, key: tuple) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        timeout = request.extensions.get("timeout", {}).get("connect")
        context = None
        if scheme == "https":
            context = self._ssl or ssl.create_default_context()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop), host, port, ssl=context, server_hostname=host if context else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connect to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from None
        return conn

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        conn = self._take_idle(key) or await self._connect(request, key)
        try:
            await self._send(conn, request)
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait()
        except BaseException:
            conn.close()
            raise
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=_ResponseStream(self, key, conn),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _send(self, conn: _Connection, request: httpx.Request) -> None:
        target = request.url.raw_path
        lines = [request.method.encode(), b" ", target, b" HTTP/1.1\r\n"]
        chunked = False
        for name, value in request.headers.raw:
            if name.lower() == b"transfer-encoding" and value.lower() == b"chunked":
                chunked = True
            lines += [name, b": ", value, b"\r\n"]
        lines.append(b"\r\n")
        pending = b"".join(lines)
        async for chunk in request.stream:  # type: ignore[union-attr]
            if not chunk:
                continue
            frame = b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk
            await conn.write(pending + frame)
            pending = b""
        if chunked:
            pending += b"0\r\n\r\n"
        if pending:
            await conn.write(pending)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
