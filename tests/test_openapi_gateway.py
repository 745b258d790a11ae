"""A REST API through the gateway: the MCP SDK client lists its tools and calls each one.

The API is a real FastAPI app (tests/backends/rest_api.py) on 127.0.0.1, described by
the OpenAPI 3.1 document FastAPI writes for it; the gateway serves it at /mcp/shop.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from backends.rest_api import PNG_1X1, build_pet_shop
from helpers import gateway_config

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_TOOLS = {
    "listPets", "createPet", "getPet", "updatePet", "deletePet", "getFile",
    "failAlways", "slow", "endless", "compressed", "picture", "lyingGetPet", "moved",
}
JSON_POST = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@pytest.fixture
def shop(start_server):
    shop = build_pet_shop()
    server = start_server(shop)
    return shop, server.base_url


def shop_server(tmp_path: Path, base_url: str, document: dict, **openapi) -> dict:
    path = tmp_path / "shop.json"
    path.write_text(json.dumps(document))
    return {
        "anonymous": True,
        "openapi": {"document": str(path), "baseUrl": base_url, "exclude": {"tags": ["admin"]}, **openapi},
        "timeouts": {"connect": 2, "read": 2},
    }


def broken_server(tmp_path: Path, **openapi) -> dict:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(BROKEN))
    return {"anonymous": True, "openapi": {"document": str(path), "baseUrl": "http://127.0.0.1:1", **openapi}}


@pytest.fixture
def gateway(shop, start_gateway, tmp_path):
    app, base_url = shop
    url = start_gateway(gateway_config({"shop": shop_server(tmp_path, base_url, app.openapi(), maxResponseBytes=65536)}))
    return f"{url}/mcp/shop"


async def connect(url: str, mode: str | None = None):
    http = httpx2.AsyncClient(timeout=15)
    client = Client(streamable_http_client(url, http_client=http), **({"mode": mode} if mode else {}))
    return http, client


@pytest.mark.parametrize("mode", [None, "legacy"], ids=["2026-07-28", "2025-11-25"])
async def test_the_sdk_client_lists_every_tool_with_its_schema(gateway, mode):
    http, client = await connect(gateway, mode)
    async with http, client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == EXPECTED_TOOLS  # the admin tag is excluded by the config
    get_pet = tools["getPet"]
    assert get_pet.title == "Find a pet" and get_pet.description == "Find a pet\n\nOne pet by its id."
    assert get_pet.input_schema["properties"]["pet_id"]["type"] == "integer"
    assert get_pet.input_schema["required"] == ["pet_id"]
    assert get_pet.annotations.read_only_hint is True
    assert get_pet.output_schema["$defs"]["Pet"]["properties"]["status"] == {"$ref": "#/$defs/Status", "default": "available"}
    create = tools["createPet"].input_schema
    assert create["properties"]["body"] == {"$ref": "#/$defs/NewPet"}
    assert create["$defs"]["Status"]["enum"] == ["available", "pending", "sold"]
    # the recursive category: a $defs entry that refers to itself
    assert {"$ref": "#/$defs/Category-Input"} in create["$defs"]["Category-Input"]["properties"]["parent"]["anyOf"]
    assert create["$defs"]["NewPet"]["properties"]["tags"]["type"] == "array"
    listing = tools["listPets"].input_schema["properties"]
    assert listing["tags"]["items"] == {"type": "string"} and listing["limit"]["maximum"] == 100
    assert tools["deletePet"].annotations.destructive_hint is True


async def test_each_tool_is_called_and_what_reached_the_api_is_what_the_arguments_said(gateway, shop):
    app, _ = shop
    http, client = await connect(gateway)
    async with http, client:
        listed = await client.call_tool("listPets", {"status": "available", "tags": ["dog", "good boy"], "limit": 5})
        assert not listed.is_error and [p["name"] for p in json.loads(listed.content[0].text)] == ["Rex"]
        assert app.seen[-1].query == b"status=available&tags=dog&tags=good%20boy&limit=5"
        assert (b"accept", b"application/json") in app.seen[-1].headers

        created = await client.call_tool("createPet", {"body": {"name": "Tom", "status": "pending", "tags": ["cat"],
                                                                 "category": {"name": "cats", "parent": {"name": "pets"}}}})
        assert not created.is_error and created.structured_content["id"] == 2
        assert created.structured_content["category"]["parent"] == {"name": "pets", "parent": None}

        found = await client.call_tool("getPet", {"pet_id": 2, "x-trace": "abc"})
        assert found.structured_content["name"] == "Tom" and json.loads(found.content[0].text) == found.structured_content
        assert (b"x-trace", b"abc") in app.seen[-1].headers

        updated = await client.call_tool("updatePet", {"pet_id": 2, "body": {"name": "Thomas"}})
        assert updated.structured_content["name"] == "Thomas" and updated.structured_content["status"] == "available"

        deleted = await client.call_tool("deletePet", {"pet_id": 2})
        assert not deleted.is_error and "204" in deleted.content[0].text

        gone = await client.call_tool("getPet", {"pet_id": 2})
        assert gone.is_error and "HTTP 404 Not Found" in gone.content[0].text and "no pet 2" in gone.content[0].text

        named = await client.call_tool("getFile", {"name": "a b?c#d"})
        assert json.loads(named.content[0].text) == {"name": "a b?c#d", "raw_path": "/files/a%20b%3Fc%23d", "query": ""}

        failed = await client.call_tool("failAlways", {})
        text = failed.content[0].text
        assert failed.is_error and text.startswith("The API answered HTTP 503 Service Unavailable.")
        assert "database on fire" in text and len(text) < 4300 and text.endswith("[... the rest of the body is left out]")

        picture = await client.call_tool("picture", {})
        assert isinstance(picture.content[0], types.ImageContent) and picture.content[0].mime_type == "image/png"
        assert picture.content[0].data == __import__("base64").b64encode(PNG_1X1).decode()
    # what the API saw carried no MCP or gateway-inbound headers
    for seen in app.seen:
        names = {k for k, _ in seen.headers}
        assert not names & {b"mcp-protocol-version", b"mcp-session-id", b"authorization", b"cookie"}


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"pet_id": "one"}, "$.pet_id: 'one' is not of type 'integer'"),
        ({}, "'pet_id' is a required property"),
        ({"pet_id": 1, "petid": 2}, "Additional properties are not allowed ('petid' was unexpected)"),
        ({"pet_id": True}, "$.pet_id: True is not of type 'integer'"),
        ({"pet_id": 1, "x-trace": "a\r\nx-injected: 1"}, "cannot hold control characters"),
    ],
)
async def test_invalid_arguments_are_an_error_result_and_never_reach_the_api(gateway, shop, arguments, problem):
    app, _ = shop
    http, client = await connect(gateway)
    async with http, client:
        before = len(app.seen)
        result = await client.call_tool("getPet", arguments)
    assert result.is_error and result.content[0].text.startswith("Invalid arguments") and problem in result.content[0].text
    assert len(app.seen) == before


async def test_a_header_the_config_sets_is_not_an_argument_and_reaches_the_api(start_gateway, shop, tmp_path):
    app, base_url = shop
    server = shop_server(tmp_path, base_url, app.openapi())
    server["headers"] = {"X-Trace": "from-config"}
    url = start_gateway(gateway_config({"shop": server})) + "/mcp/shop"
    http, client = await connect(url)
    async with http, client:
        tool = next(t for t in (await client.list_tools()).tools if t.name == "getPet")
        assert set(tool.input_schema["properties"]) == {"pet_id"}
        refused = await client.call_tool("getPet", {"pet_id": 1, "x-trace": "from-caller"})
        assert refused.is_error and "'x-trace' was unexpected" in refused.content[0].text
        assert not (await client.call_tool("getPet", {"pet_id": 1})).is_error
    assert [v for k, v in app.seen[-1].headers if k == b"x-trace"] == [b"from-config"]


async def test_an_unknown_tool_is_a_json_rpc_error(gateway):
    http, client = await connect(gateway)
    async with http, client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("resetEverything", {})  # excluded by the config: as if it did not exist
    assert caught.value.code == types.INVALID_PARAMS and "Unknown tool: resetEverything" in str(caught.value)


async def test_a_slow_api_is_an_error_result_naming_the_limit_and_the_api_sees_the_request_dropped(
    start_gateway, shop, tmp_path
):
    app, base_url = shop
    server = shop_server(tmp_path, base_url, app.openapi())
    server["timeouts"]["read"] = 0.5
    url = start_gateway(gateway_config({"shop": server})) + "/mcp/shop"
    http, client = await connect(url)
    async with http, client:
        started = time.monotonic()
        result = await client.call_tool("slow", {})
    assert result.is_error and result.content[0].text == "the API of server 'shop' did not answer within 0.5 s"
    assert time.monotonic() - started < 10
    await _until(lambda: "slow" in app.disconnects)


async def test_an_endless_body_is_cut_at_the_limit(gateway, shop):
    app, _ = shop
    http, client = await connect(gateway)
    async with http, client:
        result = await client.call_tool("endless", {})
    assert result.is_error and "over the 65536-byte limit" in result.content[0].text
    await _until(lambda: "endless" in app.disconnects)


async def test_an_unasked_compressed_body_is_an_error_result(gateway):
    http, client = await connect(gateway)
    async with http, client:
        result = await client.call_tool("compressed", {})
    assert result.is_error and "gzip-encoded body, unasked" in result.content[0].text


async def test_a_success_that_breaks_its_documented_schema_is_an_error_result_that_still_shows_it(gateway):
    http, client = await connect(gateway)
    async with http, client:
        tool = next(t for t in (await client.list_tools()).tools if t.name == "lyingGetPet")
        assert tool.output_schema is not None
        result = await client.call_tool("lyingGetPet", {"pet_id": 1})
    text = result.content[0].text
    assert result.is_error and result.structured_content is None
    assert "does not match the operation's documented schema ($.id: 'not a number' is not of type 'integer')" in text
    assert text.endswith('{"id":"not a number","name":"Rex"}')


async def test_a_redirect_is_not_followed(gateway, shop):
    app, _ = shop
    http, client = await connect(gateway)
    async with http, client:
        result = await client.call_tool("moved", {})
    assert result.is_error and result.content[0].text.startswith("The API answered HTTP 302 Found.")
    assert app.seen[-1].raw_path == b"/moved"


async def test_an_unreachable_api_is_an_error_result(start_gateway, shop, tmp_path):
    app, _ = shop
    closed = f"http://127.0.0.1:{_closed_port()}"
    url = start_gateway(gateway_config({"shop": shop_server(tmp_path, closed, app.openapi())})) + "/mcp/shop"
    http, client = await connect(url)
    async with http, client:
        result = await client.call_tool("getPet", {"pet_id": 1})
    assert result.is_error and result.content[0].text == "the API of server 'shop' is unreachable (ConnectError)"


async def test_a_client_that_leaves_cancels_the_rest_request(start_gateway, shop, tmp_path):
    app, base_url = shop
    server = shop_server(tmp_path, base_url, app.openapi())
    server["timeouts"]["read"] = 60
    url = start_gateway(gateway_config({"shop": server})) + "/mcp/shop"
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "slow", "arguments": {}}}
    async with httpx.AsyncClient() as client:
        request = asyncio.ensure_future(client.post(url, json=call, headers={**JSON_POST, "mcp-protocol-version": "2025-11-25"}))
        await _until(lambda: any(s.raw_path == b"/slow" for s in app.seen))
        request.cancel()
    await _until(lambda: "slow" in app.disconnects)


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
async def test_the_handshake_versions_over_plain_http(gateway, version):
    async with httpx.AsyncClient(timeout=10) as client:
        init = await client.post(gateway, headers=JSON_POST, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        })
        assert init.status_code == 200 and init.json()["result"]["protocolVersion"] == version
        assert "mcp-session-id" not in init.headers  # stateless: any instance answers the next request
        headers = {**JSON_POST, "mcp-protocol-version": version}
        called = await client.post(gateway, headers=headers, json={
            "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "getPet", "arguments": {"pet_id": 1}},
        })
        assert called.status_code == 200
        result = called.json()["result"]
        assert result["structuredContent"]["name"] == "Rex" and result["isError"] is False


async def test_malformed_requests_are_client_errors_never_500(gateway):
    async with httpx.AsyncClient(timeout=10) as client:
        for body in (b"{not json", b"[]", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 5}}'):
            answer = await client.post(gateway, headers={**JSON_POST, "mcp-protocol-version": "2025-11-25"}, content=body)
            assert 200 <= answer.status_code < 500, (body, answer.status_code, answer.text)
        assert (await client.get(gateway, headers={"accept": "text/event-stream"})).status_code == 405
        assert (await client.delete(gateway)).status_code == 405


async def test_the_document_can_come_from_a_url(start_gateway, shop):
    _, base_url = shop
    entry = {"anonymous": True, "openapi": {"document": f"{base_url}/openapi.json", "baseUrl": base_url,
                                             "include": {"operationIds": ["getPet"]}}}
    url = start_gateway(gateway_config({"shop": entry})) + "/mcp/shop"
    http, client = await connect(url)
    async with http, client:
        assert [t.name for t in (await client.list_tools()).tools] == ["getPet"]
        assert (await client.call_tool("getPet", {"pet_id": 1})).structured_content["name"] == "Rex"


BROKEN = {
    "openapi": "3.0.3", "info": {"title": "t", "version": "1"},
    "paths": {"/a/{id}": {"get": {"operationId": "getA", "responses": {"200": {"description": "ok"}}}},
              "/b": {"get": {"operationId": "getB", "responses": {"200": {"description": "ok"}}}}},
}
BROKEN_REASON = (
    "servers.shop.openapi.document: 1 operation(s) cannot be served as tools (leave them out with openapi.exclude): "
    "operation 'getA' (GET /a/{id}): path parameter(s) id not declared"
)


async def test_a_document_that_cannot_become_tools_fails_the_start_and_the_server_answers_503(tmp_path):
    from shared.app import create_app
    from shared.config import parse_config
    from shared.errors import ConfigError

    app = create_app(parse_config(gateway_config({"shop": broken_server(tmp_path)})), environ={})
    with pytest.raises(ConfigError) as caught:
        await app.startup()
    assert str(caught.value) == BROKEN_REASON
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        assert (await client.get("/healthz")).status_code == 503
        answer = await client.post("/mcp/shop", headers=JSON_POST, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
    assert answer.status_code == 503 and answer.json()["id"] == 3
    assert "getA" not in answer.text and "could not be started" in answer.text
    await app.aclose()


def test_config_check_and_serve_name_the_operation(tmp_path):
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps(gateway_config({"shop": broken_server(tmp_path)})))
    check = subprocess.run([sys.executable, "-m", "shared", "config", "check", str(config)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert check.returncode == 2 and BROKEN_REASON in check.stderr
    serve = subprocess.run([sys.executable, "-m", "shared", "serve", "--config", str(config), "--port", "0"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert serve.returncode != 0 and BROKEN_REASON in serve.stderr


def test_a_gateway_without_openapi_servers_never_loads_the_openapi_code():
    code = (
        "import sys; from shared.app import create_app; from shared.config import parse_config;"
        "create_app(parse_config({'servers': {'a': {'url': 'http://127.0.0.1:1/mcp', 'anonymous': True}}}));"
        "print(sorted(m for m in sys.modules if m.startswith('shared.openapi') or m == 'yaml'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


async def _until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)  # poll interval, not synchronisation


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_served_the_same_under_the_azure_functions_worker(shop, tmp_path):
    from gateway_process import start_functions_host

    app, base_url = shop
    host = start_functions_host(gateway_config({"shop": shop_server(tmp_path, base_url, app.openapi())}))
    try:
        for mode in (None, "legacy"):
            http, client = await connect(f"{host.url}/mcp/shop", mode)
            async with http, client:
                assert set(t.name for t in (await client.list_tools()).tools) == EXPECTED_TOOLS
                result = await client.call_tool("getPet", {"pet_id": 1})
            assert result.structured_content["name"] == "Rex"
    finally:
        host.stop()


def test_config_check_counts_the_tools_of_a_file_document(tmp_path, capsys):
    from shared.__main__ import main

    config = tmp_path / "gateway.json"
    entry = broken_server(tmp_path, exclude={"operationIds": ["getA"]})
    url_entry = {"anonymous": True, "openapi": {"document": "https://specs.example/api.json", "baseUrl": "https://api.example"}}
    config.write_text(json.dumps(gateway_config({"shop": entry, "remote": url_entry})))
    assert main(["config", "check", str(config)]) == 0
    out = capsys.readouterr().out
    assert "server 'shop': 1 tool(s) from its OpenAPI document" in out
    assert "server 'remote': its OpenAPI document is read from its URL at start-up" in out
