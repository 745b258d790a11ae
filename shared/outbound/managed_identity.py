"""`managedIdentity`: a token from the app's system- or user-assigned identity (azure-identity)."""

from __future__ import annotations

from starlette.types import Scope

from ..config.outbound import ManagedIdentityOutbound
from ..caller import Caller
from ..retry import with_retries
from .base import Machinery, RawHeaders, bearer
from .cache import Token


class ManagedIdentityMode:
    def __init__(self, config: ManagedIdentityOutbound, machinery: Machinery) -> None:
        self.config = config
        self.machinery = machinery
        identity = config.client_id or machinery.identity.default_client_id or "system-assigned"
        self.key = ("managedIdentity", identity, config.scope)

    async def headers(self, caller: Caller, request: Scope) -> RawHeaders:
        return bearer(await self.machinery.tokens.get(self.key, self._fetch))

    async def _fetch(self) -> Token:
        identity, scope = self.machinery.identity, self.config.scope
        info = await with_retries(
            f"managed identity token for {scope}",
            lambda: identity.token(scope, client_id=self.config.client_id),
            self.machinery.retry,
        )
        return Token(info.token, float(info.expires_on), float(info.refresh_on) if info.refresh_on else None)
