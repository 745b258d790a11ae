"""Real MCP backends for the gateway's tests (official SDK servers, and small ASGI recorders)."""
