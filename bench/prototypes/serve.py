"""Serve the gateway with a prototype upstream client, for comparison by bench/run.py.

    python bench/prototypes/serve.py --config FILE --port N --host H

PROTO_CLIENT picks the client: httpx (as shipped), httpx-pool16 (httpx with a small
keep-alive pool), fast (httpx + bench/prototypes/fast_transport.py), aiohttp (httpx +
aiohttp transport), fast-direct (FastTransport called without
httpx.AsyncClient), httpx2 (the fork the MCP SDK depends on). Nothing in shared/ is
edited: the gateway's UpstreamClient is patched in this process only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402

import shared.proxy  # noqa: E402
from shared.__main__ import main  # noqa: E402

CLIENT = os.environ.get("PROTO_CLIENT", "httpx")


def _make_client():
    if CLIENT == "httpx":
        return None
    common = dict(timeout=httpx.Timeout(None), follow_redirects=False, trust_env=False)
    if CLIENT == "httpx-pool16":
        return httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=16), **common)
    if CLIENT == "fast":
        from fast_transport import FastTransport

        return httpx.AsyncClient(transport=FastTransport(), **common)
    if CLIENT == "aiohttp":
        from aiohttp_transport import AiohttpTransport

        return httpx.AsyncClient(transport=AiohttpTransport(), **common)
    if CLIENT == "httpx2":
        import httpx2

        shared.proxy.httpx = httpx2  # the forwarder's Timeout and exception names
        return httpx2.AsyncClient(
            timeout=httpx2.Timeout(None),
            limits=httpx2.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=30),
            follow_redirects=False,
            trust_env=False,
        )
    raise SystemExit(f"unknown PROTO_CLIENT {CLIENT!r}")


if CLIENT == "fast-direct":
    # Bypass httpx.AsyncClient (URL merge, cookies, auth and redirect flows, hooks):
    # build the httpx.Request and hand it to the transport.
    import asyncio

    import shared.app
    from fast_transport import FastTransport

    _transport = FastTransport()

    async def _open_upstream(client, server, *, method, url, headers, content):
        request = httpx.Request(
            method, url, headers=list(headers), content=content, extensions={"timeout": {"connect": server.timeouts.connect}}
        )
        try:
            async with asyncio.timeout(server.timeouts.connect + server.timeouts.read):
                return await _transport.handle_async_request(request)
        except TimeoutError:
            raise shared.proxy.BackendTimeout(f"backend of server {server.name!r} timed out") from None
        except httpx.TransportError as exc:
            raise shared.proxy.BackendUnavailable(f"backend of server {server.name!r} is unreachable ({type(exc).__name__})") from None

    shared.app.open_upstream = _open_upstream
elif CLIENT != "httpx":
    def _client(self):
        if self._client is None:
            self._client = _make_client()
        return self._client

    shared.proxy.UpstreamClient.client = property(_client)

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
