"""A byte-exact HTTP/1.1 client for hostile requests: repeated Host lines, raw targets, odd header cases.

httpx normalises what it sends (one Host, an encoded target); attacks need exactly the
bytes written. Requests are written by hand; responses are parsed by h11, on one
keep-alive connection, so a response that belongs to another request shows up.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        values = [v for k, v in self.headers if k == name]
        return values[-1] if values else None


class RawClient:
    def __init__(self, base_url: str, *, timeout: float = 15.0) -> None:
        parts = urlsplit(base_url)
        self.address = (parts.hostname, parts.port)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._conn: h11.Connection | None = None

    def request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> RawResponse:
        """Send one request (Content-Length added when there is a body) and read its response."""
        if self._sock is None or self._conn is None or self._conn.our_state is not h11.IDLE:
            self._connect()
        assert self._sock is not None and self._conn is not None
        lines = [method + b" " + target + b" HTTP/1.1"] + [name + b": " + value for name, value in headers]
        if body:
            lines.append(b"Content-Length: " + str(len(body)).encode())
        self._sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        # Tell h11 what was sent, so it knows how to frame the answer (HEAD has no body).
        self._conn.send(h11.Request(method=method, target=b"/", headers=[(b"host", b"x"), (b"content-length", str(len(body)).encode())]))
        if body:
            self._conn.send(h11.Data(data=body))
        self._conn.send(h11.EndOfMessage())
        status, response_headers, chunks = 0, [], []
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                data = self._sock.recv(65536)
                self._conn.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status, response_headers = event.status_code, list(event.headers)
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if self._conn.our_state is h11.MUST_CLOSE or self._conn.their_state is not h11.DONE:
            self.close()
        else:
            self._conn.start_next_cycle()
        return RawResponse(status, response_headers, b"".join(chunks))

    def _connect(self) -> None:
        self.close()
        self._sock = socket.create_connection(self.address, timeout=self.timeout)
        self._conn = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = self._conn = None

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
