"""The local server's HTTP protocol: uvicorn's httptools protocol, with a bounded request head.

uvicorn's httptools protocol limits neither the time a client takes to send a
request head (slowloris) nor its size. This subclass keeps the same parser and
adds, per request head:

- a deadline: the head must be complete within `HeadLimits.timeout`, counted from
  the connection or from the end of the previous response (a partial head then
  gets 408, a connection that sent nothing is closed). One heartbeat per server
  polices every connection's deadline (watch.py): no timer per request;
- a size check once the head is parsed: the request target plus header names and
  values may not exceed `HeadLimits.max_bytes`, nor the header count
  `HeadLimits.max_headers` (431), before any of it reaches the app;
- a count of the bytes that arrive without the parser making progress (a head
  that does not end, trailers after a chunked body), so one header line that never
  ends cannot grow the parser's buffer: over twice the head limit is refused too;
- trailer fields kept out of the request's headers (uvicorn would append them to
  the list the app reads, so a field sent after the body would count as a header).

A refusal is written only where HTTP allows an answer: never into a response that
is still being sent (a request pipelined behind a stream); then the connection is
just closed. After an answer the gateway stops sending and, for a short while, reads
and drops what the client still sends (as nginx's lingering close does): closing a
socket with unread bytes resets it, and the client could lose the answer.
"""

from __future__ import annotations

import asyncio
import logging

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .errors import GatewayError, RequestTimeout, error_response
from .limits import HeadLimits
from .watch import Watch

logger = logging.getLogger("shared.serving")

_UNPARSED_FACTOR = 2
"""Bytes that may arrive without parser progress, per byte of the head limit (separators, line
ends and whitespace are on the wire but not counted in the head)."""
_LINGER_SECONDS = 2.0
"""After a refusal, how long what the client still sends is read and dropped before the close."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    limits = HeadLimits()
    heads = Watch(tick=1.0)
    """One per server: `bounded_protocol` makes a subclass with its own limits and watch."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._unparsed_bytes = 0  # arrived since the parser last completed a head, a body chunk or a message
        self._in_trailers = False  # the head is complete: fields the parser reports now are trailers
        self._refused = False
        self._linger: asyncio.TimerHandle | None = None

    # -- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self.heads.release(self)
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and dropped
        if self._unparsed_bytes > _UNPARSED_FACTOR * self.limits.max_bytes:
            self._refuse(self.limits.too_large())
            return
        self._unparsed_bytes += len(data)
        # What follows is uvicorn's own data_received, with the head's refusals told apart.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__
            if isinstance(refusal, GatewayError):
                self._refuse(refusal)
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    # -- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_trailers = False
        HttpToolsProtocol.on_message_begin(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn appends trailer fields to the request's header list, which the app may
        # not have read yet: a field sent after the body (past every proxy's header checks)
        # would count as a header. Trailers are dropped (RFC 9110 6.5.1: never merged).
        if not self._in_trailers:
            HttpToolsProtocol.on_header(self, name, value)

    def on_headers_complete(self) -> None:
        self._in_trailers = True
        self.heads.release(self)
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            raise limits.too_many()
        size = len(self.url)
        for name, value in self.headers:
            size += len(name) + len(value)
        if size > limits.max_bytes:
            raise limits.too_large()
        self._unparsed_bytes = 0
        HttpToolsProtocol.on_headers_complete(self)

    def on_body(self, body: bytes) -> None:
        self._unparsed_bytes = 0
        HttpToolsProtocol.on_body(self, body)

    def on_message_complete(self) -> None:
        self._unparsed_bytes = 0
        HttpToolsProtocol.on_message_complete(self)

    def on_response_complete(self) -> None:
        HttpToolsProtocol.on_response_complete(self)
        # No request running or queued: the next head has its own time from now (a closing
        # connection is released when it is lost).
        if self.cycle.response_complete:
            self.heads.watch(self, self.loop, self.loop.time() + self.limits.timeout)

    def _unsupported_upgrade_warning(self) -> None:
        """The gateway upgrades nothing (and refuses an upgrade with a body, see headers.py):
        a client asking for one is answered in HTTP/1.1, no operator's concern."""
        logger.debug("protocol upgrade declined")

    # -- the head's deadline and the refusal ---------------------------------------------------

    def _start_head_clock(self) -> None:
        self.heads.watch(self, self.loop, self.loop.time() + self.limits.timeout)

    def expire(self) -> None:
        """The head's deadline passed (called by the watch)."""
        if self.transport.is_closing():
            return
        if self._unparsed_bytes:
            self._refuse(RequestTimeout(f"request head not received within {self.limits.timeout:g} s"))
        else:
            self.transport.close()  # an idle connection: nothing to answer

    def _refuse(self, error: GatewayError) -> None:
        """Answer the head with `error` and close; only close if a response is under way."""
        self._refused = True
        self.heads.release(self)
        logger.debug("request head refused: %s", error.message)
        if self.cycle is None or self.cycle.response_complete:
            response = error_response(error)
            head = [STATUS_LINE[response.status_code]]
            for name, value in [*self.server_state.default_headers, *response.raw_headers, (b"connection", b"close")]:
                head += [name, b": ", value, b"\r\n"]
            self.transport.write(b"".join([*head, b"\r\n", response.body]))
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self._linger = self.loop.call_later(_LINGER_SECONDS, self.transport.close)
                return
        self.transport.close()


def bounded_protocol(limits: HeadLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for one server's limits (uvicorn.Config takes a class as `http`)."""
    attributes = {"limits": limits, "heads": Watch(tick=min(1.0, limits.timeout / 4))}
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), attributes)
