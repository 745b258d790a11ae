"""`forwardAuthorization`: the caller's own Authorization header, passed on.

Discouraged, and off unless a server's config says so: the MCP spec forbids token
passthrough. The backend would see (and could replay) the caller's token, and would
have to accept tokens issued for the gateway rather than for itself, so audience
checks, per-backend consent and the gateway's audit trail are all lost. Prefer
`onBehalfOf`, which gives the backend a token of its own for the same user.
"""

from __future__ import annotations

from starlette.types import Scope

from ..caller import Caller
from ..headers import get_header
from .base import RawHeaders, bearer

WHY_DISCOURAGED = (
    "forwardAuthorization passes the caller's token to the backend: the MCP spec forbids token passthrough "
    "(the backend sees and could replay the caller's token and must accept tokens not issued for it); "
    "prefer onBehalfOf, managedIdentity or clientCredentials"
)


class ForwardAuthorizationMode:
    def __init__(self, *, checks_tokens: bool) -> None:
        self.checks_tokens = checks_tokens
        """Whether the server validates bearer tokens (entra or jwt)."""

    async def headers(self, caller: Caller, request: Scope) -> RawHeaders:
        if self.checks_tokens:
            # Only the token the gateway validated: a backend behind a token server may rely
            # on that. Not a header the checks never read (the caller got in with a key, or
            # its token came in another header).
            return bearer(caller.token) if caller.token else []
        # A server that checks no token: the caller's header as sent (docs/security.md).
        value = get_header(request, b"authorization")
        return [(b"authorization", value.encode("latin-1"))] if value else []
