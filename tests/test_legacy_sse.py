"""The legacy HTTP+SSE transport through /mcp/{server}/sse, against server-everything."""

from __future__ import annotations

import httpx
import pytest
from mcp import Client
from mcp.client.sse import sse_client

import npm_tools
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
    assert event["data"].startswith("/mcp/everything/message?sessionId=")


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


async def test_message_route_before_any_stream_explains_itself(everything_sse, start_gateway):
    base = start_gateway(gateway_config({"everything": {"url": everything_sse.url, "transport": "sse", "anonymous": True}}))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{base}/mcp/everything/message?sessionId=x",
                                     json={"jsonrpc": "2.0", "id": 9, "method": "ping"})
    assert response.status_code == 502
    assert response.json()["id"] == 9
    assert "messageUrl" in response.json()["error"]["message"]
