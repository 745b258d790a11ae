"""A dropped SSE stream, resumed with Last-Event-ID through the gateway, loses nothing."""

from __future__ import annotations

import json

import httpx

from backends.mcp_servers import MemoryEventStore, build_app
from helpers import anonymous, gateway_config, sse_events

ACCEPT = "application/json, text/event-stream"
VERSION = "2025-11-25"


async def _post(client: httpx.AsyncClient, url: str, message: dict, session: str | None = None) -> httpx.Response:
    headers = {"accept": ACCEPT, "content-type": "application/json", "mcp-protocol-version": VERSION}
    if session:
        headers["mcp-session-id"] = session
    return await client.post(url, json=message, headers=headers)


async def test_resumed_stream_delivers_the_events_missed_while_dropped(start_server, start_gateway):
    store = MemoryEventStore()
    backend = start_server(build_app("stateful-sse", event_store=store))
    url = start_gateway(gateway_config({"b": anonymous(f"{backend.base_url}/mcp")})) + "/mcp/b"

    async with httpx.AsyncClient(timeout=30) as client:
        init = await _post(client, url, {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        })
        assert init.status_code == 200
        session = init.headers["mcp-session-id"]
        initialized = await _post(client, url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        assert initialized.status_code == 202

        call = {
            "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "slow_progress", "arguments": {"seconds": 1.0, "steps": 5}, "_meta": {"progressToken": "p"}},
        }
        headers = {"accept": ACCEPT, "content-type": "application/json",
                   "mcp-protocol-version": VERSION, "mcp-session-id": session}
        first_seen: dict[str, str] | None = None
        async with client.stream("POST", url, json=call, headers=headers) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for event in sse_events(stream):
                if event.get("data") and json.loads(event["data"]).get("method") == "notifications/progress":
                    first_seen = event
                    break  # drop the stream mid-call
        assert first_seen is not None and first_seen.get("id")

        resumed: list[dict] = []
        get_headers = {"accept": "text/event-stream", "mcp-protocol-version": VERSION,
                       "mcp-session-id": session, "last-event-id": first_seen["id"]}
        async with client.stream("GET", url, headers=get_headers) as stream:
            assert stream.status_code == 200
            async for event in sse_events(stream):
                if "data" not in event or not event["data"]:
                    continue
                message = json.loads(event["data"])
                resumed.append(message)
                if message.get("id") == 7:
                    break

    assert store.replays == [first_seen["id"]]
    progress = [m["params"]["progress"] for m in resumed if m.get("method") == "notifications/progress"]
    first_progress = json.loads(first_seen["data"])["params"]["progress"]
    assert progress == [p for p in range(int(first_progress) + 1, 6)]
    assert resumed[-1]["id"] == 7 and resumed[-1]["result"]["structuredContent"] == {"result": "done"}
