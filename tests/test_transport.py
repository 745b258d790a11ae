"""The upstream transport against raw HTTP/1.1 servers that misbehave on cue."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest

from shared.transport import PooledTransport, RequestAbandoned

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class RawServer:
    """An asyncio TCP server whose per-connection behaviour a test scripts."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task] = set()

    async def __aenter__(self) -> "RawServer":
        async def on_connect(reader, writer):
            self.connections += 1
            task = asyncio.current_task()
            self._handlers.add(task)
            try:
                await self.handler(self.connections, reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass  # the client went away, or the test is over
            finally:
                self._handlers.discard(task)
                writer.close()

        self.server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/mcp"

    @property
    def origin(self) -> tuple[str, str, int]:
        return ("http", "127.0.0.1", self.server.sockets[0].getsockname()[1])


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    body = b""
    lower = head.lower()
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readline()).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += data[:-2]
    return head, body


async def fetch(transport: PooledTransport, url: str, content=None, method="POST") -> tuple[httpx.Response, bytes]:
    request = httpx.Request(method, url, content=content)
    response = await transport.handle_async_request(request)
    body = b"".join([chunk async for chunk in response.stream])
    await response.stream.aclose()
    return response, body


async def answer_ok_until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A well-behaved keep-alive server: every request gets OK until the client leaves."""
    while True:
        try:
            await read_request(reader)
        except asyncio.IncompleteReadError:
            return
        writer.write(OK)
        await writer.drain()


async def test_connections_are_kept_alive_and_reused():
    async def serve(n, reader, writer):
        await answer_ok_until_closed(reader, writer)

    async with RawServer(serve) as server:
        transport = PooledTransport()
        for _ in range(5):
            response, body = await fetch(transport, server.url, b"{}")
            assert response.status_code == 200 and body == b"ok"
        await transport.aclose()
    assert server.connections == 1


async def test_a_pooled_connection_closed_by_the_backend_is_retried_on_a_fresh_one():
    async def serve(n, reader, writer):
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        if n == 1:
            await read_request(reader)  # the second request arrives on a connection about to die
            return  # closed without a byte of response: the keep-alive race
        await answer_ok_until_closed(reader, writer)

    async with RawServer(serve) as server:
        transport = PooledTransport()
        assert (await fetch(transport, server.url, b'{"id":1}'))[1] == b"ok"
        assert (await fetch(transport, server.url, b'{"id":2}'))[1] == b"ok"
        await transport.aclose()
    assert server.connections == 2


async def test_no_retry_once_the_backend_started_answering():
    async def serve(n, reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")
        await writer.drain()

    async with RawServer(serve) as server:
        transport = PooledTransport()
        with pytest.raises(httpx.TransportError):
            await fetch(transport, server.url, b"{}")
        await transport.aclose()
    assert server.connections == 1


async def test_bodies_stream_both_ways_intact_chunked_and_sized():
    received: list[bytes] = []
    big = bytes(range(256)) * 20_000  # ~5 MB, beyond the read buffer's high-water mark

    async def serve(n, reader, writer):
        while True:
            try:
                _, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            received.append(body)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(big), 65536):
                piece = big[i : i + 65536]
                writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def upload():
        for i in range(10):
            yield f"part {i};".encode()

    async with RawServer(serve) as server:
        transport = PooledTransport()
        response, body = await fetch(transport, server.url, upload())
        assert hashlib.sha256(body).digest() == hashlib.sha256(big).digest()
        response, body = await fetch(transport, server.url, b"x" * 100_000)
        assert len(body) == len(big)
        await transport.aclose()
    assert received == [b"".join(f"part {i};".encode() for i in range(10)), b"x" * 100_000]


async def test_a_read_timeout_leaves_the_stream_readable():
    release = asyncio.Event()

    async def serve(n, reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"6\r\ndata:x\r\n0\r\n\r\n")
        await writer.drain()

    async with RawServer(serve) as server:
        transport = PooledTransport()
        response = await transport.handle_async_request(httpx.Request("GET", server.url))
        with pytest.raises(TimeoutError):
            await response.stream.read(0.05)
        release.set()
        assert await response.stream.read(5) == b"data:x"
        assert await response.stream.read(5) is None
        await response.stream.aclose()
        await transport.aclose()


async def test_refused_connection_is_a_connect_error():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = PooledTransport()
    with pytest.raises(httpx.ConnectError):
        await transport.handle_async_request(httpx.Request("GET", f"http://127.0.0.1:{port}/"))


async def test_https_backends_through_the_gateway_with_a_private_ca(start_server, start_gateway, emulator_pki):
    from backends.recorder import RecordingBackend
    from emulators.server import BackgroundServer
    from helpers import anonymous, gateway_config

    recorder = RecordingBackend()
    backend = BackgroundServer(recorder, pki=emulator_pki).start()
    try:
        base = start_gateway(gateway_config({"tls": anonymous(f"{backend.base_url}/mcp")}, caBundle=emulator_pki.ca_path))
        untrusted = start_gateway(gateway_config({"tls": anonymous(f"{backend.base_url}/mcp")}))
        async with httpx.AsyncClient(timeout=10) as client:
            ok = await client.post(f"{base}/mcp/tls", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            refused = await client.post(f"{untrusted}/mcp/tls", json={"jsonrpc": "2.0", "id": 2, "method": "ping"})
        assert ok.status_code == 200 and len(recorder.requests) == 1
        assert refused.status_code == 502 and refused.json()["id"] == 2
    finally:
        backend.stop()


async def test_send_frames_the_body_by_what_the_headers_say():
    """The gateway's own entry point: sized bodies go as they are, unsized ones chunked,
    and a request without a body carries no framing at all."""
    heads: list[tuple[bytes, bytes]] = []

    async def serve(n, reader, writer):
        while True:
            try:
                heads.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(OK)
            await writer.drain()

    async def upload(*parts: bytes):
        for part in parts:
            yield part

    async with RawServer(serve) as server:
        transport = PooledTransport()
        origin = server.origin
        host = [(b"host", b"backend.test")]
        cases = [
            ("POST", host + [(b"content-length", b"7")], upload(b"{}", b"12345")),
            ("POST", host, upload(b"[1,", b"2]")),
            ("GET", host, None),
            ("DELETE", host + [(b"content-length", b"5")], None),  # a body the gateway does not forward
        ]
        for method, headers, body in cases:
            answer = await asyncio.wait_for(transport.send(origin, method, b"/mcp?x=1", headers, body), 5)
            assert answer.status == 200
            assert (await answer.stream.read(), await answer.stream.read()) == (b"ok", None)
            await answer.stream.aclose()
        await transport.aclose()
    assert server.connections == 1
    (sized, sized_body), (unsized, unsized_body), (bodiless, _), (delete, _) = heads
    assert sized.startswith(b"POST /mcp?x=1 HTTP/1.1\r\nhost: backend.test\r\n") and sized_body == b"{}12345"
    assert b"transfer-encoding" not in sized.lower()
    assert b"transfer-encoding: chunked" in unsized.lower() and unsized_body == b"[1,2]"
    for head in (bodiless, delete):
        assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()


async def relay_arrived_answer(answer: bytes, receive) -> list[dict]:
    """Send a GET to a server answering `answer`, let the whole answer arrive, then relay
    it with ProxyResponse; the ASGI messages it sent."""
    from shared.config import parse_config
    from shared.proxy import ProxyResponse

    server_config = parse_config({"servers": {"s": {"url": "http://127.0.0.1:1/mcp", "anonymous": True}}}).servers["s"]

    async def serve(n, reader, writer):
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        await answer_ok_until_closed(reader, writer)

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async with RawServer(serve) as server:
        transport = PooledTransport()
        response = await transport.send(server.origin, "GET", b"/mcp", [(b"host", b"b")], None)
        conn = response.stream._conn
        while not conn.complete:  # the whole answer arrives, as small answers do with their head
            await conn.wait()
        await ProxyResponse(response, server_config, keep_alive=15)({"type": "http"}, receive, send)
        await transport.aclose()
    return sent


async def test_a_fully_arrived_body_ends_with_its_last_chunk():
    """ProxyResponse sends a complete small body as one final message, not body + empty."""

    async def receive():
        return {"type": "http.disconnect"}

    sent = await relay_arrived_answer(OK, receive)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1] == {"type": "http.response.body", "body": b"ok", "more_body": False}
    assert (b"content-type", b"text/plain") in sent[0]["headers"]


async def test_a_reader_that_fell_behind_gets_what_arrived_in_one_read_and_the_end_with_it():
    """Events that piled up go down as one message, and the stream's end rides on the last."""
    events = [b"event: message\ndata: {\"n\":%d}\n\n" % i for i in range(3)]
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer += b"".join(b"%x\r\n%b\r\n" % (len(event), event) for event in events) + b"0\r\n\r\n"

    async def receive():
        await asyncio.Event().wait()  # the client stays

    sent = await relay_arrived_answer(answer, receive)
    assert sent[1:] == [{"type": "http.response.body", "body": b"".join(events), "more_body": False}]


class CloseDelimitingShim:
    """A raw HTTP front for a real backend that frames every answer by closing the
    connection (no Content-Length, no chunks), as HTTP/1.0 servers and some proxies do."""

    def __init__(self, backend_url: str, version: bytes) -> None:
        self.backend_url = backend_url
        self.version = version

    async def __call__(self, n, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, body = await read_request(reader)
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ")
        headers = [tuple(line.split(": ", 1)) for line in lines if line]
        keep = [(k, v) for k, v in headers if k.lower() not in ("host", "content-length", "transfer-encoding", "connection")]
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.request(method, self.backend_url + target, headers=keep, content=body)
        out = [b"%b %d %b\r\n" % (self.version, answer.status_code, answer.reason_phrase.encode())]
        for name, value in answer.headers.raw:
            if name.lower() not in (b"content-length", b"transfer-encoding", b"connection"):
                out.append(b"%b: %b\r\n" % (name, value))
        out.append(b"Connection: close\r\n\r\n")
        writer.write(b"".join(out) + answer.content)
        await writer.drain()


@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1"])
async def test_the_mcp_sdk_client_works_through_the_gateway_against_close_delimited_answers(
    start_server, start_gateway, version
):
    from mcp import Client

    from backends.mcp_servers import build_app
    from helpers import anonymous, gateway_config

    backend = start_server(build_app("json"))
    async with RawServer(CloseDelimitingShim(backend.base_url, version)) as shim:
        base = start_gateway(gateway_config({"old": anonymous(shim.url)}))
        for url in (shim.url, f"{base}/mcp/old"):  # direct first: the shim is a valid server
            async with Client(url) as client:
                result = await client.call_tool("add", {"a": 20, "b": 22})
            assert result.structured_content == {"result": 42}, url
    assert shim.connections > 2


async def test_an_upload_error_propagates_as_it_is_and_the_connection_is_not_reused():
    """The client's upload is bounded by its own reader: what that raises (a 408 or a 499
    in the gateway) is the caller's error, not a backend failure, and the half-sent
    request's connection is never used again."""
    from shared.errors import RequestTimeout

    async def stalls_then_gives_up():
        yield b'{"jsonrpc":'
        raise RequestTimeout("client sent no body bytes for 30 s")

    async def serve(n, reader, writer):
        await answer_ok_until_closed(reader, writer)

    async with RawServer(serve) as server:
        transport = PooledTransport()
        origin, host = server.origin, [(b"host", b"b")]
        answer = await transport.send(origin, "POST", b"/mcp", host, None)
        assert await answer.stream.read() == b"ok"
        await answer.stream.aclose()
        with pytest.raises(RequestTimeout):
            await transport.send(origin, "POST", b"/mcp", host, stalls_then_gives_up())
        answer = await transport.send(origin, "GET", b"/mcp", host, None)
        assert await answer.stream.read() == b"ok"
        await answer.stream.aclose()
        await transport.aclose()
    assert server.connections == 2


async def test_the_read_timeout_counts_from_the_end_of_the_upload():
    """A body that takes longer than the read timeout to arrive is not the backend's delay."""
    async def serve(n, reader, writer):
        await answer_ok_until_closed(reader, writer)

    async def slow_body():
        for part in (b"[1,", b"2,", b"3]"):
            await asyncio.sleep(0.2)  # the client's pace, under test: slower than the read timeout in all
            yield part

    async with RawServer(serve) as server:
        transport = PooledTransport()
        answer = await transport.send(server.origin, "POST", b"/mcp", [(b"host", b"b")], slow_body(), read_timeout=0.3)
        assert answer.status == 200
        await answer.stream.aclose()
        await transport.aclose()


async def test_a_backend_that_does_not_answer_in_time_is_a_read_timeout_and_is_not_retried():
    async def serve(n, reader, writer):
        await read_request(reader)
        await asyncio.Event().wait()

    async with RawServer(serve) as server:
        transport = PooledTransport()
        with pytest.raises(httpx.ReadTimeout):
            await transport.send(server.origin, "GET", b"/mcp", [(b"host", b"b")], None, read_timeout=0.2)
        await transport.aclose()
    assert server.connections == 1


async def test_a_body_longer_than_its_content_length_never_reaches_the_backend():
    """Bytes past the declared length would be read by the backend as a request of their
    own (a smuggled one); the framing the transport sends is always the one it keeps."""
    heads: list[bytes] = []

    async def serve(n, reader, writer):
        while True:
            try:
                head, _ = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            heads.append(head)
            writer.write(OK)
            await writer.drain()

    async def smuggling():
        yield b"12345"
        yield b"GET /smuggled HTTP/1.1\r\nHost: b\r\n\r\n"

    async def short():
        yield b"123"

    async with RawServer(serve) as server:
        transport = PooledTransport()
        sized = [(b"host", b"b"), (b"content-length", b"5")]
        for body in (smuggling(), short()):
            with pytest.raises(httpx.LocalProtocolError):
                await asyncio.wait_for(transport.send(server.origin, "POST", b"/mcp", sized, body), 5)
        both = sized + [(b"transfer-encoding", b"chunked")]
        answer = await transport.send(server.origin, "POST", b"/mcp", both, _parts(b"12", b"345"))
        assert answer.status == 200
        await answer.stream.aclose()
        await transport.aclose()
    assert not any(head.startswith(b"GET /smuggled") for head in heads)
    assert b"transfer-encoding" not in heads[-1].lower()  # one framing: the length given


async def _parts(*parts: bytes):
    for part in parts:
        yield part


async def test_waiting_on_the_caller_is_interrupted_by_the_answer_and_leaves_no_cancellation_behind():
    """The head wait awaits `client_gone` in the caller's own task; the answer interrupts
    it, and the task is not left cancelled. A cancellation from elsewhere stays one."""
    release = asyncio.Event()

    async def serve(n, reader, writer):
        while True:
            await read_request(reader)
            await release.wait()
            writer.write(OK)
            await writer.drain()

    never = asyncio.Event()
    calls: list[int] = []

    async def client_gone() -> bool:
        calls.append(1)
        await never.wait()
        return True

    async with RawServer(serve) as server:
        transport = PooledTransport()
        host = [(b"host", b"b")]
        sending = asyncio.ensure_future(transport.send(server.origin, "GET", b"/", host, None, client_gone=client_gone))
        await _until(lambda: calls)  # the head wait is awaiting client_gone
        release.set()
        answer = await sending
        assert answer.status == 200 and asyncio.current_task().cancelling() == 0
        await answer.stream.read()
        await answer.stream.aclose()

        release.clear()
        calls.clear()
        sending = asyncio.ensure_future(transport.send(server.origin, "GET", b"/", host, None, client_gone=client_gone))
        await _until(lambda: calls)
        sending.cancel()  # e.g. the server shutting down
        with pytest.raises(asyncio.CancelledError):
            await sending
        await transport.aclose()


async def test_a_caller_gone_while_waiting_drops_the_connection():
    dropped = asyncio.Event()

    async def serve(n, reader, writer):
        await read_request(reader)
        if not await reader.read(1):  # the client hung up
            dropped.set()

    async def gone_at_once() -> bool:
        return True

    async with RawServer(serve) as server:
        transport = PooledTransport()
        with pytest.raises(RequestAbandoned):
            await transport.send(server.origin, "GET", b"/", [(b"host", b"b")], None, client_gone=gone_at_once)
        await asyncio.wait_for(dropped.wait(), 5)
        await transport.aclose()


async def _until(condition, timeout: float = 5) -> None:
    """Yield to the loop until `condition()` holds, failing after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0)
