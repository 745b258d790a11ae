"""Limits the app enforces itself, whatever front door hands it the request.

Behind Azure Functions the host parses HTTP; the gateway still checks the head it
is given and bounds the body it reads. These tests drive the registered Functions
entry (function_app.py) and the bare ASGI app with requests no server would build.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest
from starlette.requests import Request

from backends.recorder import RecordingBackend
from helpers import anonymous, gateway_config
from shared.app import create_app
from shared.config import parse_config
from test_function_app import _import_function_app


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]], query: bytes = b"") -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": method, "scheme": "https", "path": path, "raw_path": path.encode(), "query_string": query,
        "root_path": "", "headers": [(b"host", b"localhost"), *headers],
        "client": ("127.0.0.1", 50000), "server": ("localhost", 443), "path_params": {"server": path.split("/")[2]},
    }


async def _no_body():
    return {"type": "http.request", "body": b"", "more_body": False}


@pytest.fixture
async def functions_entry(start_server, monkeypatch):
    """The registered catch-all function, in front of a recording backend, with small limits."""
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    document = gateway_config(
        {"rec": anonymous(f"{backend.base_url}/mcp")},
        maxRequestHeadBytes=4096, maxRequestHeaders=20, bodyIdleTimeoutSeconds=0.5, minBodyBytesPerSecond=1000,
    )
    module = _import_function_app(monkeypatch, document)
    (function,) = module.app.get_functions()
    yield function.get_user_function(), recorder
    await module.front_door.gateway.aclose()
    sys.modules.pop("function_app", None)


async def _call(function, scope, receive=_no_body):
    response = await function(Request(scope, receive))
    return response.status_code, json.loads(response.body)


async def test_an_oversized_header_gets_431_behind_the_functions_host(functions_entry):
    mcp, recorder = functions_entry
    status, body = await _call(mcp, _scope("GET", "/mcp/rec", [(b"x-big", b"a" * 5000)]))
    assert status == 431 and body["error"]["code"] == "headers_too_large"
    assert "4096-byte limit" in body["error"]["message"]
    assert recorder.requests == []


async def test_a_long_query_counts_towards_the_head(functions_entry):
    mcp, recorder = functions_entry
    status, _ = await _call(mcp, _scope("GET", "/mcp/rec", [], query=b"q=" + b"a" * 5000))
    assert status == 431 and recorder.requests == []


async def test_too_many_headers_get_431_behind_the_functions_host(functions_entry):
    mcp, recorder = functions_entry
    status, body = await _call(mcp, _scope("GET", "/mcp/rec", [(b"x-h%d" % i, b"1") for i in range(25)]))
    assert status == 431 and "more than 20 request headers" in body["error"]["message"]
    assert recorder.requests == []


async def test_a_head_within_the_limits_is_served(functions_entry):
    mcp, recorder = functions_entry
    headers = [(b"accept", b"application/json, text/event-stream"), (b"x-fill", b"a" * 3000)]
    response = await mcp(Request(_scope("GET", "/mcp/rec", headers), _no_body))
    assert response.status_code == 200 and len(recorder.requests) == 1
    await response.stream.aclose()


async def test_a_stalled_body_gets_408_behind_the_functions_host(functions_entry):
    mcp, recorder = functions_entry
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b'{"jsonrpc":"2.0","id":12,"method":"tools/list",', "more_body": True}
        await asyncio.Event().wait()  # the client never sends the rest

    started = time.monotonic()
    scope = _scope("POST", "/mcp/rec", [(b"content-type", b"application/json"), (b"content-length", b"500")])
    status, body = await asyncio.wait_for(_call(mcp, scope, receive), 10)
    assert status == 408 and body["id"] == 12
    assert time.monotonic() - started >= 0.45
    assert all(len(r.body) < 500 for r in recorder.requests)


@pytest.mark.parametrize("length", ["\u00b2", "\u0661\u0662", "12 ", "-1", "0x10", "1e3"])
async def test_a_content_length_no_server_would_pass_is_a_400_never_a_500(start_server, length):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    app = create_app(parse_config(gateway_config({"rec": anonymous(f"{backend.base_url}/mcp")})))
    scope = _scope("POST", "/mcp/rec", [(b"content-type", b"application/json"),
                                        (b"content-length", length.encode("latin-1", "replace"))])
    payload = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'

    async def receive():
        return {"type": "http.request", "body": payload, "more_body": False}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    try:
        await app(scope, receive, send)
    finally:
        await app.aclose()
    assert sent[0]["status"] == 400 and b"invalid Content-Length" in sent[1]["body"]
    assert recorder.requests == []  # a framing header the backend cannot read never goes up


async def test_a_front_door_whose_receive_fails_during_the_error_read_still_gets_the_error():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    app = create_app(parse_config(gateway_config({"down": anonymous(f"http://127.0.0.1:{closed_port}/mcp")})))
    calls = 0

    async def receive():
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b'{"jsonrpc":"2.0","id":3,"method":"ping",', "more_body": True}
        raise RuntimeError("the front door's receive broke")

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    try:
        await app(_scope("POST", "/mcp/down", [(b"content-type", b"application/json")]), receive, send)
    finally:
        await app.aclose()
    assert sent[0]["status"] == 502 and json.loads(sent[1]["body"])["id"] == 3
