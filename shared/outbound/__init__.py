"""Backend credentials: what the gateway adds so the backend knows it is the gateway.

The caller's own credential never reaches a backend unless a server's config says
`forwardAuthorization`; everything else comes from a closed set of modes.
"""

from __future__ import annotations

from typing import Mapping

from starlette.datastructures import Headers

from ..config import GatewayConfig, ServerConfig
from ..inbound.caller import Caller


class BackendCredentials:
    """One per gateway process; caches live here."""

    def __init__(self, config: GatewayConfig, *, environ: Mapping[str, str] | None = None) -> None:
        self.config = config

    async def headers_for(self, server: ServerConfig, caller: Caller, inbound: Headers) -> list[tuple[bytes, bytes]]:
        """Headers to add to the backend request (e.g. Authorization: Bearer <backend token>)."""
        return []

    async def startup_check(self) -> None:
        """Fail start-up on what can be known wrong before the first request (missing secrets)."""

    async def aclose(self) -> None:
        """Release clients and credentials."""
