"""`clientCredentials`: the app's own token (msal client credentials grant).

The app proves itself with a client secret or a certificate held in Key Vault, or
with a managed identity token as a federated client assertion (no secret at all).
"""

from __future__ import annotations

from starlette.types import Scope

from ..config.outbound import ClientCredentialsOutbound
from ..caller import Caller
from .base import Machinery, RawHeaders, bearer
from .cache import Token
from .msal_apps import MsalApps


class ClientCredentialsMode:
    def __init__(self, config: ClientCredentialsOutbound, machinery: Machinery, apps: MsalApps) -> None:
        self.config = config
        self.machinery = machinery
        self.apps = apps
        self.key = ("clientCredentials", config.app.authority, config.app.client_id, config.scope)

    async def headers(self, caller: Caller, request: Scope) -> RawHeaders:
        return bearer(await self.machinery.tokens.get(self.key, self._fetch))

    async def _fetch(self) -> Token:
        scopes = [self.config.scope]
        return await self.apps.acquire(
            self.config.app,
            f"token for {self.config.scope} from {self.config.app.authority} (client credentials)",
            lambda client: client.acquire_token_for_client(scopes),
        )
