"""The legacy HTTP+SSE transport (protocol 2024-11-05): rewrite the `endpoint` event.

The backend tells the client where to POST its messages; the gateway replaces that
with its own `/mcp/<server>/message` route, keeping the query (the session id), and
remembers the backend's message URL so the POST can go back to it. Events after the
endpoint event pass through as raw bytes.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit, urlunsplit

from .config import ServerConfig
from .errors import BackendUnavailable

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
MAX_ENDPOINT_EVENT = 16 * 1024


class MessageEndpoints:
    """Per-process memory of each legacy backend's message URL, learned from its endpoint event."""

    def __init__(self) -> None:
        self._learned: dict[str, str] = {}

    def upstream_url(self, server: ServerConfig) -> str:
        base = server.message_url or self._learned.get(server.name)
        if base is None:
            raise BackendUnavailable(
                f"message endpoint of server {server.name!r} is not known yet: "
                f"open /mcp/{server.name}/sse first, or set servers.{server.name}.messageUrl"
            )
        return base

    def rewriter(self, server: ServerConfig) -> "EndpointRewriter":
        return EndpointRewriter(self, server)

    def learn(self, server: ServerConfig, url: str) -> None:
        self._learned[server.name] = url


class EndpointRewriter:
    """Holds bytes back only until the endpoint event has gone by, then passes chunks through."""

    def __init__(self, endpoints: MessageEndpoints, server: ServerConfig) -> None:
        self.endpoints = endpoints
        self.server = server
        self.done = False
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return chunk
        self._pending += chunk
        out = []
        while (match := _EVENT_END.search(self._pending)) is not None:
            event, self._pending = self._pending[: match.end()], self._pending[match.end() :]
            rewritten = self._rewrite_event(event)
            out.append(rewritten)
            if rewritten is not event:
                self.done = True
                out.append(self._pending)
                self._pending = b""
                break
        if not self.done and len(self._pending) > MAX_ENDPOINT_EVENT:
            raise BackendUnavailable(f"backend of server {self.server.name!r} sent an oversized SSE event")
        return b"".join(out)

    def _rewrite_event(self, event: bytes) -> bytes:
        server = self.server
        lines = event.decode("utf-8", errors="replace").splitlines()
        if "event: endpoint" not in lines and "event:endpoint" not in lines:
            return event
        data = "".join(line.partition(":")[2].lstrip(" ") for line in lines if line.startswith("data"))
        target = urlsplit(urljoin(server.url, data.strip()))
        if f"{target.scheme}://{target.netloc}" != server.origin:
            raise BackendUnavailable(f"backend of server {server.name!r} named a message endpoint on another origin")
        self.endpoints.learn(server, urlunsplit((target.scheme, target.netloc, target.path, "", "")))
        local = f"/mcp/{server.name}/message" + (f"?{target.query}" if target.query else "")
        return f"event: endpoint\ndata: {local}\n\n".encode()
