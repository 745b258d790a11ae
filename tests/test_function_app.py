"""function_app.py as the Functions host sees it: indexed functions, streamed responses."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys

import azure.functions as func
import pytest
from azurefunctions.extensions.base import HttpV2FeatureChecker, RequestTrackerMeta, ResponseTrackerMeta
from starlette.requests import Request

from backends.recorder import EndlessEventStream
from helpers import anonymous, gateway_config

ALL_METHODS = {"GET", "POST", "DELETE", "HEAD", "PATCH", "PUT", "OPTIONS"}


def _import_function_app(monkeypatch, document: dict):
    monkeypatch.setenv("MCP_GATEWAY_CONFIG", json.dumps(document))
    sys.modules.pop("function_app", None)
    return importlib.import_module("function_app")


@pytest.fixture
def function_app(monkeypatch):
    module = _import_function_app(monkeypatch, gateway_config({"a": anonymous("http://127.0.0.1:9/mcp")}))
    yield module
    sys.modules.pop("function_app", None)


def test_one_catch_all_function_takes_every_method_with_anonymous_auth_level(function_app):
    (function,) = function_app.app.get_functions()
    trigger = function.get_trigger()
    assert trigger.route == "{*path}"
    assert {m.value for m in trigger.methods} == ALL_METHODS
    assert trigger.auth_level == func.AuthLevel.ANONYMOUS


def test_every_function_uses_http_stream_types_never_the_buffering_ones(function_app):
    assert HttpV2FeatureChecker.http_v2_enabled()
    for function in function_app.app.get_functions():
        signature = inspect.signature(function.get_user_function())
        (parameter,) = signature.parameters.values()
        assert RequestTrackerMeta.check_type(parameter.annotation), function.get_function_name()
        assert ResponseTrackerMeta.check_type(signature.return_annotation), function.get_function_name()
        assert parameter.annotation is not func.HttpRequest
    assert not isinstance(function_app.app, func.AsgiFunctionApp)


async def test_a_bad_config_imports_and_answers_503_naming_the_field(monkeypatch):
    module = _import_function_app(monkeypatch, {"servers": {"a": {"url": "http://127.0.0.1:9/mcp"}}})
    gateway = module.app.get_functions()[0].get_user_function()
    scope = {"type": "http", "method": "GET", "path": "/healthz", "headers": [(b"host", b"localhost")], "query_string": b""}
    response = await gateway(Request(scope))
    assert response.status_code == 503
    assert "servers.a.anonymous" in json.loads(response.body)["error"]["message"]
    sys.modules.pop("function_app", None)


async def test_the_registered_function_streams_the_backends_sse(start_server, monkeypatch):
    stream = EndlessEventStream(interval=0.02)
    backend = start_server(stream, lifespan="off")
    module = _import_function_app(monkeypatch, gateway_config({"live": anonymous(f"{backend.base_url}/mcp")}))
    mcp = module.app.get_functions()[0].get_user_function()

    leave = asyncio.Event()

    async def receive():
        await leave.wait()
        return {"type": "http.disconnect"}

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "https", "path": "/mcp/live", "raw_path": b"/mcp/live", "query_string": b"",
        "root_path": "", "headers": [(b"host", b"localhost"), (b"accept", b"text/event-stream")],
        "client": ("127.0.0.1", 50000), "server": ("localhost", 443), "path_params": {"server": "live"},
    }
    response = await mcp(Request(scope, receive))
    assert response.status_code == 200

    sent: list[dict] = []

    async def send(message):
        sent.append(message)
        if sum(1 for m in sent if m.get("body")) == 3:
            leave.set()  # the client goes away after three events

    await asyncio.wait_for(response(scope, receive, send), 10)
    assert sent[0]["type"] == "http.response.start"
    assert dict(sent[0]["headers"])[b"content-type"] == b"text/event-stream"
    bodies = [m["body"] for m in sent[1:] if m.get("body")]
    assert len(bodies) >= 3, "events arrived one by one, not as one buffered body"
    assert b"".join(bodies).startswith(b"id: 1\ndata: tick 1\n\nid: 2\ndata: tick 2\n\nid: 3\ndata: tick 3\n\n")
    assert await asyncio.to_thread(stream.closed.wait, 10)
    await module.front_door.gateway.aclose()
    sys.modules.pop("function_app", None)
