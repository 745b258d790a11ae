"""The gateway signing a user in to Entra: its own app registration, its own PKCE.

The authorization URL is built here (it carries no secret); code redemption and refresh
run through msal as a confidential client, with the outbound credential forms (Key Vault
secret, certificate, managed-identity federated assertion) and their retries. `resource`
is never sent: Entra refuses it beside v2 scopes (AADSTS9010010).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ..config.inbound import EntraSignIn

if TYPE_CHECKING:
    from ..outbound.msal_apps import MsalApps

OIDC_SCOPES = ("openid", "profile", "offline_access")


@dataclass(frozen=True)
class EntraTokens:
    access_token: str
    expires_at: float
    refresh_token: str | None


def authorize_endpoint(sign_in: EntraSignIn) -> str:
    return f"{sign_in.app.authority}/oauth2/v2.0/authorize"


def authorize_url(sign_in: EntraSignIn, *, redirect_uri: str, state: str, code_challenge: str) -> str:
    query = {
        "client_id": sign_in.app.client_id,
        "response_type": "code",
        "response_mode": "query",
        "redirect_uri": redirect_uri,
        "scope": " ".join((*sign_in.scopes, *OIDC_SCOPES)),
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    return f"{authorize_endpoint(sign_in)}?{urlencode(query)}"


def _tokens(issued: float, result: dict[str, Any]) -> EntraTokens:
    return EntraTokens(
        access_token=result["access_token"],
        expires_at=issued + float(result.get("expires_in", 3600)),
        refresh_token=result.get("refresh_token"),
    )


class EntraSignInClient:
    def __init__(self, apps: "MsalApps") -> None:
        self.apps = apps

    async def redeem(self, sign_in: EntraSignIn, *, code: str, redirect_uri: str, verifier: str) -> EntraTokens:
        """Entra's authorization code for tokens; CredentialUnavailable when Entra refuses or fails."""
        scopes = list(sign_in.scopes)

        def redeem(client: Any) -> dict[str, Any]:
            # msal steers towards its auth-code-flow helpers, which keep the PKCE verifier and
            # state in a dict of their own; the gateway seals both into Entra's state instead.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return client.acquire_token_by_authorization_code(
                    code, scopes, redirect_uri=redirect_uri, data={"code_verifier": verifier}
                )

        issued, result = await self.apps.result(sign_in.app, f"sign-in code redemption at {sign_in.app.authority}", redeem)
        return _tokens(issued, result)

    async def refresh(self, sign_in: EntraSignIn, refresh_token: str) -> EntraTokens:
        scopes = list(sign_in.scopes)
        issued, result = await self.apps.result(
            sign_in.app,
            f"sign-in refresh at {sign_in.app.authority}",
            lambda client: client.acquire_token_by_refresh_token(refresh_token, scopes),
        )
        tokens = _tokens(issued, result)
        # Entra rotates refresh tokens; keep the old one if an answer carries none.
        return tokens if tokens.refresh_token else EntraTokens(tokens.access_token, tokens.expires_at, refresh_token)
