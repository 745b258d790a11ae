"""Every handshake-era protocol version passes through: sessions, GET stream, DELETE."""

from __future__ import annotations

import httpx
import pytest

from backends.mcp_servers import build_app
from helpers import anonymous, gateway_config, sse_events


@pytest.mark.parametrize("version", ["2025-03-26", "2025-06-18", "2025-11-25"])
async def test_session_lifecycle_at_each_version(start_server, start_gateway, version):
    backend = start_server(build_app("stateful-sse"))
    url = start_gateway(gateway_config({"b": anonymous(f"{backend.base_url}/mcp")})) + "/mcp/b"
    accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    async with httpx.AsyncClient(timeout=10) as client:
        init = await client.post(url, headers=accept, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        })
        assert init.status_code == 200
        result = [e async for e in sse_events(init) if e.get("data")]
        assert f'"protocolVersion":"{version}"' in result[0]["data"]
        session = {"mcp-session-id": init.headers["mcp-session-id"], "mcp-protocol-version": version}

        ack = await client.post(url, headers={**accept, **session},
                                json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert ack.status_code == 202

        async with client.stream("GET", url, headers={"accept": "text/event-stream", **session}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")

        deleted = await client.delete(url, headers=session)
        assert deleted.status_code in (200, 204)
        after = await client.post(url, headers={**accept, **session}, json={"jsonrpc": "2.0", "id": 2, "method": "ping"})
        # The backend's own status for a finished session, passed through unchanged.
        assert after.status_code == 404
