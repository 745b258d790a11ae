"""The embedded demo: a real MCP SDK server behind the gateway, in one process.

`python -m shared demo` needs nothing but this package: no Azure, no config file.
"""

from __future__ import annotations

import asyncio

from mcp.server.mcpserver import Context, MCPServer

from .inbound.keys import key_digest

DEMO_SERVER_NAME = "demo"


def build_demo_server() -> MCPServer:
    server = MCPServer("gateway-demo", instructions="A demo MCP server behind the MCP gateway.")

    @server.tool()
    def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @server.tool()
    async def countdown(ctx: Context, steps: int = 5, interval_seconds: float = 0.4) -> str:
        """Count down, reporting progress at each step: shows streaming through the gateway."""
        steps = max(1, min(steps, 50))
        for done in range(1, steps + 1):
            await asyncio.sleep(max(0.0, min(interval_seconds, 5.0)))
            await ctx.report_progress(done, steps, f"step {done} of {steps}")
        return f"counted down {steps} steps"

    @server.resource("demo://gateway/about", mime_type="text/markdown")
    def about() -> str:
        """What this demo is."""
        return "# MCP gateway demo\n\nThis resource was read through the gateway."

    @server.prompt()
    def review(code: str) -> str:
        """Ask for a code review."""
        return f"Please review this code:\n\n{code}"

    return server


def demo_config(backend_url: str, key: str) -> dict:
    """Secure by default even in the demo: the server wants a subscription key."""
    return {
        "servers": {
            DEMO_SERVER_NAME: {"url": backend_url, "description": "embedded demo", "auth": {"subscriptionKey": {}}}
        },
        "subscriptions": {"demo": {"servers": [DEMO_SERVER_NAME], "primaryKey": {"sha256": key_digest(key)}}},
    }
