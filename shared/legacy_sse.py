"""The legacy HTTP+SSE transport (protocol 2024-11-05): rewrite the `endpoint` event.

The backend tells the client where to POST its messages. The gateway hands the client
its own `/mcp/<server>/message` route instead, carrying the backend's message target
(path and query, i.e. the session) signed: so any gateway instance can route the POST
without remembering anything, each session keeps its own target, and a client cannot
point the gateway (and the backend credential it adds) at another path. Events after
the endpoint event pass through as raw bytes.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urljoin, urlsplit

from .config import ServerConfig
from .errors import BackendUnavailable, BadRequest
from .proxy import UpstreamTarget
from .signing import Signer

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
MAX_ENDPOINT_EVENT = 16 * 1024
ENDPOINT_PARAM = "endpoint"
_PURPOSE = "legacy-sse-message-endpoint"
# What a request target may carry as it is; anything else a backend names is percent-encoded.
_TARGET_SAFE = "/?:@!$&'()*+,;=-._~%"


class MessageEndpoints:
    """Signs the message targets handed to clients, and resolves them when clients POST."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def local_url(self, server: ServerConfig, target: str) -> str:
        """The gateway route a client posts to, for the backend's message `target` (path?query)."""
        token = self.signer.sign(_PURPOSE, f"{server.name}\n{target}".encode())
        return f"/mcp/{server.name}/message?{ENDPOINT_PARAM}={quote(token, safe='')}"

    def upstream_target(self, server: ServerConfig, base: UpstreamTarget, query: bytes) -> UpstreamTarget:
        """Where a client's POST goes: the signed target it was given, else `messageUrl` plus its query."""
        tokens = [v for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if k == ENDPOINT_PARAM]
        if not tokens:
            if server.message_url is None:
                raise BadRequest(
                    f"no message endpoint given: post to the URL of the endpoint event of /mcp/{server.name}/sse"
                )
            return UpstreamTarget.parse(server.message_url).with_query(query)
        if len(tokens) > 1:
            raise BadRequest(f"the {ENDPOINT_PARAM!r} query parameter is repeated")
        signed = self.signer.verify(_PURPOSE, tokens[0])
        name, _, target = (signed or b"").decode("utf-8", errors="replace").partition("\n")
        if signed is None or name != server.name:
            hint = "" if self.signer.shared else " (or it came from another instance: set MCP_GATEWAY_SIGNING_KEY)"
            raise BadRequest(f"the message endpoint was not handed out by this gateway for server {server.name!r}{hint}")
        return UpstreamTarget(base.origin, base.host, target.encode())

    def rewriter(self, server: ServerConfig) -> "EndpointRewriter":
        return EndpointRewriter(self, server)


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
        path = quote((target.path or "/") + (f"?{target.query}" if target.query else ""), safe=_TARGET_SAFE)
        return f"event: endpoint\ndata: {self.endpoints.local_url(server, path)}\n\n".encode()
