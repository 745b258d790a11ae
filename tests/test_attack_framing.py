"""Attacks on request framing, against the local server as users run it (`python -m shared serve`).

A front proxy (Front Door, Application Gateway, nginx) and the gateway must agree on where
each request ends; when they do not, bytes one side took for a body become a request to
the other: smuggled past the proxy's checks, and answered onto a connection that the proxy
then hands to another caller. Every case here is written byte for byte on a bare socket.
"""

from __future__ import annotations

import asyncio
from typing import Iterator

import pytest

from backends.recorder import RecordingBackend
from emulators.server import BackgroundServer
from gateway_process import start_gateway_process
from raw_socket import RawConnection, RawResponse
from shared.inbound.keys import key_digest

KEY = "framing-attack-subscription-key-0123456789"


class Setup:
    def __init__(self, base: str, recorder: RecordingBackend) -> None:
        self.base = base
        self.host = base.removeprefix("http://")
        self.recorder = recorder

    def reached(self, tag: str) -> list:
        return [r for r in self.recorder.requests if f"t={tag}".encode() in r.query]

    def head(self, method: str, tag: str, *lines: str, path: str = "/mcp/open") -> bytes:
        text = "\r\n".join([f"{method} {path}?t={tag} HTTP/1.1", f"Host: {self.host}", *lines]) + "\r\n\r\n"
        return text.encode("latin-1")


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    recorder = RecordingBackend()
    backend = BackgroundServer(recorder).start()
    try:
        url = f"{backend.base_url}/mcp"
        gateway = start_gateway_process({
            "servers": {"open": {"url": url, "anonymous": True},
                        "keyed": {"url": url, "auth": {"subscriptionKey": {}}}},
            "subscriptions": {"team": {"servers": ["keyed"], "primaryKey": {"sha256": key_digest(KEY)}}},
        })
        try:
            yield Setup(gateway.url, recorder)
        finally:
            gateway.stop()
    finally:
        backend.stop()


async def _exchange(setup: Setup, data: bytes, *, expect: int = 1, within: float = 8.0) -> tuple[list[RawResponse], bool]:
    """Send `data`, read `expect` answers, then see whether a further one comes or the server closes.

    Returns the answers and whether the server closed the connection; a connection kept open
    is taken as it is once the expected answers came and nothing else did within a short wait.
    """
    conn = await RawConnection.open(setup.base)
    answers: list[RawResponse] = []
    try:
        await conn.send(data)
        async with asyncio.timeout(within):
            while len(answers) < expect:
                try:
                    answers.append(await conn.response())
                except asyncio.IncompleteReadError:
                    return answers, True
        try:
            extra = await asyncio.wait_for(conn.reader.read(1), 0.3)
        except TimeoutError:
            return answers, False
        if extra:
            answers.append(RawResponse(-1, {}, extra))  # an answer nobody asked for
        return answers, not extra
    finally:
        conn.close()


# -- protocol upgrades: the body of a request that asks for one -----------------------------------


async def test_the_body_of_an_upgrade_request_is_never_read_as_another_request(setup):
    """httptools skips the body of a request that asks for an upgrade and, since the gateway
    does not upgrade, parses the bytes that come next as a new request. A proxy that forwards
    the Upgrade header sees them as the body: a request smuggled past it, answered onto a
    connection it may give to someone else."""
    smuggled = setup.head("GET", "smuggled")
    conn = await RawConnection.open(setup.base)
    try:
        await conn.send(setup.head("POST", "carrier", "Connection: Upgrade", "Upgrade: h2c",
                                   "Content-Type: application/json", f"Content-Length: {len(smuggled)}"))
        async with asyncio.timeout(8):
            first = await conn.response()
            await conn.send(smuggled)  # the body, arriving after the head (as it may through a proxy)
            rest = await conn.rest()
    finally:
        conn.close()
    assert setup.reached("smuggled") == [], "the body of the upgrade request was served as a request"
    assert b"HTTP/1.1" not in rest, "a second answer came on the connection"
    assert first.status == 400 and first.headers.get("connection") == "close"
    assert setup.reached("carrier") == []


async def test_an_upgrade_request_with_its_body_in_one_write_is_refused_whole(setup):
    body = b'{"jsonrpc":"2.0","id":9,"method":"ping"}'
    head = setup.head("POST", "one-write", "Connection: keep-alive, Upgrade", "Upgrade: websocket",
                      f"Content-Length: {len(body)}")
    answers, closed = await _exchange(setup, head + body)
    assert [a.status for a in answers] == [400] and closed
    assert setup.reached("one-write") == []


async def test_an_upgrade_request_without_a_body_is_served_as_plain_http(setup):
    """curl --http2 asks a plain-HTTP server for h2c on its GETs: the gateway declines by answering in HTTP/1.1."""
    head = setup.head("GET", "h2c", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
                      "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA", "Accept: application/json")
    answers, _ = await _exchange(setup, head)
    assert [a.status for a in answers] == [200]
    [seen] = setup.reached("h2c")
    assert "upgrade" not in seen.headers and "http2-settings" not in seen.headers


async def test_a_stray_upgrade_header_without_connection_upgrade_keeps_its_body(setup):
    body = b'{"jsonrpc":"2.0","id":4,"method":"ping"}'
    head = setup.head("POST", "stray-upgrade", "Upgrade: h2c", f"Content-Length: {len(body)}")
    answers, _ = await _exchange(setup, head + body)
    assert [a.status for a in answers] == [200]
    [seen] = setup.reached("stray-upgrade")
    assert seen.body == body


# -- trailers are not headers -----------------------------------------------------------------------


def _chunked(head: bytes, body: bytes, trailers: list[str]) -> bytes:
    trailer_block = "".join(f"{line}\r\n" for line in trailers).encode()
    return head + b"%x\r\n%b\r\n0\r\n%b\r\n" % (len(body), body, trailer_block)


async def test_a_credential_in_a_trailer_authenticates_no_one(setup):
    """Trailer fields arrive after the body, past every proxy check on headers: uvicorn appends
    them to the request's header list, so the gateway read them as headers."""
    head = setup.head("POST", "trailer-key", "Transfer-Encoding: chunked", "Content-Type: application/json",
                      path="/mcp/keyed")
    answers, _ = await _exchange(setup, _chunked(head, b"{}", [f"Ocp-Apim-Subscription-Key: {KEY}"]))
    assert [a.status for a in answers] == [403]
    assert setup.reached("trailer-key") == []


async def test_trailer_fields_never_reach_a_backend_as_headers(setup):
    head = setup.head("POST", "trailer-fields", "Transfer-Encoding: chunked", "Content-Type: application/json",
                      f"Ocp-Apim-Subscription-Key: {KEY}", path="/mcp/keyed")
    trailers = ["X-Trailer-Field: smuggled", "X-Forwarded-Host: localhost", "Mcp-Session-Id: someone-elses"]
    answers, _ = await _exchange(setup, _chunked(head, b"{}", trailers))
    assert [a.status for a in answers] == [200]
    [seen] = setup.reached("trailer-fields")
    assert "x-trailer-field" not in seen.headers and "mcp-session-id" not in seen.headers
    assert seen.headers["x-forwarded-host"] == setup.host
    assert seen.body == b"{}"


# -- framings the parser must refuse (never reaching a backend in a shape the client did not mean) ---------


REFUSED_FRAMINGS = {
    "Content-Length with Transfer-Encoding": ["Content-Length: 3", "Transfer-Encoding: chunked"],
    "two Content-Lengths": ["Content-Length: 2", "Content-Length: 2"],
    "a list as Content-Length": ["Content-Length: 2, 2"],
    "a signed Content-Length": ["Content-Length: +2"],
    "an overflowing Content-Length": ["Content-Length: 99999999999999999999999"],
    "chunked twice": ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
    "chunked, then another coding": ["Transfer-Encoding: chunked, gzip"],
    "obs-fold": ["X-Folded: a", " b", "Content-Length: 2"],
    "a space before the colon": ["Transfer-Encoding : chunked", "Content-Length: 2"],
    "a NUL in a value": ["X-Nul: a\x00b", "Content-Length: 2"],
    "a bare CR in a value": ["X-Cr: a\rb", "Content-Length: 2"],
}


@pytest.mark.parametrize("lines", REFUSED_FRAMINGS.values(), ids=REFUSED_FRAMINGS.keys())
async def test_ambiguous_framing_is_a_400_that_closes_the_connection(setup, lines):
    tag = f"framing-{len(setup.recorder.requests)}-{abs(hash(tuple(lines)))}"
    answers, closed = await _exchange(setup, setup.head("POST", tag, *lines) + b"{}")
    assert [a.status for a in answers] == [400] and closed
    assert setup.reached(tag) == []


RAW_REFUSALS = {
    "bare LF line ends": b"POST /mcp/open?t=raw-lf HTTP/1.1\nHost: {host}\nContent-Length: 2\n\n{{}}",
    "a bare LF inside the head": b"POST /mcp/open?t=raw-mixed HTTP/1.1\r\nHost: {host}\nContent-Length: 2\r\n\r\n{{}}",
    "a chunk size that overflows": b"POST /mcp/open?t=raw-overflow HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"ffffffffffffffffff2\r\n{{}}\r\n0\r\n\r\n",
    "a chunk extension hiding a line end": b"POST /mcp/open?t=raw-ext HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
                                           b"2;x=\"a\r\n0\r\n\r\nGET /mcp/open?t=raw-ext-inner HTTP/1.1\"\r\n{{}}\r\n0\r\n\r\n",
    "a chunk size ended by a bare LF": b"POST /mcp/open?t=raw-chunk-lf HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
                                       b"2\n{{}}\r\n0\r\n\r\n",
    "CONNECT": b"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n",
    "an HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "a method that is not a token": b"G@T /mcp/open?t=raw-method HTTP/1.1\r\nHost: {host}\r\n\r\n",
    "a raw non-ASCII path": b"GET /mcp/\xc3\xa9?t=raw-path HTTP/1.1\r\nHost: {host}\r\n\r\n",
}


@pytest.mark.parametrize("template", RAW_REFUSALS.values(), ids=RAW_REFUSALS.keys())
async def test_malformed_requests_are_refused_before_the_app(setup, template):
    before = len(setup.recorder.requests)
    answers, closed = await _exchange(setup, template.replace(b"{host}", setup.host.encode()).replace(b"{{}}", b"{}"))
    assert [a.status for a in answers] == [400] and closed
    assert len(setup.recorder.requests) == before


# -- a request inside a body stays a body ------------------------------------------------------------


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_request_inside_a_body_is_body_and_each_request_gets_one_answer(setup, framing):
    inner = setup.head("GET", f"inner-{framing}")
    if framing == "length":
        data = setup.head("POST", f"outer-{framing}", f"Content-Length: {len(inner)}") + inner
    else:
        data = _chunked(setup.head("POST", f"outer-{framing}", "Transfer-Encoding: chunked"), inner, [])
    answers, _ = await _exchange(setup, data + setup.head("GET", f"next-{framing}"), expect=2)
    assert [a.status for a in answers] == [200, 200]
    [outer] = setup.reached(f"outer-{framing}")
    assert outer.body == inner
    assert setup.reached(f"inner-{framing}") == [] and len(setup.reached(f"next-{framing}")) == 1
