"""Azure Functions entry: HTTP-stream triggers in front of the gateway's ASGI core.

Every function takes the extension's FastAPI `Request` and returns a streaming
response: the classic `func.HttpRequest` and `AsgiFunctionApp` buffer whole bodies,
which would break SSE. Auth level is anonymous because the gateway does its own
inbound auth per server (function keys would be a second, weaker key scheme).
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, StreamingResponse

from shared.functions import gateway

# Fail fast: a bad config stops indexing here, and the host logs the field it names.
gateway()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="mcp/{server}", methods=["GET", "POST", "DELETE", "OPTIONS"])
async def mcp(req: Request) -> StreamingResponse:
    """Streamable HTTP (all protocol versions) for one MCP server."""
    return await gateway().handle(req)


@app.route(route="mcp/{server}/sse", methods=["GET", "OPTIONS"])
async def mcp_sse(req: Request) -> StreamingResponse:
    """Legacy HTTP+SSE transport: the event stream."""
    return await gateway().handle(req)


@app.route(route="mcp/{server}/message", methods=["POST", "OPTIONS"])
async def mcp_message(req: Request) -> StreamingResponse:
    """Legacy HTTP+SSE transport: messages posted back by the client."""
    return await gateway().handle(req)


@app.route(route="healthz", methods=["GET"])
async def healthz(req: Request) -> StreamingResponse:
    return await gateway().handle(req)
