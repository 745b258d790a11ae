"""Prototype: the gateway with aiohttp's client as its upstream transport, for bench/run.py.

    python bench/prototypes/aiohttp_upstream.py --config FILE --port N --host H

The question it answers: would a maintained client (aiohttp 3.14, llhttp underneath,
already installed for azure-core) keep the performance targets in place of
shared/transport.py? Nothing in shared/ is edited: in this process only, the
gateway's `UpstreamClient.transport` becomes an object with the same `send` whose
stream has the same `read(timeout)` / `exhausted` / `abort` / `aclose`, so the
gateway's pipeline and relay run unchanged on top of aiohttp's pool. Errors are not
mapped to the gateway's, and a client leaving before the answer is not watched
(aiohttp offers no hook for it; the gateway's own transport does it in the request's
task): the benchmark's loads have neither, so this flatters aiohttp slightly.

Run it as a variant: `bench/run.py --variant anonymous --variant
bench/prototypes/aiohttp-upstream.json`.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import AsyncIterable, Awaitable, Callable, Sequence

import aiohttp
from multidict import CIMultiDict
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import shared.proxy  # noqa: E402
from shared.__main__ import main  # noqa: E402
from shared.transport import Origin, UpstreamResponse  # noqa: E402


class AiohttpStream:
    """aiohttp's response body behind the gateway's ResponseStream interface."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def read(self, timeout: float | None = None) -> bytes | None:
        async with asyncio.timeout(timeout):
            chunk = await self._response.content.readany()
        return chunk or None

    @property
    def exhausted(self) -> bool:
        return self._response.content.at_eof()

    def abort(self) -> None:
        self._response.close()

    async def aclose(self) -> None:
        self._response.release()


class AiohttpUpstream:
    """`send` as shared/transport.py's PooledTransport offers it, through aiohttp's pool."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                auto_decompress=False,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            )
        return self._session

    async def send(
        self,
        origin: Origin,
        method: str,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: AsyncIterable[bytes] | None,
        *,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        client_gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> UpstreamResponse:
        scheme, host, port = origin
        url = URL(f"{scheme}://{host}:{port}{target.decode('latin-1')}", encoded=True)
        response = await self._get_session().request(
            method,
            url,
            headers=CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers),
            data=body,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(sock_connect=connect_timeout, sock_read=read_timeout),
        )
        return UpstreamResponse(response.status, list(response.raw_headers), AiohttpStream(response))  # type: ignore[arg-type]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


_upstream = AiohttpUpstream()
shared.proxy.UpstreamClient.transport = property(lambda self: _upstream)  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
