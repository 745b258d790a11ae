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
on purpose: HTTP/2, proxies, `Expect: 100-continue` (never sent: see below).

One connection carries one exchange at a time, and a response never outlives its
exchange; that is what keeps one caller's answer from reaching another:

- interim responses (1xx) are skipped; 101 (a protocol switch) is refused;
  `Expect` is never sent, so a backend has no reason to send 100 Continue;
- a connection goes back to the pool only if its request went out whole, its
  response was framed by a length or by chunks, was HTTP/1.1 keep-alive, was read to
  its end, and no byte followed it;
- a pooled connection that receives any byte is closed at once: bytes nobody asked
  for are never parsed into the next exchange.

A response that arrives before the request body has gone out (a backend refusing an
upload early) is returned at once and the rest of the body is not sent.

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
from typing import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence

import httptools
import httpx

_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024

MAX_HEAD_BYTES = 64 * 1024
"""The most a backend may send before its response body: the status line and headers
of the final response and of every interim one before it, and (as a bound on what the
parser holds) any run of bytes that delivers no body byte (chunk extensions, trailers).
h11 allows 16 KiB, nginx's proxy buffer one page; 64 KiB leaves room for large
cookies or tokens a backend may send while a head can no longer grow the gateway's memory."""

MAX_HEADERS = 128
"""Header fields in a response head (interim heads before it included), as aiohttp's
client allows: a head of many tiny fields costs more to process than its bytes suggest."""

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


def _request_head(
    method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]], has_body: bool
) -> tuple[bytes, int | None]:
    """Request line and headers, and the body's length (None: it goes up chunked).

    The transport frames the body itself: by the Content-Length given, else chunked. A
    Transfer-Encoding given is not passed on (two framings are how requests are
    smuggled), and without a body no framing header is: a DELETE that arrived with a
    Content-Length would otherwise leave the backend waiting for bytes never sent.
    `Expect` is never sent: the body goes up at once, so a 100 Continue has nothing
    to announce.
    """
    parts = [method.encode(), b" ", target, b" HTTP/1.1\r\n"]
    length: int | None = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            if not has_body:
                continue
            if length is not None or not value.isdigit():
                raise httpx.LocalProtocolError("a request needs exactly one valid Content-Length")
            length = int(value)
        elif lower == b"transfer-encoding" or lower == b"expect":
            continue
        parts += [name, b": ", value, b"\r\n"]
    if has_body and length is None:
        parts.append(b"transfer-encoding: chunked\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), length


class RequestAbandoned(Exception):
    """The caller went away while the backend had not answered: the exchange was dropped."""


class _StaleConnection(Exception):
    """A pooled connection turned out closed before the backend answered anything."""


# What a pooled connection the backend had already closed looks like.
_CONNECTION_GONE = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


class _Halt(Exception):
    """Raised from a parser callback to stop parsing; the reason is on the connection."""


# Bytes of a head the callbacks do not see: "HTTP/1.1 200 ", the status line's CRLF
# and the blank line; each header adds ": " and CRLF to its name and value.
_STATUS_LINE_AND_END = 17
_HEADER_OVERHEAD = 4

_SURPLUS = "surplus"  # bytes after a complete response
_HEAD_ONLY = "head-only"  # the answer to HEAD ends with its head


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.active = False
        """An exchange owns the connection: only then are arriving bytes a response."""
        self.closed = False
        self.error: Exception | None = None
        self.idle_since = 0.0
        self._waiter: asyncio.Future[bool] | None = None
        self._interrupt: asyncio.Task[object] | None = None
        self._write_paused = False
        self._reset(head_request=False)

    def begin(self, *, head_request: bool) -> None:
        """Start an exchange: from now on, arriving bytes are its response."""
        self._reset(head_request)
        self.active = True

    def _reset(self, head_request: bool) -> None:
        self.head_request = head_request
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.interim = False
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.http11 = False
        self.until_close = False
        self.request_sent = False
        self.timed_out = False
        self.response_started = False
        self.head_bytes = 0
        self.header_count = 0
        self.bodiless_bytes = 0
        self.body_seen = False
        self.halt: str | Exception | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.read_paused = False

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.active or self.complete or self.closed:
            # Nobody asked for these bytes (the connection idles in the pool, or its
            # response has ended): never let them become the next exchange's answer.
            self.close()
            return
        self.response_started = True
        self.body_seen = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._halted(exc)
            return
        if self.complete:
            return
        # Bytes that delivered no body byte (a head, chunk framing, trailers) are what
        # the parser holds on to: bound them.
        self.bodiless_bytes = 0 if self.body_seen else self.bodiless_bytes + len(data)
        if self.bodiless_bytes > MAX_HEAD_BYTES:
            what = "response head" if not self.head_done else "chunk framing or trailers"
            self._abandon(httpx.RemoteProtocolError(f"backend sent a {what} over {MAX_HEAD_BYTES} bytes"))

    def _halted(self, exc: Exception) -> None:
        halt = self.halt
        if halt is _SURPLUS or halt is _HEAD_ONLY:
            self.close()  # the response is whole; whatever follows it is not used
        elif isinstance(halt, Exception):
            self._abandon(halt)
        elif isinstance(exc, httptools.HttpParserUpgrade):
            self._abandon(httpx.RemoteProtocolError("backend switched protocols"))
        else:
            self._abandon(httpx.RemoteProtocolError(f"malformed response from backend: {exc}"))

    def eof_received(self) -> bool:
        self._end_of_stream()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None and not self.closed:
            self._end_of_stream()
        self._fail(httpx.ReadError("backend connection lost"))

    def _end_of_stream(self) -> None:
        if self.active and self.head_done and self.until_close and not self.complete:
            # A body delimited by the end of the connection has ended cleanly.
            self.complete = True
            self.keep_alive = False
            self.closed = True
            self._wake(True)
        else:
            self._fail(httpx.RemoteProtocolError("backend closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake(True)

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            self.halt = _SURPLUS
            raise _Halt

    def on_status(self, reason: bytes) -> None:
        self._count_head(len(reason))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            return  # a trailer: never merged into the head the caller already has
        self.header_count += 1
        self._count_head(len(name) + len(value) + _HEADER_OVERHEAD)
        # llhttp keeps trailing whitespace, which is not part of a field value (RFC 9110 5.5).
        self.headers.append((name, value.rstrip(b" \t")))

    def _count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD_BYTES or self.header_count > MAX_HEADERS:
            self._refuse(f"backend sent a response head over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} fields")

    def _refuse(self, reason: str) -> None:
        self.halt = httpx.RemoteProtocolError(reason)
        raise _Halt

    def on_headers_complete(self) -> None:
        self._count_head(_STATUS_LINE_AND_END)
        status = self.parser.get_status_code()
        if status < 200:
            if status == 101:
                self._refuse("backend switched protocols (101), which the gateway does not relay")
            if status < 100:
                self._refuse(f"backend sent an invalid status {status}")
            self.interim = True  # 1xx: not the answer; the final response follows
            self.headers = []
            return
        if status > 599:
            # RFC 9110 15: three digits from 100 to 599. The ASGI servers have no status line for
            # the rest and would drop the client's connection without an answer.
            self._refuse(f"backend sent an invalid status {status}")
        version = self.parser.get_http_version()
        if version != "1.1" and version != "1.0":
            self._refuse(f"backend answered in HTTP/{version}")
        self.http11 = version == "1.1"
        self.until_close = self._check_framing(status)
        self.status = status
        self.head_done = True
        if self.head_request:
            # The answer to HEAD has no body whatever its headers say; the parser cannot
            # be told so, so it stops here and the connection is not used again.
            self.complete = True
            self.halt = _HEAD_ONLY
            self._wake(True)
            raise _Halt
        self._wake(True)

    def _check_framing(self, status: int) -> bool:
        """Refuse a framing the parser would guess at; whether the body runs until close.

        llhttp already refuses a repeated Content-Length and Content-Length together with
        Transfer-Encoding. Transfer codings other than a lone `chunked` are refused too: the
        gateway relays bytes and could not undo them (and HTTP/1.0 has none, RFC 9112 6.1).
        """
        codings: bytes | None = None
        sized = False
        for name, value in self.headers:
            if len(name) == 17 and name.lower() == b"transfer-encoding":
                if codings is not None:
                    self._refuse("backend sent Transfer-Encoding twice")
                codings = value.strip().lower()
            elif len(name) == 14 and name.lower() == b"content-length":
                sized = True
        if codings is not None and (codings != b"chunked" or not self.http11):
            self._refuse("backend used a transfer coding other than chunked")
        return codings is None and not sized and status != 204 and status != 304

    def on_body(self, body: bytes) -> None:
        self.body_seen = True
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        self._wake(True)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.keep_alive = self.http11 and self.parser.should_keep_alive()
        self.complete = True
        self._wake(True)

    # -- used by the transport and the response stream ---------------------------------

    @property
    def reusable(self) -> bool:
        """The exchange ended cleanly and nothing is left on the wire either way."""
        return self.complete and self.keep_alive and self.request_sent and not self.closed and not self.chunks

    def _abandon(self, error: Exception) -> None:
        self._fail(error)
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self.error is None:
            self.error = error
        self._wake(True)

    def _wake(self, value: bool) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(value)
        elif self._interrupt is not None:
            task, self._interrupt = self._interrupt, None
            task.cancel()

    def _time_out(self) -> None:
        self.timed_out = True
        self._wake(False)

    async def wait_while(self, elsewhere: Callable[[], Awaitable[bool]], timeout: float | None) -> bool:
        """Await `elsewhere` (again each time it returns False) until something happens
        here (False) or it returns True (True); `timeout` sets `timed_out`.

        No task is made for this: what happens here cancels the awaiting task, which
        takes the cancellation back. A cancellation from anyone else stays one.
        """
        task = asyncio.current_task()
        assert task is not None
        baseline = task.cancelling()
        timer = self.loop.call_later(timeout, self._time_out) if timeout is not None else None
        try:
            while not (self.head_done or self.closed or self.timed_out):
                self._interrupt = task
                try:
                    gone = await elsewhere()
                except asyncio.CancelledError:
                    if self._interrupt is not None or task.uncancel() > baseline:
                        raise  # not (only) ours
                    continue
                if self._interrupt is None:
                    task.uncancel()  # `elsewhere` swallowed the interruption
                if gone:
                    return True
            return False
        finally:
            self._interrupt = None
            if timer is not None:
                timer.cancel()

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

    async def write(self, data: bytes, timeout: float | None) -> None:
        """Send `data`; while the backend is not taking bytes, wait (within `timeout`)
        until it does or until its answer arrives (then the caller stops sending)."""
        if self.closed or self.transport is None:
            raise self.error or httpx.WriteError("backend connection closed")
        self.transport.write(data)
        if not self._write_paused or self.head_done:
            return
        deadline = None if timeout is None else self.loop.time() + timeout
        while self._write_paused and not self.head_done:
            if self.closed:
                raise self.error or httpx.WriteError("backend connection closed")
            remaining = None if deadline is None else deadline - self.loop.time()
            if (remaining is not None and remaining <= 0) or not await self.wait(remaining):
                raise httpx.WriteTimeout("backend did not take the request body in time")

    def take(self) -> bytes | None:
        """Everything that has arrived (at most the high-water mark), as one chunk:
        a reader that fell behind catches up with one send, not one per chunk."""
        if not self.chunks:
            return None
        chunk = self.chunks.popleft() if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()
        return chunk

    def close(self) -> None:
        self._fail(httpx.ReadError("backend connection closed by the gateway"))
        if self.transport is not None:
            self.transport.close()


class ResponseStream(httpx.AsyncByteStream):
    """The response body, read chunk by chunk with an optional per-read timeout."""

    def __init__(self, pool: "PooledTransport", origin: Origin, conn: _Connection, timeout: float | None = None) -> None:
        self._pool = pool
        self._origin = origin
        self._conn: _Connection | None = conn
        self._timeout = timeout

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
        try:
            while (chunk := await self.read(self._timeout)) is not None:
                yield chunk
        except TimeoutError:
            raise httpx.ReadTimeout(f"no response body bytes within {self._timeout:g} s") from None

    def abort(self) -> None:
        """Drop the backend connection now (the client left); a pending `read` raises.

        A body already read to its end is left for `aclose`, which may pool its connection.
        """
        conn = self._conn
        if conn is None or (conn.complete and not conn.chunks):
            return
        self._conn = None
        conn.close()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.reusable:
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
        conn.active = False
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
        read_timeout: float | None = None,
        client_gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> UpstreamResponse:
        """One request, answered once the response head arrives; the body streams from `.stream`.

        The gateway's hot path: no httpx.Request or httpx.Response is built. `headers`
        must carry Host; a body without Content-Length goes up chunked.

        `connect_timeout` bounds the connect (httpx.ConnectTimeout). `read_timeout` bounds
        the wait for the response head, counted from the moment the request has been sent
        whole (httpx.ReadTimeout), and each wait for a backend that takes no more of the
        body (httpx.WriteTimeout). The time the body takes to arrive from `body` is not
        counted: its own reader bounds it, and whatever it raises propagates as it is.
        `client_gone`, if given, is awaited (again each time it returns False) while the
        head is awaited, once the request has gone out whole: when it returns True the
        connection is dropped at once and RequestAbandoned raised. It is how the gateway
        watches for its client leaving without a task of its own per request.
        """
        head, length = _request_head(method, target, headers, body is not None)
        chunks = aiter(body) if body is not None else None
        first = await anext(chunks, b"") if chunks is not None else b""
        head_request = method == "HEAD"
        conn = self._take_idle(origin)
        if conn is not None:
            conn.begin(head_request=head_request)
            try:
                return await self._exchange(conn, origin, head, length, first, chunks, read_timeout, client_gone, reused=True)
            except _StaleConnection:
                pass
        conn = await self._connect(origin, connect_timeout)
        conn.begin(head_request=head_request)
        return await self._exchange(conn, origin, head, length, first, chunks, read_timeout, client_gone, reused=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The same exchange behind httpx's transport interface."""
        if request.method == "CONNECT":
            raise httpx.UnsupportedProtocol("CONNECT (a tunnel) is not supported by this transport")
        url = request.url
        origin = origin_of(url)
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        timeouts = request.extensions.get("timeout", {})
        answer = await self.send(
            origin,
            request.method,
            url.raw_path,
            request.headers.raw,
            request.stream if has_body else None,  # type: ignore[arg-type]
            connect_timeout=timeouts.get("connect"),
            read_timeout=timeouts.get("read"),
        )
        answer.stream._timeout = timeouts.get("read")
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
        length: int | None,
        first: bytes,
        rest: AsyncIterator[bytes] | None,
        read_timeout: float | None,
        client_gone: Callable[[], Awaitable[bool]] | None,
        *,
        reused: bool,
    ) -> UpstreamResponse:
        taken_more = False
        chunked = length is None and rest is not None
        sent = len(first)
        try:
            if length is not None and sent > length:
                raise httpx.LocalProtocolError("request body longer than its Content-Length")
            if first:
                head += b"%x\r\n%b\r\n" % (sent, first) if chunked else first
            await conn.write(head, read_timeout)
            if rest is not None:
                # An answer that arrives while the body is going up ends the upload.
                while not conn.head_done:
                    chunk = await anext(rest, None)
                    if chunk is None:
                        break
                    taken_more = True
                    if not chunk:
                        continue
                    sent += len(chunk)
                    if length is not None and sent > length:
                        raise httpx.LocalProtocolError("request body longer than its Content-Length")
                    await conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk, read_timeout)
                if not conn.head_done:
                    if chunked:
                        await conn.write(b"0\r\n\r\n", read_timeout)
                    elif length is not None and sent != length:
                        raise httpx.LocalProtocolError("request body shorter than its Content-Length")
            if not conn.head_done:
                conn.request_sent = True
                await self._await_head(conn, read_timeout, client_gone)
        except Exception as exc:
            if conn.head_done:
                # The backend answered while the body went up; whatever broke the upload
                # since (the backend hanging up, the client stalling), the answer stands.
                return UpstreamResponse(conn.status, conn.headers, ResponseStream(self, origin, conn))
            conn.close()
            if reused and not conn.response_started and not taken_more and isinstance(exc, _CONNECTION_GONE):
                raise _StaleConnection from None
            raise
        except BaseException:
            conn.close()
            raise
        return UpstreamResponse(conn.status, conn.headers, ResponseStream(self, origin, conn))

    @staticmethod
    async def _await_head(
        conn: _Connection, timeout: float | None, client_gone: Callable[[], Awaitable[bool]] | None
    ) -> None:
        if client_gone is not None:
            if await conn.wait_while(client_gone, timeout):
                raise RequestAbandoned("the caller went away before the backend answered")
        else:
            deadline = None if timeout is None else conn.loop.time() + timeout
            while not (conn.head_done or conn.closed):
                remaining = None if deadline is None else deadline - conn.loop.time()
                if remaining is not None and remaining <= 0 or not await conn.wait(remaining):
                    conn.timed_out = True
                    break
        if conn.head_done:
            return
        if conn.timed_out:
            raise httpx.ReadTimeout(f"no response head within {timeout:g} s")
        raise conn.error or httpx.ReadError("backend connection closed")

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
