"""Prototype: the floor for a Python proxy on this stack (uvicorn + uvloop + httptools).

A pure-ASGI forwarder with none of the gateway's checks: route by name, drop
hop-by-hop headers, add X-Forwarded-For, stream the body up and the response down
through the gateway's own transport (shared/transport.py `send`) called directly. What the real
gateway costs above this is the price of its own pipeline.

    python bench/prototypes/minimal_proxy.py --config FILE --port N --host H
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from shared.transport import PooledTransport  # noqa: E402

_DROP = frozenset({b"host", b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"proxy-connection", b"trailer"})


def build(config: dict):
    servers = {}
    for name, server in config["servers"].items():
        url = httpx.URL(server["url"])
        servers[f"/mcp/{name}"] = ((url.scheme, url.host, url.port or 80), url.netloc, url.raw_path)
    transport = PooledTransport()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    await send({"type": message["type"] + ".complete"})
                    if message["type"] == "lifespan.shutdown":
                        return
            return
        target = servers.get(scope["path"])
        if target is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        origin, host, path = target
        headers = [(b"host", host)] + [(k, v) for k, v in scope["headers"] if k not in _DROP]
        headers.append((b"x-forwarded-for", scope["client"][0].encode()))

        async def body():
            more = True
            while more:
                message = await receive()
                more = message.get("more_body", False)
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk

        has_body = scope["method"] not in ("GET", "HEAD", "DELETE")
        response = await transport.send(origin, scope["method"], path, headers, body() if has_body else None)
        try:
            out = [(k.lower(), v) for k, v in response.headers if k.lower() not in _DROP]
            await send({"type": "http.response.start", "status": response.status, "headers": out})
            while (chunk := await response.stream.read()) is not None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.stream.aclose()

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    app = build(json.loads(Path(args.config).read_text()))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, loop="uvloop", http="httptools", lifespan="on")


if __name__ == "__main__":
    main()
