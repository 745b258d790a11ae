"""The legacy HTTP+SSE transport through /mcp/{server}/sse, against server-everything."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from mcp import Client
from mcp.client.sse import sse_client

import npm_tools
from backends.legacy_sessions import PathSessionBackend
from helpers import gateway_config, sse_events


@pytest.fixture(scope="module")
def everything_sse():
    handle = npm_tools.start_server_everything("sse")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def legacy_gateway(everything_sse, start_gateway):
    return start_gateway(gateway_config({"everything": {"url": everything_sse.url, "transport": "sse", "anonymous": True}}))


async def test_the_endpoint_event_points_back_through_the_gateway(legacy_gateway):
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", f"{legacy_gateway}/mcp/everything/sse", headers={"accept": "text/event-stream"}) as response:
            assert response.status_code == 200
            async for event in sse_events(response):
                if event.get("event") == "endpoint":
                    break
    assert event["data"].startswith("/mcp/everything/message?endpoint=")
    assert "sessionId=" not in event["data"], "the backend's target travels signed, not in clear"


async def test_sdk_sse_client_uses_server_everything_through_the_gateway(legacy_gateway):
    async with Client(sse_client(f"{legacy_gateway}/mcp/everything/sse"), mode="legacy") as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert "echo" in tools
        result = await client.call_tool("echo", {"message": "through the legacy transport"})
        assert "through the legacy transport" in result.content[0].text
        resources = await client.list_resources()
        assert resources.resources
        read = await client.read_resource(resources.resources[0].uri)
        assert read.contents


async def test_streamable_route_refuses_a_legacy_server_with_a_hint(legacy_gateway):
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{legacy_gateway}/mcp/everything", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert response.status_code == 404
    assert "/mcp/everything/sse" in response.json()["error"]["message"]


async def test_a_message_without_an_endpoint_explains_itself(everything_sse, start_gateway):
    base = start_gateway(gateway_config({"everything": {"url": everything_sse.url, "transport": "sse", "anonymous": True}}))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{base}/mcp/everything/message?sessionId=x",
                                     json={"jsonrpc": "2.0", "id": 9, "method": "ping"})
    assert response.status_code == 400
    assert response.json()["id"] == 9
    assert "endpoint event of /mcp/everything/sse" in response.json()["error"]["message"]


async def open_stream(client: httpx.AsyncClient, url: str):
    """An SSE stream and the message URL of its endpoint event."""
    stream = await client.send(client.build_request("GET", url, headers={"accept": "text/event-stream"}), stream=True)
    events = sse_events(stream)
    async for event in events:
        if event.get("event") == "endpoint":
            return stream, events, event["data"]
    raise AssertionError("no endpoint event")


@pytest.fixture
def path_sessions(start_server, start_gateway):
    """Two legacy servers on one backend that puts the session in the message path."""
    backend = start_server(PathSessionBackend(), lifespan="off")
    servers = {name: {"url": f"{backend.base_url}/sse", "transport": "sse", "anonymous": True} for name in ("one", "two")}
    return start_gateway(gateway_config(servers))


async def test_each_session_keeps_its_own_message_target(path_sessions):
    async with httpx.AsyncClient(base_url=path_sessions, timeout=10) as client:
        first, first_events, first_url = await open_stream(client, "/mcp/one/sse")
        second, second_events, second_url = await open_stream(client, "/mcp/one/sse")
        assert first_url != second_url
        for n, url in enumerate((first_url, second_url, first_url)):
            posted = await client.post(url, json={"jsonrpc": "2.0", "id": n, "method": "ping"})
            assert posted.status_code == 202
        answers = {}
        for name, events, count in (("first", first_events, 2), ("second", second_events, 1)):
            answers[name] = [json.loads((await anext(events))["data"]) for _ in range(count)]
        await first.aclose()
        await second.aclose()
    first_sessions = {a["result"]["session"] for a in answers["first"]}
    second_sessions = {a["result"]["session"] for a in answers["second"]}
    assert [a["id"] for a in answers["first"]] == [0, 2] and [a["id"] for a in answers["second"]] == [1]
    assert len(first_sessions) == 1 and len(second_sessions) == 1 and first_sessions != second_sessions


@pytest.mark.parametrize("tamper", ["flip-target", "other-server", "repeat", "garbage"])
async def test_a_message_endpoint_the_gateway_did_not_hand_out_is_refused(path_sessions, tamper):
    async with httpx.AsyncClient(base_url=path_sessions, timeout=10) as client:
        stream, _, url = await open_stream(client, "/mcp/one/sse")
        token = url.split("endpoint=", 1)[1]
        value, mac = token.split(".")
        if tamper == "flip-target":
            forged = base64.urlsafe_b64encode(b"one\n/admin/delete").rstrip(b"=").decode()
            url = f"/mcp/one/message?endpoint={forged}.{mac}"
        elif tamper == "other-server":
            url = url.replace("/mcp/one/", "/mcp/two/")
        elif tamper == "repeat":
            url = f"{url}&endpoint={token}"
        else:
            url = "/mcp/one/message?endpoint=%00%ff.."
        response = await client.post(url, json={"jsonrpc": "2.0", "id": 3, "method": "ping"})
        await stream.aclose()
    assert response.status_code == 400
    assert response.json()["id"] == 3
