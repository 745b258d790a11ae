"""`forwardAuthorization`: the caller's own Authorization header, passed on.

Discouraged, and off unless a server's config says so: the MCP spec forbids token
passthrough. The backend would see (and could replay) the caller's token, and would
have to accept tokens issued for the gateway rather than for itself, so audience
checks, per-backend consent and the gateway's audit trail are all lost. Prefer
`onBehalfOf`, which gives the backend a token of its own for the same user.
"""

from __future__ import annotations

from starlette.datastructures import Headers

from ..caller import Caller
from .base import RawHeaders

WHY_DISCOURAGED = (
    "forwardAuthorization passes the caller's token to the backend: the MCP spec forbids token passthrough "
    "(the backend sees and could replay the caller's token and must accept tokens not issued for it); "
    "prefer onBehalfOf, managedIdentity or clientCredentials"
)


class ForwardAuthorizationMode:
    async def headers(self, caller: Caller, inbound: Headers) -> RawHeaders:
        value = inbound.get("authorization")
        return [(b"authorization", value.encode("latin-1"))] if value else []
