"""Inbound auth: decide who may call each MCP server.

Per server, any mix of a subscription key and a bearer token (Entra ID or any OIDC
issuer), combined as "all of" or "any of". Success yields a `Caller`; failure is an
Unauthorized (401, with a Bearer challenge pointing at the protected resource
metadata) or Forbidden (403). The credentials themselves are then removed from the
request before it goes anywhere.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Protocol

import httpx
from starlette.requests import Request

from ..config import GatewayConfig, ServerConfig
from ..config.inbound import InboundAuth, Subscription
from ..errors import Forbidden, GatewayError, TokenRejected, Unauthorized
from ..headers import get_header, query_values
from ..caller import ANONYMOUS, Caller
from .keys import SecretSource, SubscriptionKeys
from .metadata import bearer_challenge, issuer_url, protected_resource_metadata, public_base_url, resource_url
from .permissions import check_permissions

if TYPE_CHECKING:
    from .tokens import TokenValidator

__all__ = ["ANONYMOUS", "Caller", "InboundAuthenticator", "OwnTokens"]


class OwnTokens(Protocol):
    """The gateway's own access tokens, for servers with sign-in (implemented by shared.oauth)."""

    def is_ours(self, header: dict[str, Any]) -> bool:
        """Whether an unverified token header names the gateway's algorithm and key."""
        ...

    def verify(self, token: str, *, issuer: str, audience: str) -> Caller:
        """The caller, or TokenRejected."""
        ...


class InboundAuthenticator:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        secrets: SecretSource | None,
        http: Callable[[], httpx.AsyncClient],
    ) -> None:
        self.config = config
        self.own_tokens: OwnTokens | None = None
        """Set by the app when some server has sign-in."""
        self.keys = SubscriptionKeys(config.subscriptions, secrets)
        self._validators = _token_validators(config, http)
        self._dropped_headers: dict[str, frozenset[bytes]] = {}
        self._dropped_query: dict[str, frozenset[str]] = {}
        for server in config.servers.values():
            auth = server.auth
            if auth is None:
                continue
            self._dropped_headers[server.name] = frozenset(
                name.lower().encode() for name in _credential_headers(auth)
            )
            self._dropped_query[server.name] = frozenset(name.lower() for name in _credential_params(auth))

    # -- what the proxy must strip ------------------------------------------------------

    def credential_headers(self, server: ServerConfig) -> frozenset[bytes]:
        return self._dropped_headers.get(server.name, frozenset())

    def credential_query_params(self, server: ServerConfig) -> frozenset[str]:
        """Lower-case names, compared decoded (see headers.query_values)."""
        return self._dropped_query.get(server.name, frozenset())

    # -- the check ------------------------------------------------------------------------

    async def authenticate(self, server: ServerConfig, request: Request) -> Caller:
        auth = server.auth
        if auth is None:
            return ANONYMOUS
        if auth.mode == "all":
            subscription = await self._check_key(server, request) if auth.subscription_key else None
            caller = await self._check_token(server, request) if server.name in self._validators else ANONYMOUS
            return replace(caller, subscription=subscription.name) if subscription else caller
        return await self._any_of(server, request, auth)

    async def _any_of(self, server: ServerConfig, request: Request, auth: InboundAuth) -> Caller:
        failure: GatewayError | None = None
        if auth.subscription_key and _presented_key(request, auth) is not None:
            try:
                return Caller(subscription=(await self._check_key(server, request)).name)
            except GatewayError as error:
                failure = error
        if server.name in self._validators and _presented_token(request, auth) is not None:
            return await self._check_token(server, request)
        if failure is not None:
            raise failure
        if server.name in self._validators:
            # Nothing presented: challenge for a token, so MCP clients can start OAuth.
            return await self._check_token(server, request)
        return await self._check_key(server, request)

    async def _check_key(self, server: ServerConfig, request: Request) -> Subscription:
        auth = server.auth
        assert auth is not None and auth.subscription_key is not None
        presented = _presented_key(request, auth)
        if presented is None:
            where = f"the {auth.subscription_key.header_name} header"
            if auth.subscription_key.query_parameter_name:
                where += f" or the {auth.subscription_key.query_parameter_name} query parameter"
            raise _key_failure(auth, f"missing subscription key: send it in {where}")
        subscription = await self.keys.identify(presented)
        if subscription is None:
            raise _key_failure(auth, f"invalid subscription key in the {auth.subscription_key.header_name} header"
                               + (" or query parameter" if auth.subscription_key.query_parameter_name else ""))
        if not subscription.enabled:
            raise Forbidden(f"subscription '{subscription.name}' is disabled")
        if not subscription.may_call(server.name):
            raise Forbidden(f"subscription '{subscription.name}' may not call server '{server.name}'")
        return subscription

    async def _check_token(self, server: ServerConfig, request: Request) -> Caller:
        auth = server.auth
        assert auth is not None
        validator = self._validators[server.name]
        token = _presented_token(request, auth)
        settings = validator.settings
        rules = validator.rules

        def challenge(error: str | None, description: str | None) -> dict[str, str]:
            base = public_base_url(request, self.config.gateway)  # only failures need it
            return {"www-authenticate": bearer_challenge(base, server, settings, error, description)}

        if token is None:
            error = Unauthorized(rules.failed_message or "missing bearer token", headers=challenge(None, None))
            error.status = rules.failed_status
            raise error
        try:
            caller = self._own_token(server, request, token) or await validator.validate(token)
        except TokenRejected as rejected:
            error = Unauthorized(
                rules.failed_message or rejected.message, headers=challenge("invalid_token", rejected.message)
            )
            error.status = rules.failed_status
            raise error from None
        check_permissions(caller, rules, challenge)
        return caller

    def _own_token(self, server: ServerConfig, request: Request, token: str) -> Caller | None:
        """The caller of a gateway-issued token on a sign-in server; None for any other token.

        The two kinds cannot be mistaken: the gateway signs ES256 under its own key id,
        Entra validation takes RS256 only.
        """
        if self.own_tokens is None or not (server.auth and server.auth.entra and server.auth.entra.sign_in):
            return None
        if len(token) > 16 * 1024:
            return None  # the Entra validator refuses it as too large
        import jwt  # loaded already: a sign-in server takes Entra tokens too

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None  # the Entra validator names what is wrong
        if not self.own_tokens.is_ours(header):
            return None
        base = public_base_url(request, self.config.gateway)
        return self.own_tokens.verify(token, issuer=issuer_url(base, server), audience=resource_url(base, server))

    async def check_entra_token(self, server: ServerConfig, token: str) -> Caller:
        """An Entra access token checked as this server checks the ones clients bring (for sign-in)."""
        validator = self._validators[server.name]
        caller = await validator.validate(token)
        check_permissions(caller, validator.rules, lambda error, description: {})
        return caller

    # -- protected resource metadata -----------------------------------------------------

    def metadata(self, server: ServerConfig, request: Request) -> dict[str, Any] | None:
        validator = self._validators.get(server.name)
        if validator is None:
            return None
        base = public_base_url(request, self.config.gateway)
        return protected_resource_metadata(base, server, validator.settings, validator.jwks.issuer)

    def root_metadata(self, request: Request) -> dict[str, Any] | None:
        """The root form: the gateway as one resource, when all its token servers share issuers."""
        documents = [self.metadata(self.config.servers[name], request) for name in self._validators]
        issuers = {tuple(d["authorization_servers"]) for d in documents if d}
        if len(issuers) != 1:
            return None
        scopes = list(dict.fromkeys(s for d in documents if d for s in d.get("scopes_supported", ())))
        document: dict[str, Any] = {
            "resource": public_base_url(request, self.config.gateway),
            "authorization_servers": list(issuers.pop()),
            "bearer_methods_supported": ["header"],
        }
        if scopes:
            document["scopes_supported"] = scopes
        return document


def _token_validators(config: GatewayConfig, http: Callable[[], httpx.AsyncClient]) -> dict[str, TokenValidator]:
    """A validator per server that takes bearer tokens, one JWKS cache per issuer.

    tokens.py (pyjwt, cryptography) is imported here, only for a config with such a
    server: an MCP client's first connect after a scale-out waits for every import.
    """
    token_settings = {
        server.name: server.auth.entra or server.auth.jwt
        for server in config.servers.values()
        if server.auth is not None and (server.auth.entra or server.auth.jwt) is not None
    }
    if not token_settings:
        return {}
    from .jwks import JwksCache
    from .tokens import TokenValidator

    jwks_by_url: dict[str, JwksCache] = {}
    validators: dict[str, TokenValidator] = {}
    for name, token in token_settings.items():
        jwks = jwks_by_url.setdefault(token.openid_config_url, JwksCache(token.openid_config_url, http))
        validators[name] = TokenValidator(token, jwks)
    return validators


def _key_failure(auth: InboundAuth, message: str) -> GatewayError:
    """A missing or wrong key is not solved by signing in: by default a 403, which MCP
    clients show as it is (a 401 sends them into OAuth discovery, hiding the message)."""
    assert auth.subscription_key is not None
    return Unauthorized(message) if auth.subscription_key.failed_status == 401 else Forbidden(message)


def _credential_headers(auth: InboundAuth) -> list[str]:
    names = []
    if auth.subscription_key:
        names.append(auth.subscription_key.header_name)
    if auth.token_rules:
        names.append(auth.token_rules.header_name)
    return names


def _credential_params(auth: InboundAuth) -> list[str]:
    names = []
    if auth.subscription_key and auth.subscription_key.query_parameter_name:
        names.append(auth.subscription_key.query_parameter_name)
    if auth.token_rules and auth.token_rules.query_parameter_name:
        names.append(auth.token_rules.query_parameter_name)
    return names


def _presented_key(request: Request, auth: InboundAuth) -> str | None:
    settings = auth.subscription_key
    assert settings is not None
    value = get_header(request.scope, settings.header_name.lower().encode())
    if value is None and settings.query_parameter_name:
        value = _first(query_values(request.scope, settings.query_parameter_name))
    return value or None


def _presented_token(request: Request, auth: InboundAuth) -> str | None:
    rules = auth.token_rules
    assert rules is not None
    value = get_header(request.scope, rules.header_name.lower().encode())
    if value is not None:
        scheme, _, credentials = value.strip().partition(" ")
        if scheme.lower() == "bearer":
            return credentials.strip() or None
        return None if rules.header_name.lower() == "authorization" else value.strip() or None
    if rules.query_parameter_name:
        return _first(query_values(request.scope, rules.query_parameter_name)) or None
    return None


def _first(values: list[str]) -> str | None:
    """Repeated credential parameters were refused before auth ran (Gateway.handle)."""
    return values[0] if values else None
