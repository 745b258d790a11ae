"""CORS for browser-based MCP clients: preflights answered here, never forwarded."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .config import CorsPolicy
from .errors import MethodNotAllowed, OriginNotAllowed
from .headers import get_header

_ALLOW_METHODS = b"GET, POST, DELETE, OPTIONS"
_EXPOSE_HEADERS = b"Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate, Content-Type"


class CorsHandler:
    def __init__(self, policy: CorsPolicy | None) -> None:
        self.policy = policy
        self._origins = frozenset(o.rstrip("/").lower() for o in policy.allow_origins) if policy else frozenset()

    def _allowed(self, origin: str | None) -> bool:
        return origin is not None and ("*" in self._origins or origin.rstrip("/").lower() in self._origins)

    def preflight(self, request: Request) -> Response:
        if self.policy is None:
            raise MethodNotAllowed("OPTIONS is not allowed: CORS is not configured (gateway.cors)")
        origin = get_header(request.scope, b"origin")
        if not self._allowed(origin):
            raise OriginNotAllowed(f"origin {origin!r} is not in gateway.cors.allowOrigins")
        headers = {
            "access-control-allow-origin": origin or "",
            "access-control-allow-methods": _ALLOW_METHODS.decode(),
            "access-control-max-age": str(self.policy.max_age_seconds),
            "vary": "Origin",
        }
        requested = get_header(request.scope, b"access-control-request-headers")
        if requested:
            headers["access-control-allow-headers"] = requested
        return Response(status_code=204, headers=headers)

    def response_headers(self, request: Request) -> list[tuple[bytes, bytes]]:
        if self.policy is None:
            return []
        origin = get_header(request.scope, b"origin")
        if not self._allowed(origin):
            return []
        return [
            (b"access-control-allow-origin", origin.encode()),  # type: ignore[union-attr]
            (b"access-control-expose-headers", _EXPOSE_HEADERS),
            (b"vary", b"Origin"),
        ]

    def decorate(self, request: Request, raw_headers: list[tuple[bytes, bytes]]) -> None:
        """Error answers need the CORS headers too, or the browser hides them from the client."""
        raw_headers.extend(self.response_headers(request))
