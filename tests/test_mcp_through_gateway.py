"""The official MCP SDK client, through the gateway, against SDK servers of every kind."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from backends.mcp_servers import BACKEND_KINDS, Rendezvous, build_app
from helpers import anonymous, gateway_config

CLIENT_MODES = ("legacy", "auto")


@pytest.fixture
def through_gateway(start_server, start_gateway):
    def start(kind: str, **app_options) -> str:
        backend = start_server(build_app(kind, **app_options))
        base = start_gateway(gateway_config({"backend": anonymous(f"{backend.base_url}/mcp")}))
        return f"{base}/mcp/backend"

    return start


@pytest.mark.parametrize("mode", CLIENT_MODES)
@pytest.mark.parametrize("kind", BACKEND_KINDS)
async def test_tools_resources_and_prompts_work_through_the_gateway(through_gateway, kind, mode):
    url = through_gateway(kind)
    async with Client(url, mode=mode) as client:
        expected_version = "2025-11-25" if mode == "legacy" else "2026-07-28"
        assert client.protocol_version == expected_version
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"add", "slow_progress", "progress_then_wait"} <= tools
        result = await client.call_tool("add", {"a": 20, "b": 22})
        assert result.structured_content == {"result": 42}
        resource = await client.read_resource("test://greeting")
        assert resource.contents[0].text == "hello through the gateway"
        prompt = await client.get_prompt("summarize", {"topic": "gateways"})
        assert prompt.messages[0].content.text == "Summarize gateways."


@pytest.mark.parametrize("mode", CLIENT_MODES)
@pytest.mark.parametrize("kind", ["stateful-sse", "stateless"])
async def test_progress_reaches_the_client_before_the_result(through_gateway, kind, mode):
    """The tool only finishes normally once the client has seen its first progress
    event, which a buffering proxy makes impossible."""
    rendezvous = Rendezvous()
    url = through_gateway(kind, rendezvous=rendezvous)
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(f"progress:{message}")
        rendezvous.arrived(f"{kind}-{mode}")

    async with Client(url, mode=mode) as client:
        result = await client.call_tool(
            "progress_then_wait", {"key": f"{kind}-{mode}", "timeout": 10}, progress_callback=on_progress
        )
    seen.append("result")
    assert result.structured_content == {"result": "client saw progress first"}
    assert seen == ["progress:first", "result"]


@pytest.mark.parametrize("mode", CLIENT_MODES)
async def test_two_seconds_of_progress_arrive_in_order_ahead_of_the_result(through_gateway, mode):
    url = through_gateway("stateful-sse")
    arrivals: list[tuple[str, float]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        arrivals.append((f"progress {progress:g}/{total:g}", anyio.current_time()))

    async with Client(url, mode=mode) as client:
        result = await client.call_tool("slow_progress", {"seconds": 2, "steps": 8}, progress_callback=on_progress)
        arrivals.append(("result", anyio.current_time()))
    assert result.structured_content == {"result": "done"}
    assert [name for name, _ in arrivals] == [f"progress {i}/8" for i in range(1, 9)] + ["result"]
    first, last, done = arrivals[0][1], arrivals[-2][1], arrivals[-1][1]
    # Streamed, the first notification comes most of the run ahead of the result; a
    # buffering proxy would hand over every notification together with the result.
    assert done - first > 3 * (done - last)
