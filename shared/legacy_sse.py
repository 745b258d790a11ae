"""The legacy HTTP+SSE transport (protocol 2024-11-05): rewrite the `endpoint` event.

The backend tells the client where to POST its messages; the gateway replaces that
with its own `/mcp/<server>/message` route, keeping the query (the session id), and
remembers the backend's message URL so the POST can go back to it. Events after the
endpoint event pass through as raw bytes.
"""

from __future__ import annotations

import re
from typing import AsyncIterator
from urllib.parse import urljoin, urlsplit, urlunsplit

from .config import ServerConfig
from .errors import BackendUnavailable

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
MAX_ENDPOINT_EVENT = 16 * 1024


class MessageEndpoints:
    """Per-process memory of each legacy backend's message URL, learned from its endpoint event."""

    def __init__(self) -> None:
        self._learned: dict[str, str] = {}

    def upstream_url(self, server: ServerConfig, query: bytes) -> str:
        base = server.message_url or self._learned.get(server.name)
        if base is None:
            raise BackendUnavailable(
                f"message endpoint of server {server.name!r} is not known yet: "
                f"open /mcp/{server.name}/sse first, or set servers.{server.name}.messageUrl"
            )
        return f"{base}?{query.decode('latin-1')}" if query else base

    def rewriter(self, server: ServerConfig):
        async def rewrite(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            pending = b""
            async for chunk in chunks:
                pending += chunk
                while (match := _EVENT_END.search(pending)) is not None:
                    event, pending = pending[: match.end()], pending[match.end() :]
                    rewritten = self._rewrite_event(server, event)
                    yield rewritten
                    if rewritten is not event:
                        yield pending
                        async for rest in chunks:
                            yield rest
                        return
                if len(pending) > MAX_ENDPOINT_EVENT:
                    raise BackendUnavailable(f"backend of server {server.name!r} sent an oversized SSE event")
            if pending:
                yield pending

        return rewrite

    def _rewrite_event(self, server: ServerConfig, event: bytes) -> bytes:
        lines = event.decode("utf-8", errors="replace").splitlines()
        if "event: endpoint" not in lines and "event:endpoint" not in lines:
            return event
        data = "".join(line.partition(":")[2].lstrip(" ") for line in lines if line.startswith("data"))
        target = urlsplit(urljoin(server.url, data.strip()))
        if f"{target.scheme}://{target.netloc}" != server.origin:
            raise BackendUnavailable(f"backend of server {server.name!r} named a message endpoint on another origin")
        self._learned[server.name] = urlunsplit((target.scheme, target.netloc, target.path, "", ""))
        local = f"/mcp/{server.name}/message" + (f"?{target.query}" if target.query else "")
        return f"event: endpoint\ndata: {local}\n\n".encode()
