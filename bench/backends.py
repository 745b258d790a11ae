"""Backends the benchmark drives: the MCP SDK server (stateless, JSON or SSE
responses) and a minimal raw-ASGI JSON-RPC responder that isolates a proxy's cost.

    python bench/backends.py {raw,sdk-json,sdk-sse} --port N

All listen on 127.0.0.1 only, with uvicorn on uvloop + httptools (as the gateway).

Routes of the raw responder:
    POST /mcp   one JSON-RPC result as application/json
    POST /sse   text/event-stream: a progress notification at once, then after
                --sse-gap-ms the result (so a proxy that buffers is visible)
    GET  /mcp   an idle event stream, held open until the client leaves
"""

import argparse
import asyncio
import json

import uvicorn

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
_RESULT = {"content": [{"type": "text", "text": "3"}], "isError": False, "structuredContent": {"result": 3}}


def build_raw(sse_gap: float):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == "/mcp":
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        if method != "POST" or path not in ("/mcp", "/sse"):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":  # wrk ends its run mid-request
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = json.loads(body)
        result = json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "result": _RESULT}).encode()
        if path == "/mcp":
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(result)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": result})
            return
        token = request.get("params", {}).get("_meta", {}).get("progressToken", 0)
        progress = json.dumps(
            {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1}}
        ).encode()
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": b"event: message\ndata: " + progress + b"\n\n", "more_body": True})
        await asyncio.sleep(sse_gap)
        await send({"type": "http.response.body", "body": b"event: message\ndata: " + result + b"\n\n"})

    return app


def build_sdk(json_response: bool, sse_gap: float):
    from mcp.server.mcpserver import Context, MCPServer

    server = MCPServer("bench-backend")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    async def add_with_progress(a: int, b: int, ctx: Context) -> int:
        """`add`, announced by one progress notification: the SDK answers it as an SSE stream."""
        await ctx.report_progress(1, 1)
        return a + b

    @server.tool()
    async def progress_then_result(ctx: Context) -> str:
        """One progress notification at once, the result a little later."""
        await ctx.report_progress(1, 2, "first")
        await asyncio.sleep(sse_gap)
        return "done"

    return server.streamable_http_app(streamable_http_path="/mcp", stateless_http=True, json_response=json_response)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("raw", "sdk-json", "sdk-sse"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sse-gap-ms", type=float, default=20.0)
    args = parser.parse_args()
    gap = args.sse_gap_ms / 1000
    app = build_raw(gap) if args.kind == "raw" else build_sdk(args.kind == "sdk-json", gap)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
