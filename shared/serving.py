"""The local server's HTTP protocol: uvicorn's httptools protocol, with a bounded request head.

uvicorn's httptools protocol limits neither the time a client takes to send a
request head (slowloris) nor its size. This subclass keeps the same parser and
hot path and adds, per request head, one timer and a few counters:

- the head must be complete within `HeadLimits.timeout`, counted from the
  connection or from the end of the previous response (a partial head then gets
  408, a connection that sent nothing is closed);
- the request target plus header names and values may not exceed
  `HeadLimits.max_bytes`, nor the header count `HeadLimits.max_headers` (431);
- bytes that arrive without the parser making progress (a head that does not end,
  trailers after a chunked body) are counted as they arrive, so one header line
  that never ends cannot grow the parser's buffer either.

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

logger = logging.getLogger("shared.serving")

_RAW_HEAD_FACTOR = 2
"""Bytes on the wire a head may take per counted byte (separators, line ends, whitespace)."""
_LINGER_SECONDS = 2.0
"""After a refusal, how long what the client still sends is read and dropped before the close."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    limits = HeadLimits()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False  # some of the next request head has arrived
        self._unparsed_bytes = 0  # arrived since the parser last completed a head, a body chunk or a message
        self._head_bytes = 0
        self._header_count = 0
        self._refused = False

    # -- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._unparsed_bytes > _RAW_HEAD_FACTOR * self.limits.max_bytes:
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

    # -- parser callbacks: count the head as it is parsed -----------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        self._head_bytes = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_bytes:
            raise self.limits.too_large()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_bytes += len(name) + len(value)
        if self._header_count > self.limits.max_headers:
            raise self.limits.too_many()
        if self._head_bytes > self.limits.max_bytes:
            raise self.limits.too_large()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_started = False
        self._unparsed_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._unparsed_bytes = 0
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._unparsed_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # No request running or queued: the next head has its own time from now.
        if not self.transport.is_closing() and self.cycle is not None and self.cycle.response_complete:
            self._arm_head_timer()

    # -- the head's timer and the refusal ----------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.limits.timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_started:
            self._refuse(RequestTimeout(f"request head not received within {self.limits.timeout:g} s"))
        else:
            self.transport.close()  # an idle connection: nothing to answer

    def _refuse(self, error: GatewayError) -> None:
        """Answer the head with `error` and close; only close if a response is under way."""
        self._refused = True
        self._disarm_head_timer()
        logger.debug("request head refused: %s", error.message)
        if self.cycle is None or self.cycle.response_complete:
            response = error_response(error)
            head = [STATUS_LINE[response.status_code]]
            for name, value in [*self.server_state.default_headers, *response.raw_headers, (b"connection", b"close")]:
                head += [name, b": ", value, b"\r\n"]
            self.transport.write(b"".join([*head, b"\r\n", response.body]))
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self._head_timer = self.loop.call_later(_LINGER_SECONDS, self.transport.close)
                return
        self.transport.close()


def bounded_protocol(limits: HeadLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for one server's limits (uvicorn.Config takes a class as `http`)."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})
