"""The local server (`python -m shared serve`) bounds the request head in time and bytes.

uvicorn's httptools protocol has no such limits of its own; the gateway's protocol
counts head bytes as they arrive and gives each request head a deadline. The
gateway runs as a real process, stopped by its pid; clients are bare sockets.
"""

from __future__ import annotations

import asyncio
import time
from typing import Iterator

import pytest

from backends.recorder import EndlessEventStream, RecordingBackend
from emulators.server import BackgroundServer
from gateway_process import start_gateway_process
from raw_socket import RawConnection, request_head

HEAD_TIMEOUT = 1.0
MAX_HEAD = 8192
MAX_HEADERS = 30


def _peak_rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


class Setup:
    def __init__(self, base: str, recorder: RecordingBackend, pid: int) -> None:
        self.pid = pid
        self.base = base
        self.host = base.removeprefix("http://")
        self.recorder = recorder

    def recorded(self, tag: str):
        return [r for r in self.recorder.requests if r.query == f"t={tag}".encode()]

    def get(self, tag: str, headers: dict[str, str] | list[tuple[str, str]] = (), path: str = "/mcp/open") -> bytes:
        return request_head("GET", f"{path}?t={tag}", self.host, headers or {"Accept": "application/json"})


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    recorder = RecordingBackend()
    backends = [BackgroundServer(recorder).start(), BackgroundServer(EndlessEventStream(interval=0.1)).start()]
    try:
        document = {
            "servers": {
                "open": {"url": f"{backends[0].base_url}/mcp", "anonymous": True},
                "stream": {"url": f"{backends[1].base_url}/mcp", "anonymous": True},
            },
            "gateway": {
                "requestHeadTimeoutSeconds": HEAD_TIMEOUT,
                "maxRequestHeadBytes": MAX_HEAD,
                "maxRequestHeaders": MAX_HEADERS,
            },
        }
        gateway = start_gateway_process(document)
        try:
            yield Setup(gateway.url, recorder, gateway.pid)
        finally:
            gateway.stop()
    finally:
        for backend in backends:
            backend.stop()


async def _refused(setup: Setup, data: bytes, within: float = 8.0):
    """Send `data` (the server may stop reading it), then read the answer and the close.

    Also says whether all of `data` was taken: False when the server closed first.
    """
    conn = await RawConnection.open(setup.base)
    try:
        sending = asyncio.ensure_future(conn.send(data))
        async with asyncio.timeout(within):
            response = await conn.response()
            closed = await conn.closed_by_server()
            taken = await sending
        return response, closed, taken
    finally:
        conn.close()


# -- head size ----------------------------------------------------------------------------


async def test_an_8_mib_header_gets_431_and_is_never_held_or_forwarded(setup):
    peak_before = _peak_rss_kib(setup.pid)
    response, closed, _ = await _refused(setup, setup.get("huge", {"X-Big": "a" * (8 * 1024 * 1024)}))
    assert response.status == 431 and closed
    # Read and dropped, never held: the process's peak memory did not grow by the header's size.
    assert _peak_rss_kib(setup.pid) - peak_before < 4 * 1024
    assert response.json()["error"]["code"] == "headers_too_large"
    assert setup.recorded("huge") == []


async def test_a_head_just_over_the_limit_gets_431_and_one_just_under_is_served(setup):
    over, _, _ = await _refused(setup, setup.get("over", {"X-Fill": "a" * MAX_HEAD}))
    assert over.status == 431 and f"{MAX_HEAD}-byte limit" in over.json()["error"]["message"]
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(setup.get("under", {"Accept": "application/json", "X-Fill": "a" * (MAX_HEAD - 200)}))
        async with asyncio.timeout(8):
            under = await conn.response()
    finally:
        conn.close()
    assert under.status == 200 and len(setup.recorded("under")) == 1
    assert setup.recorded("over") == []


async def test_too_many_headers_get_431(setup):
    response, closed, _ = await _refused(setup, setup.get("many", [(f"X-H{i}", "1") for i in range(MAX_HEADERS + 5)]))
    assert response.status == 431 and closed
    assert f"more than {MAX_HEADERS} request headers" in response.json()["error"]["message"]
    assert setup.recorded("many") == []


async def test_a_long_request_target_counts_towards_the_head(setup):
    response, _, _ = await _refused(setup, request_head("GET", "/mcp/open?t=long&q=" + "a" * MAX_HEAD, setup.host))
    assert response.status == 431
    assert not any(r.query.startswith(b"t=long") for r in setup.recorder.requests)


async def test_one_header_line_without_end_is_refused_before_it_fills_memory(setup):
    """No line end ever comes: the parser would hold the growing value; the byte count stops it."""
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(b"GET /mcp/open?t=endless HTTP/1.1\r\nHost: " + setup.host.encode() + b"\r\nX-Endless: ")
        answer = asyncio.ensure_future(conn.response())
        for _ in range(64):
            if answer.done() or not await conn.send(b"a" * 4096):
                break
        async with asyncio.timeout(8):
            response = await answer
    finally:
        conn.close()
    assert response.status == 431


# -- head time ------------------------------------------------------------------------------


async def test_a_head_that_stalls_gets_408_and_the_connection_closes(setup):
    started = time.monotonic()
    response, closed, _ = await _refused(setup, b"POST /mcp/open?t=stall HTTP/1.1\r\nHost: " + setup.host.encode() + b"\r\n")
    assert response.status == 408 and closed
    assert response.json()["error"]["code"] == "request_timeout"
    assert time.monotonic() - started >= HEAD_TIMEOUT * 0.9
    assert setup.recorded("stall") == []


async def test_a_head_trickled_a_byte_at_a_time_is_cut_at_the_time_limit(setup):
    head = setup.get("trickle", {"Accept": "application/json", "X-Pad": "p" * 200})
    conn = await RawConnection.open(setup.base)
    try:
        answer = asyncio.ensure_future(conn.response())
        started = time.monotonic()
        for byte in head[:-1]:
            if answer.done() or not await conn.send(bytes([byte])):
                break
            await asyncio.wait([answer], timeout=0.02)  # the client's pace: the whole head would take 5 s
        async with asyncio.timeout(8):
            response = await answer
        took = time.monotonic() - started
    finally:
        conn.close()
    assert response.status == 408 and took < 4
    assert setup.recorded("trickle") == []


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(setup):
    conn = await RawConnection.open(setup.base)
    try:
        async with asyncio.timeout(8):
            assert await conn.rest() == b""
    finally:
        conn.close()


# -- what must keep working ---------------------------------------------------------------------


async def test_keep_alive_and_pipelined_requests_are_served(setup):
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(setup.get("pipe-1") + setup.get("pipe-2"))
        async with asyncio.timeout(8):
            first, second = await conn.response(), await conn.response()
        await asyncio.sleep(HEAD_TIMEOUT / 2)  # an idle gap shorter than the head limit, by design
        await conn.send(setup.get("pipe-3"))
        async with asyncio.timeout(8):
            third = await conn.response()
    finally:
        conn.close()
    assert (first.status, second.status, third.status) == (200, 200, 200)
    assert [len(setup.recorded(f"pipe-{i}")) for i in (1, 2, 3)] == [1, 1, 1]


async def test_a_head_sent_in_small_pieces_within_the_limits_is_served(setup):
    head = setup.get("pieces", {"Accept": "application/json", "X-Pad": "p" * 4000})
    conn = await RawConnection.open(setup.base)
    try:
        for i in range(0, len(head), 7):
            await conn.send(head[i : i + 7])
        async with asyncio.timeout(8):
            response = await conn.response()
    finally:
        conn.close()
    assert response.status == 200 and len(setup.recorded("pieces")) == 1


async def test_a_stream_longer_than_the_head_limit_is_not_cut(setup):
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(setup.get("sse", {"Accept": "text/event-stream"}, path="/mcp/stream"))
        started = time.monotonic()
        async with asyncio.timeout(10):
            head = await conn.reader.readuntil(b"\r\n\r\n")
            late = b""
            while time.monotonic() - started < 3 * HEAD_TIMEOUT:
                late = await conn.reader.readuntil(b"\n\n")
    finally:
        conn.close()
    assert head.startswith(b"HTTP/1.1 200") and b"data: tick" in late


async def test_an_oversized_head_pipelined_behind_a_stream_closes_it_without_writing_into_it(setup):
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(setup.get("sse-2", {"Accept": "text/event-stream"}, path="/mcp/stream"))
        async with asyncio.timeout(8):
            await conn.reader.readuntil(b"data: tick 1\n\n")
        await conn.send(setup.get("behind", {"X-Big": "a" * (2 * MAX_HEAD)}))
        async with asyncio.timeout(8):
            rest = await conn.rest()
    finally:
        conn.close()
    assert b"HTTP/1.1 431" not in rest and b"headers_too_large" not in rest
    assert setup.recorded("behind") == []


async def test_an_endless_trailer_line_after_a_chunked_body_is_cut_off(setup):
    """Trailers are header fields too: one that never ends cannot grow the parser's buffer."""
    conn = await RawConnection.open(setup.base)
    sent, most = 0, 4 * 1024 * 1024
    try:
        head = request_head("POST", "/mcp/open?t=trailer", setup.host,
                            {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        await conn.send(head + b"2\r\n{}\r\n0\r\nX-Trailer: ")
        async with asyncio.timeout(8):
            while sent < most and await conn.send(b"a" * 4096):
                sent += 4096
    finally:
        conn.close()
    assert sent < most, "the server kept reading one endless trailer line"


async def test_an_oversized_head_pipelined_in_the_same_write_is_never_served(setup):
    """Behind a request still being answered, the only safe answer is the close (HTTP answers in order)."""
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(setup.get("first") + setup.get("second", {"X-Big": "a" * (3 * MAX_HEAD)}))
        async with asyncio.timeout(8):
            rest = await conn.rest()
    finally:
        conn.close()
    assert rest == b"" or rest.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 431" not in rest
    assert setup.recorded("second") == []
