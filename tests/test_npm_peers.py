"""Smoke tests for the npm MCP peers and the helpers in npm_tools.

`@modelcontextprotocol/server-everything` listens on all interfaces, so each
test starts it, talks to it only via 127.0.0.1, and stops it by its pid.
"""

from __future__ import annotations

import subprocess

import httpx

import npm_tools


def test_node22_binary():
    out = subprocess.run(
        [str(npm_tools.node22()), "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert out.startswith("v22."), out


def test_conformance_cmd_uses_node22():
    cmd = npm_tools.conformance_cmd("http://127.0.0.1:1/mcp")
    assert cmd[0] == str(npm_tools.node22())
    assert cmd[1].endswith("@modelcontextprotocol/conformance/dist/index.js")
    assert cmd[2:] == ["server", "--url", "http://127.0.0.1:1/mcp", "--suite", "all"]


def test_server_everything_sse_endpoint_event():
    with npm_tools.start_server_everything("sse") as server:
        pid = server.pid
        event: dict[str, str] = {}
        with httpx.Client(timeout=10, trust_env=False) as client:
            with client.stream("GET", server.url, headers={"Accept": "text/event-stream"}) as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                for line in resp.iter_lines():
                    if not line:
                        if event:
                            break
                        continue
                    key, _, value = line.partition(":")
                    event[key] = value.strip()
        assert event.get("event") == "endpoint"
        # A relative path: the client resolves it against the /sse URL.
        assert event["data"].startswith("/message?sessionId="), event
    assert server.proc.poll() is not None, f"server-everything (pid {pid}) still running"


def test_server_everything_streamable_http_initialize():
    with npm_tools.start_server_everything("streamableHttp") as server:
        with httpx.Client(timeout=10, trust_env=False) as client:
            resp = client.post(
                server.url,
                headers={"Accept": "application/json, text/event-stream", "Content-Type": "application/json"},
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "smoke", "version": "1"},
                    },
                },
            )
        assert resp.status_code == 200, resp.text
        assert resp.headers.get("mcp-session-id")
        assert '"serverInfo"' in resp.text
    assert server.proc.poll() is not None


def test_conformance_fixture_starts_and_stops():
    server = npm_tools.start_conformance_fixture()
    try:
        assert server.url == f"http://127.0.0.1:{server.port}/mcp"
        with httpx.Client(timeout=10, trust_env=False) as client:
            # No session, wrong Host: the DNS-rebinding guard answers before the transport.
            resp = client.post(server.url, headers={"Host": "evil.example.com"}, json={})
        assert resp.status_code == 421
    finally:
        server.stop()
    assert server.proc.poll() is not None
