"""Backend credentials: what the gateway adds so the backend knows it is the gateway.

The caller's own credential never reaches a backend unless a server's config says
`forwardAuthorization`; everything else comes from a closed set of modes, one
module each:

    managed_identity     managedIdentity       azure-identity, the app's identity
    client_credentials   clientCredentials     msal, secret / certificate / MI assertion
    on_behalf_of         onBehalfOf            msal OBO, per user
    secret_header        secretHeader          a Key Vault secret in a named header
    forward              forwardAuthorization  the caller's header (discouraged)

Tokens are cached in one TokenCache (refresh ahead of expiry, single flight);
secrets in the gateway's SecretStore. Failures become CredentialUnavailable
(502/503): the client is told which server failed, the logs which step.

A mode's module is imported when the config names the mode (`_mode`): msal and the
Azure SDKs take longer to import than the rest of the gateway, and an MCP client's
first connect after a scale-out waits for every import.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterable, Mapping

from starlette.types import Scope

from ..config import GatewayConfig, SecretRef, ServerConfig
from ..config.outbound import (
    ClientCredentialsOutbound,
    ForwardAuthorizationOutbound,
    ManagedIdentityOutbound,
    OnBehalfOfOutbound,
    SecretHeaderOutbound,
)
from ..errors import ConfigError, CredentialUnavailable
from ..caller import Caller
from ..retry import DEFAULT_POLICY
from .base import Machinery, Mode, RawHeaders
from .cache import TokenCache

if TYPE_CHECKING:
    from ..secrets import SecretStore
    from .msal_apps import MsalApps

logger = logging.getLogger("shared.outbound")


class BackendCredentials:
    """One per gateway process; caches live here.

    `secrets` is the gateway's SecretStore, None when no mode needs one (see `uses_secret_store`).
    """

    def __init__(
        self, config: GatewayConfig, *, secrets: SecretStore | None, environ: Mapping[str, str] | None = None
    ) -> None:
        self.config = config
        self.tokens = TokenCache()
        self.machinery = (
            None
            if secrets is None
            else Machinery(secrets=secrets, identity=secrets.identity, tokens=self.tokens, retry=DEFAULT_POLICY)
        )
        self._msal: MsalApps | None = None
        self.modes: dict[str, Mode] = {
            server.name: self._mode(server)
            for server in config.servers.values()
            if server.outbound is not None
        }

    def _mode(self, server: ServerConfig) -> Mode:
        """The server's mode, its module imported now (once per process: at start-up)."""
        outbound = server.outbound
        if isinstance(outbound, ForwardAuthorizationOutbound):
            from .forward import WHY_DISCOURAGED, ForwardAuthorizationMode

            logger.warning("server %r: %s", server.name, WHY_DISCOURAGED)
            return ForwardAuthorizationMode(checks_tokens=server.auth is not None and server.auth.token_rules is not None)
        if self.machinery is None:
            raise TypeError(f"server {server.name!r}: its outbound mode needs the SecretStore (see uses_secret_store)")
        if isinstance(outbound, ManagedIdentityOutbound):
            from .managed_identity import ManagedIdentityMode

            return ManagedIdentityMode(outbound, self.machinery)
        if isinstance(outbound, ClientCredentialsOutbound):
            from .client_credentials import ClientCredentialsMode

            return ClientCredentialsMode(outbound, self.machinery, self._msal_apps(self.machinery))
        if isinstance(outbound, OnBehalfOfOutbound):
            from .on_behalf_of import OnBehalfOfMode

            return OnBehalfOfMode(outbound, self.machinery, self._msal_apps(self.machinery))
        if isinstance(outbound, SecretHeaderOutbound):
            from .secret_header import SecretHeaderMode

            return SecretHeaderMode(outbound, self.machinery)
        raise TypeError(f"unknown outbound mode {type(outbound).__name__}")  # pragma: no cover - closed set

    def msal_apps(self) -> MsalApps:
        """The shared MsalApps, for sign-in's confidential client."""
        if self.machinery is None:
            raise TypeError("msal needs the SecretStore (see uses_secret_store)")
        return self._msal_apps(self.machinery)

    def _msal_apps(self, machinery: Machinery) -> MsalApps:
        """One MsalApps for every clientCredentials and onBehalfOf server, and sign-in."""
        if self._msal is None:
            from .msal_apps import MsalApps

            self._msal = MsalApps(machinery, self.config.gateway.ca_bundle)
        return self._msal

    def credential_headers(self, server: ServerConfig) -> frozenset[bytes]:
        """Header names this server's mode sets: a caller's own copies must not reach the backend."""
        outbound = server.outbound
        if isinstance(outbound, SecretHeaderOutbound):
            return frozenset({outbound.header.lower().encode("ascii")})
        return frozenset({b"authorization"}) if outbound is not None else frozenset()

    async def headers_for(self, server: ServerConfig, caller: Caller, request: Scope) -> RawHeaders:
        """Headers to add to the backend request (e.g. Authorization: Bearer <backend token>)."""
        mode = self.modes.get(server.name)
        if mode is None:
            return []
        try:
            return await mode.headers(caller, request)
        except CredentialUnavailable as failure:
            # The client learns only that this server's credential failed; the step (which may
            # name a secret or a vault) is for the operator, at DEBUG.
            logger.warning("server %r: the backend credential could not be obtained (%d)", server.name, failure.status)
            logger.debug("server %r: %s", server.name, failure.message)
            raise CredentialUnavailable(
                f"server {server.name!r}: {failure.message}", status=failure.status, headers=failure.headers, server=server.name
            ) from None

    async def startup_check(self) -> None:
        """Fail start-up on what can be known wrong before the first request (missing secrets)."""
        if self.machinery is not None:
            await self.machinery.secrets.check(outbound_secret_refs(self.config))

    async def aclose(self) -> None:
        """Release clients and caches (the SecretStore is closed by its owner)."""
        await self.tokens.aclose()
        if self._msal is not None:
            self._msal.close()


def uses_sign_in(config: GatewayConfig) -> bool:
    """Whether some server offers sign-in (the gateway as authorization server)."""
    return any(s.auth is not None and s.auth.entra is not None and s.auth.entra.sign_in for s in config.servers.values())


def uses_secret_store(config: GatewayConfig) -> bool:
    """Whether Key Vault or the managed identity may be read: every outbound mode but
    forwardAuthorization, and sign-in (its confidential client and its shared store)."""
    return uses_sign_in(config) or any(
        server.outbound is not None and not isinstance(server.outbound, ForwardAuthorizationOutbound)
        for server in config.servers.values()
    )


def outbound_secret_refs(config: GatewayConfig) -> list[SecretRef]:
    """Every Key Vault secret the servers' outbound modes read."""
    refs: list[SecretRef] = []
    for server in config.servers.values():
        outbound = server.outbound
        if isinstance(outbound, SecretHeaderOutbound):
            refs.append(outbound.secret)
        elif isinstance(outbound, (ClientCredentialsOutbound, OnBehalfOfOutbound)):
            secret = getattr(outbound.app.credential, "secret", None)
            if secret is not None:
                refs.append(secret)
    return refs


async def check_secrets(
    config: GatewayConfig, *, environ: Mapping[str, str] | None = None, extra: Iterable[SecretRef] = ()
) -> int:
    """For `python -m shared config check --resolve-secrets`: read every configured secret once.

    Returns how many were read; any that cannot be read is a ConfigError naming it.
    """
    from ..secrets import SecretStore

    refs = [*outbound_secret_refs(config), *extra]
    store = SecretStore(config.gateway, environ=environ)
    try:
        await store.check(refs)
    except CredentialUnavailable as failure:
        raise ConfigError("", failure.message) from None
    finally:
        await store.aclose()
    return len({(r.vault_url, r.name.lower(), r.version) for r in refs})


__all__ = ["BackendCredentials", "check_secrets", "outbound_secret_refs", "uses_secret_store"]
