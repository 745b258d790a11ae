"""`onBehalfOf`: the caller's validated Entra token exchanged for a backend token (msal OBO).

The backend gets a token issued for it, for the same user: never the caller's own
token. Results are cached per user and scope here (msal keeps no OBO cache the
gateway could rely on), refreshed ahead of expiry like every other token.
"""

from __future__ import annotations

from starlette.types import Scope

from ..config.outbound import OnBehalfOfOutbound
from ..errors import Unauthorized
from ..caller import Caller
from .base import Machinery, RawHeaders, bearer
from .cache import Token
from .msal_apps import MsalApps


class OnBehalfOfMode:
    def __init__(self, config: OnBehalfOfOutbound, machinery: Machinery, apps: MsalApps) -> None:
        self.config = config
        self.machinery = machinery
        self.apps = apps
        self.scope = " ".join(config.scopes)

    async def headers(self, caller: Caller, request: Scope) -> RawHeaders:
        user_token, user = caller.token, caller.user_key
        if not user_token or not user:
            # The config check requires Entra inbound auth, so this is a caller without a user token.
            raise Unauthorized("this server needs a user's Entra token (it calls the backend on the user's behalf)")
        key = ("onBehalfOf", self.config.app.authority, self.config.app.client_id, self.scope, user)
        return bearer(await self.machinery.tokens.get(key, lambda: self._fetch(user_token)))

    async def _fetch(self, user_token: str) -> Token:
        scopes = list(self.config.scopes)
        return await self.apps.acquire(
            self.config.app,
            f"token for {self.scope} from {self.config.app.authority} (on-behalf-of)",
            lambda client: client.acquire_token_on_behalf_of(user_token, scopes),
        )
