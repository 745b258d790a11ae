"""Prototype: an httpx transport that sends through aiohttp's connection pool.

Only for measurement: would it pay to use aiohttp's client (a second HTTP client
library) under the gateway's httpx-shaped code?
"""

from __future__ import annotations

from typing import AsyncIterator

import aiohttp
import httpx


class _Stream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(str(exc)) from None

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, use_dns_cache=True)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw if k.lower() != b"transfer-encoding"]
        try:
            response = await self._get_session().request(
                request.method,
                str(request.url),
                headers=headers,
                data=request.stream if request.method not in ("GET", "HEAD", "DELETE") else None,
                allow_redirects=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            )
        except aiohttp.ClientConnectionError as exc:
            raise httpx.ConnectError(str(exc)) from None
        return httpx.Response(
            response.status, headers=list(response.raw_headers), stream=_Stream(response), extensions={"http_version": b"HTTP/1.1"}
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
