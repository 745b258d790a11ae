"""The upstream transport against a corpus of hostile backend byte scripts, judged by h11.

Each case is what a backend writes for one request. The real transport reads it from
a raw TCP server on 127.0.0.1; h11, as the client-side state machine, reads the same
bytes after the same request. Both must agree on the status, the headers, the body,
whether the exchange failed, and whether the connection may carry another exchange.
Where the transport is deliberately stricter than h11 (it refuses what h11 accepts),
the case says why, and the test checks that h11 really does accept it.

After each case the same transport sends tagged requests to the same origin: each
must get exactly its own answer, so no byte of one exchange ever reaches another.
Each case runs twice: the script in one write, and one byte per write.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

import h11
import httpx
import pytest

from shared.transport import MAX_HEAD_BYTES, MAX_HEADERS, PooledTransport
from test_transport import RawServer, read_request

Then = Literal["serve", "close", "drop-next"]
Segmentation = Literal["whole", "bytewise"]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CHUNKED_OK = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
CASE_BODY = b'{"jsonrpc":"2.0","id":"case","method":"ping"}'
EARLY_UPLOAD = 16 * 1024 * 1024  # well beyond what loopback socket buffers hold


@dataclass(frozen=True)
class Case:
    name: str
    response: bytes
    method: str = "POST"
    then: Then = "serve"
    """After writing: answer further requests on this connection, close it, or close it
    on the next request without answering (the keep-alive race)."""
    expect: bool = False
    """The client's request carried `Expect: 100-continue` (which must not go upstream)."""
    early: bool = False
    """The backend answers after the request head, before it reads the (large) body."""
    late: bytes = b""
    """Written once the client has released the connection to the pool."""
    stricter: str = ""
    """Why the transport refuses bytes that h11 accepts."""
    reuse_stricter: str = ""
    """Why the transport does not reuse a connection that h11 would."""


CASES = [
    # -- interim responses -------------------------------------------------------------
    Case("100 before the final response", b"HTTP/1.1 100 Continue\r\n\r\n" + OK),
    Case("100 before the final response, Expect sent", b"HTTP/1.1 100 Continue\r\n\r\n" + OK, expect=True),
    Case("102 Processing", b"HTTP/1.1 102 Processing\r\n\r\n" + CHUNKED_OK),
    Case("103 Early Hints with headers", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + OK),
    Case(
        "several interim responses",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </b>\r\n\r\n" + OK,
    ),
    Case("interim response claiming a body", b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n" + OK),
    Case("interim response, then the backend closes", b"HTTP/1.1 100 Continue\r\n\r\n", then="close"),
    Case(
        "endless interim responses",
        b"HTTP/1.1 103 Early Hints\r\n\r\n" * (MAX_HEAD_BYTES // 28 + 100) + OK,
        stricter="every interim head counts against the head cap: endless 1xx cannot stall a request",
    ),
    Case("101 without an Upgrade asked for", b"HTTP/1.1 101 Switching Protocols\r\n\r\nxyz"),
    Case(
        "101 with Upgrade",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00",
    ),
    # -- bytes after the body ---------------------------------------------------------
    Case("a second response glued to the first", OK + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"),
    Case("garbage after the body", OK + b"X"),
    Case("a response arriving while the connection is idle", OK, late=b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"),
    Case("one byte arriving while the connection is idle", OK, late=b"\r"),
    # -- a response before the request body is sent -------------------------------------
    Case("413 before the upload is read", b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nbig", early=True),
    Case("401 before the upload is read, chunked", b"HTTP/1.1 401 No\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", early=True),
    # -- close-delimited bodies ----------------------------------------------------------
    Case("HTTP/1.0 body until close", b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", then="close"),
    Case("HTTP/1.1 Connection: close without a length", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", then="close"),
    Case("HTTP/1.1 no length, no Connection header", b"HTTP/1.1 200 OK\r\n\r\nuntil close", then="close"),
    Case("HTTP/1.1 empty body until close", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", then="close"),
    Case("HTTP/1.0 keep-alive with a length", b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"),
    Case("HTTP/1.0 with a length", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", then="close"),
    # -- chunked ---------------------------------------------------------------------------
    Case(
        "chunk extensions and trailers",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        b"3;name=value\r\nabc\r\n2;quoted=\"x;y\"\r\nde\r\n0;last\r\nX-Checksum: 42\r\nMcp-Session-Id: forged\r\n\r\n",
    ),
    Case("chunked, upper-case coding name", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    Case("chunked, bad chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n", then="close"),
    Case("chunked, body cut off", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", then="close"),
    Case("chunked, no last chunk before close", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", then="close"),
    Case(
        "chunked twice",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        then="close",
    ),
    Case("gzip then chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", then="close"),
    Case("HTTP/1.0 with a chunked body", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", then="close",
         stricter="HTTP/1.0 has no transfer codings: its framing is faulty (RFC 9112 6.1)"),
    Case("a coding other than chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc", then="close"),
    # -- bodies a response must not have ------------------------------------------------------
    Case("HEAD with a Content-Length and no body", b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n", method="HEAD",
         reuse_stricter="the parser cannot be told to skip a HEAD response's body, so after HEAD the connection is closed"),
    Case("HEAD answered with a body", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", method="HEAD"),
    Case("204 with a body", b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\nok"),
    Case("204 without a body", b"HTTP/1.1 204 No Content\r\n\r\n"),
    Case("304 with a body", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\nok"),
    Case("304 with a chunked body", b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    # -- Content-Length --------------------------------------------------------------------
    Case("Content-Length too long", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", then="close"),
    Case("Content-Length too short", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokay"),
    Case("Content-Length zero", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    Case("Content-Length with leading zeros", b"HTTP/1.1 200 OK\r\nContent-Length: 002\r\n\r\nok"),
    Case("two conflicting Content-Lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 4\r\n\r\nokay", then="close"),
    Case("two equal Content-Lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
         stricter="a repeated Content-Length is a framing ambiguity (RFC 9112 6.3): refused like llhttp"),
    Case("Content-Length list", b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
         stricter="a Content-Length list is a framing ambiguity (RFC 9112 6.3): refused like llhttp"),
    Case("negative Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok", then="close"),
    Case("Content-Length and Transfer-Encoding", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
         stricter="both framings at once is how responses are smuggled (RFC 9112 6.3): refused, not guessed"),
    # -- Connection ------------------------------------------------------------------------------
    Case("Connection: close with a length", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", then="close"),
    Case("Connection: close, backend keeps the socket open", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"),
    Case("keep-alive expiry racing the next request", OK, then="drop-next"),
    Case("backend closes after a keep-alive answer", OK, then="close"),
    # -- heads -------------------------------------------------------------------------------------
    Case("backend closes mid-head", b"HTTP/1.1 200 OK\r\nContent-Le", then="close"),
    Case("backend closes before answering", b"", then="close"),
    Case("backend closes mid-body", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", then="close"),
    Case("head just under the cap", b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES - 100) + b"\r\n" + b"Content-Length: 2\r\n\r\nok"),
    Case("head over the cap", b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 8192) + b"\r\nContent-Length: 2\r\n\r\nok", then="close"),
    Case("more headers than the cap", b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"Content-Length: 2\r\n\r\nok",
         stricter="a header count cap, as aiohttp's (128): a head of many tiny headers costs more than its bytes"),
    Case("obsolete line folding", b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
         stricter="a gateway MUST reject obs-fold in a response or replace it (RFC 9112 5.2): rejected, 502"),
    Case("space before the colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", then="close"),
    Case("NUL in a header value", b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 2\r\n\r\nok", then="close"),
    Case("bare LF line endings", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
         stricter="bare LF framing is lenient parsing that request smuggling feeds on: llhttp's strict mode refuses it"),
    Case("status below 100", b"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok", then="close"),
    Case("four-digit status", b"HTTP/1.1 2000 Odd\r\nContent-Length: 2\r\n\r\nok", then="close"),
    Case("no reason phrase", b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok"),
    Case("HTTP/2.0 status line", b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
         stricter="only HTTP/1.0 and HTTP/1.1 are spoken on this connection"),
    Case("HTTP/1.2 status line", b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok",
         stricter="only HTTP/1.0 and HTTP/1.1 are spoken on this connection"),
    Case("garbage instead of a response", b"SSH-2.0-OpenSSH_9.6\r\n", then="close"),
    Case("binary garbage", bytes(range(256)), then="close"),
    Case("header values with spaces around them", b"HTTP/1.1 200 OK\r\nX-Spaced:   padded value \t\r\nContent-Length: 2\r\n\r\nok"),
]


# -- the oracle ------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    error: bool = False
    reusable: bool = False


def request_headers(case: Case, tag: bytes) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"backend.test"), (b"x-tag", tag)]
    if case.method == "POST" and not case.early:
        headers.append((b"content-length", b"%d" % len(CASE_BODY)))
    if case.expect:
        headers.append((b"expect", b"100-continue"))
    return headers


def like_h11(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Headers as h11 reports them: lower-case names, the transfer coding lower-cased."""
    return [(k.lower(), v.lower() if k.lower() == b"transfer-encoding" else v) for k, v in headers]


def h11_outcome(case: Case) -> Outcome:
    """What h11, as a client that sent the same request, makes of the same bytes."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
    # What went on the wire: no Expect (the transport never forwards it), the upload chunked.
    headers = [(k, v) for k, v in request_headers(case, b"case") if k != b"expect"]
    if case.early:
        headers.append((b"transfer-encoding", b"chunked"))
    conn.send(h11.Request(method=case.method, target="/case", headers=headers))
    if case.method == "POST" and not case.early:
        conn.send(h11.Data(data=CASE_BODY))
    if not case.early:
        conn.send(h11.EndOfMessage())
    # Fed as a socket would deliver it, so h11's size limit applies to an incomplete head.
    pieces = [case.response[i : i + 4096] for i in range(0, len(case.response), 4096)]
    if case.then == "close":
        pieces.append(b"")
    outcome = Outcome()
    body = bytearray()
    try:
        for piece in pieces:
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if isinstance(event, h11.Response):
                    outcome.status = event.status_code
                    outcome.headers = [(k.lower(), v) for k, v in event.headers.raw_items()]
                elif isinstance(event, h11.Data):
                    body += event.data
                elif event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    break
    except h11.RemoteProtocolError:
        outcome.error = True
    outcome.body = bytes(body)
    outcome.reusable = (
        not outcome.error
        and conn.our_state is h11.DONE
        and conn.their_state is h11.DONE
        and not conn.trailing_data[0]
    )
    return outcome


# -- the real transport --------------------------------------------------------------------------


@dataclass
class Backend:
    """A scripted raw backend: connection 1 plays the case, every connection answers tags."""

    case: Case
    segmentation: Segmentation
    heads: list[bytes] = field(default_factory=list)
    answered_on: dict[bytes, int] = field(default_factory=dict)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if n == 1:
            if not await self.play(reader, writer):
                return
        await self.answer_tags(n, reader, writer)

    async def play(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """The case on the first connection; whether the connection goes on serving."""
        case = self.case
        if case.early:
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
        else:
            self.heads.append((await read_request(reader))[0])
        await self.write(writer, case.response)
        if case.early:
            while await reader.read(65536):  # drain the upload until the client hangs up
                pass
            return False
        if case.late:
            await self.released.wait()
            try:
                await self.write(writer, case.late)
                closed = not await reader.read(1)
            except ConnectionError:  # reset while the stray bytes were still going out
                closed = True
            if closed:
                self.closed_by_client.set()
            return False
        if case.then == "close":
            return False
        if case.then == "drop-next":
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                pass
            return False
        return True

    async def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if self.segmentation == "whole":
            writer.write(data)
            await writer.drain()
            return
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()

    async def answer_tags(self, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head, _ = await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            tag = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"x-tag:"))
            self.answered_on[tag] = n
            body = b"tag:" + tag
            writer.write(b"HTTP/1.1 200 OK\r\nX-Tag: %b\r\nContent-Length: %d\r\n\r\n%b" % (tag, len(body), body))
            await writer.drain()


async def upload(taken: list[int]):
    """A body far larger than socket buffers, counted as the transport takes it."""
    piece = b"x" * 65536
    for _ in range(EARLY_UPLOAD // len(piece)):
        taken.append(len(piece))
        yield piece


async def transport_outcome(transport: PooledTransport, server: RawServer, case: Case) -> tuple[Outcome, list[int]]:
    outcome = Outcome()
    taken: list[int] = []
    if case.early:
        body = upload(taken)
    elif case.method == "POST":
        body = _once(CASE_BODY)
    else:
        body = None
    try:
        answer = await asyncio.wait_for(
            transport.send(server.origin, case.method, b"/case", request_headers(case, b"case"), body), 10
        )
    except httpx.TransportError:
        outcome.error = True
        return outcome, taken
    outcome.status = answer.status
    outcome.headers = like_h11(answer.headers)
    body_read = bytearray()
    try:
        while (chunk := await answer.stream.read(10)) is not None:
            body_read += chunk
    except httpx.TransportError:
        outcome.error = True
    finally:
        await answer.stream.aclose()
    outcome.body = bytes(body_read)
    return outcome, taken


async def _once(data: bytes):
    yield data


@pytest.mark.parametrize("segmentation", ["whole", "bytewise"])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_the_transport_agrees_with_h11_and_never_mixes_exchanges(case: Case, segmentation: Segmentation):
    oracle = h11_outcome(case)
    backend = Backend(case, segmentation)
    async with RawServer(backend) as server:
        transport = PooledTransport()
        try:
            ours, taken = await transport_outcome(transport, server, case)
            if case.late:
                backend.released.set()
                # The stray bytes reach a connection idle in the pool: it is closed at once.
                await asyncio.wait_for(backend.closed_by_client.wait(), 5)
            # The next requests on the same transport get exactly their own answers.
            for tag in (b"probe-1", b"probe-2"):
                answer = await asyncio.wait_for(
                    transport.send(server.origin, "GET", b"/probe", [(b"host", b"backend.test"), (b"x-tag", tag)], None), 5
                )
                body = await answer.stream.read(5)
                assert (answer.status, dict(answer.headers).get(b"X-Tag"), body) == (200, tag, b"tag:" + tag)
                assert await answer.stream.read(5) is None
                await answer.stream.aclose()
        finally:
            await transport.aclose()
    ours.reusable = backend.answered_on.get(b"probe-1") == 1

    assert backend.heads, "the request never reached the backend"
    assert b"\r\nexpect:" not in backend.heads[0].lower(), "Expect went upstream"
    if case.early:
        assert sum(taken) < EARLY_UPLOAD, "the upload went on after the backend had answered"
    if case.stricter:
        assert not oracle.error, "h11 refuses this too: the case is not a deviation"
        assert ours.error and not ours.reusable
        return
    assert (ours.status, ours.headers, ours.error) == (oracle.status, oracle.headers, oracle.error)
    if not ours.error:
        assert ours.body == oracle.body
    if case.reuse_stricter:
        assert oracle.reusable and not ours.reusable
    elif case.late:
        assert oracle.reusable and not ours.reusable  # reusable when released, closed when bytes came
    elif case.then == "drop-next":
        # The probe met the dying connection and went again on a fresh one.
        assert oracle.reusable and backend.answered_on[b"probe-1"] == 2
    else:
        assert ours.reusable == oracle.reusable
