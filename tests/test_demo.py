"""`python -m shared demo`: the embedded default works on the first try."""

from __future__ import annotations

import json
import os
import re
import sys

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gateway_process import ROOT
from npm_tools import ServerHandle, _spawn, _wait_log_line


def _start_demo() -> ServerHandle:
    cmd = [sys.executable, "-m", "shared", "demo", "--port", "0"]
    proc, log_path, tmpdir = _spawn(cmd, {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})
    handle = ServerHandle(proc, 0, "", log_path, tmpdir)
    try:
        handle.url = _wait_log_line(proc, log_path, "MCP endpoint: ", 30)
        _wait_log_line(proc, log_path, "Ctrl+C stops both.", 30)
        return handle
    except Exception:
        handle.stop()
        raise


async def test_demo_prints_a_working_endpoint_and_vscode_snippet():
    demo = _start_demo()
    try:
        output = demo.log()
        snippet = json.loads(re.search(r"VS Code \.vscode/mcp\.json:\n(\{.*?\n\})", output, re.S).group(1))
        key = re.search(r"Subscription key \(header Ocp-Apim-Subscription-Key\): (\S+)", output).group(1)
        assert snippet["servers"]["gateway-demo"] == {
            "type": "http", "url": demo.url, "headers": {"Ocp-Apim-Subscription-Key": key}}
        async with httpx.AsyncClient(timeout=10) as plain:
            refused = await plain.post(demo.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 401
        for mode in ("legacy", "auto"):
            http = httpx2.AsyncClient(headers=snippet["servers"]["gateway-demo"]["headers"], timeout=30)
            async with http, Client(streamable_http_client(demo.url, http_client=http), mode=mode) as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                assert {"add", "echo", "countdown"} <= tools
                progress: list[float] = []

                async def on_progress(value, total, message):
                    progress.append(value)

                result = await client.call_tool(
                    "countdown", {"steps": 3, "interval_seconds": 0.05}, progress_callback=on_progress
                )
                assert result.structured_content == {"result": "counted down 3 steps"}
                assert progress == [1, 2, 3]
                about = await client.read_resource("demo://gateway/about")
                assert "through the gateway" in about.contents[0].text
                prompt = await client.get_prompt("review", {"code": "print(1)"})
                assert "print(1)" in prompt.messages[0].content.text
    finally:
        demo.proc.terminate()
        code = demo.proc.wait(15)
        log = demo.log()
        demo.stop()
    # uvicorn shuts down gracefully, then re-raises SIGTERM: a clean stop ends by that signal.
    assert code in (0, -15), log
    assert "Traceback" not in log and "Demo MCP backend" in log
