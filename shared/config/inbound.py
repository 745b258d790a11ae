"""Inbound auth config: subscriptions, and per-server key / Entra / OIDC token checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from ..errors import ConfigError
from .model import ENTRA_AUTHORITY, SecretRef
from .outbound import EntraApp, app_credential


@dataclass(frozen=True)
class KeyRef:
    """One subscription key: its SHA-256, or the Key Vault secret that holds it."""

    sha256: str | None = None
    secret: SecretRef | None = None


@dataclass(frozen=True)
class Subscription:
    name: str
    servers: tuple[str, ...]
    primary: KeyRef
    secondary: KeyRef | None = None
    enabled: bool = True

    def may_call(self, server: str) -> bool:
        return "*" in self.servers or server in self.servers


@dataclass(frozen=True)
class ClaimRequirement:
    name: str
    values: tuple[str, ...] = ()
    match: Literal["any", "all"] = "any"
    separator: str | None = None


@dataclass(frozen=True)
class TokenRules:
    """What validate-azure-ad-token and validate-jwt have in common."""

    audiences: tuple[str, ...]
    required_claims: tuple[ClaimRequirement, ...] = ()
    required_scopes: tuple[str, ...] = ()
    required_roles: tuple[str, ...] = ()
    header_name: str = "Authorization"
    query_parameter_name: str | None = None
    failed_status: int = 401
    failed_message: str | None = None
    clock_skew_seconds: int = 60


@dataclass(frozen=True)
class EntraSignIn:
    """The gateway as the server's authorization server, signing users in to Entra as `app`."""

    app: EntraApp
    scopes: tuple[str, ...]
    """Entra scopes asked for (openid, profile and offline_access are added)."""
    access_token_lifetime: int = 900
    refresh_token_lifetime: int = 14 * 86400


@dataclass(frozen=True)
class EntraAuth:
    tenant_id: str
    rules: TokenRules
    client_application_ids: tuple[str, ...] = ()
    authority_host: str = ENTRA_AUTHORITY
    v1_issuer: str | None = None
    sign_in: EntraSignIn | None = None

    @property
    def v2_issuer(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant_id}/v2.0"

    @property
    def issuer_v1(self) -> str:
        return self.v1_issuer or f"https://sts.windows.net/{self.tenant_id}/"

    @property
    def openid_config_url(self) -> str:
        return f"{self.v2_issuer}/.well-known/openid-configuration"


@dataclass(frozen=True)
class JwtAuth:
    openid_config_url: str
    rules: TokenRules
    issuers: tuple[str, ...] = ()
    require_expiration_time: bool = True


@dataclass(frozen=True)
class SubscriptionKeyAuth:
    header_name: str = "Ocp-Apim-Subscription-Key"
    query_parameter_name: str | None = "subscription-key"
    failed_status: int = 403
    """A missing or invalid key: 403, because MCP clients take any 401 as the start of an
    OAuth sign-in and never show the message; 401 is API Management's status."""


@dataclass(frozen=True)
class InboundAuth:
    mode: Literal["all", "any"] = "all"
    subscription_key: SubscriptionKeyAuth | None = None
    entra: EntraAuth | None = None
    jwt: JwtAuth | None = None

    @property
    def token_rules(self) -> TokenRules | None:
        if self.entra:
            return self.entra.rules
        return self.jwt.rules if self.jwt else None


def _key(raw: Mapping[str, Any] | None) -> KeyRef | None:
    if raw is None:
        return None
    if "sha256" in raw:
        return KeyRef(sha256=raw["sha256"])
    return KeyRef(secret=SecretRef.parse(raw["keyVaultSecret"]))


def build_subscriptions(raw: Mapping[str, Any], server_names: set[str]) -> dict[str, Subscription]:
    subscriptions = {}
    for name, entry in raw.items():
        for server in entry["servers"]:
            if server != "*" and server not in server_names:
                raise ConfigError(f"subscriptions.{name}.servers", f"no server named {server!r}")
        subscriptions[name] = Subscription(
            name=name,
            servers=tuple(entry["servers"]),
            primary=_key(entry["primaryKey"]),  # type: ignore[arg-type]
            secondary=_key(entry.get("secondaryKey")),
            enabled=entry.get("enabled", True),
        )
    return subscriptions


def _rules(raw: Mapping[str, Any], audiences: tuple[str, ...]) -> TokenRules:
    return TokenRules(
        audiences=audiences,
        required_claims=tuple(
            ClaimRequirement(c["name"], tuple(c.get("values", ())), c.get("match", "any"), c.get("separator"))
            for c in raw.get("requiredClaims", ())
        ),
        required_scopes=tuple(raw.get("requiredScopes", ())),
        required_roles=tuple(raw.get("requiredRoles", ())),
        header_name=raw.get("headerName", "Authorization"),
        query_parameter_name=raw.get("queryParameterName"),
        failed_status=raw.get("failedValidationHttpCode", 401),
        failed_message=raw.get("failedValidationErrorMessage"),
        clock_skew_seconds=raw.get("clockSkewSeconds", 60),
    )


def _entra(raw: Mapping[str, Any], prefix: str) -> EntraAuth:
    audiences = list(raw["audiences"])
    for app_id in raw.get("backendApplicationIds", ()):
        audiences += [app_id, f"api://{app_id}"]
    rules = _rules(raw, tuple(dict.fromkeys(audiences)))
    authority_host = raw.get("authorityHost", ENTRA_AUTHORITY).rstrip("/")
    sign_in = _sign_in(raw["signIn"], raw, rules, authority_host, f"{prefix}.signIn") if "signIn" in raw else None
    client_ids = tuple(raw.get("clientApplicationIds", ()))
    if sign_in is not None and client_ids and sign_in.app.client_id not in client_ids:
        # Tokens the gateway obtains at sign-in are issued to its own app: it is a calling app too.
        client_ids += (sign_in.app.client_id,)
    return EntraAuth(
        tenant_id=raw["tenantId"],
        rules=rules,
        client_application_ids=client_ids,
        authority_host=authority_host,
        v1_issuer=raw.get("v1Issuer"),
        sign_in=sign_in,
    )


def _sign_in(
    raw: Mapping[str, Any], entra: Mapping[str, Any], rules: TokenRules, authority_host: str, prefix: str
) -> EntraSignIn:
    if rules.header_name.lower() != "authorization" or rules.query_parameter_name:
        raise ConfigError(prefix, "sign-in issues bearer tokens for the Authorization header: drop headerName and queryParameterName")
    scopes = tuple(raw.get("scopes", ())) or rules.required_scopes or (f"{rules.audiences[0].rstrip('/')}/.default",)
    resources = {scope.rpartition("/")[0] for scope in scopes}
    if len(resources) != 1 or "" in resources:
        raise ConfigError(f"{prefix}.scopes", "must be scopes of one Entra resource, e.g. 'api://<app id>/mcp.access'")
    app = EntraApp(
        tenant_id=entra["tenantId"],
        client_id=raw["clientId"],
        credential=app_credential(raw, prefix),
        authority_host=authority_host,
    )
    return EntraSignIn(
        app=app,
        scopes=scopes,
        access_token_lifetime=int(raw.get("accessTokenLifetimeSeconds", EntraSignIn.access_token_lifetime)),
        refresh_token_lifetime=int(raw.get("refreshTokenLifetimeSeconds", EntraSignIn.refresh_token_lifetime)),
    )


def _jwt(raw: Mapping[str, Any]) -> JwtAuth:
    return JwtAuth(
        openid_config_url=raw["openidConfigUrl"],
        rules=_rules(raw, tuple(raw["audiences"])),
        issuers=tuple(raw.get("issuers", ())),
        require_expiration_time=raw.get("requireExpirationTime", True),
    )


def build_inbound(raw: Mapping[str, Any] | None, prefix: str) -> InboundAuth | None:
    if raw is None:
        return None
    if not any(k in raw for k in ("subscriptionKey", "entra", "jwt")):
        raise ConfigError(prefix, "declares no method: add subscriptionKey, entra or jwt")
    if "entra" in raw and "jwt" in raw:
        raise ConfigError(prefix, "use entra or jwt, not both (a generic jwt check can cover Entra too)")
    key = raw.get("subscriptionKey")
    return InboundAuth(
        mode=raw.get("mode", "all"),
        subscription_key=SubscriptionKeyAuth(
            header_name=key.get("headerName", "Ocp-Apim-Subscription-Key"),
            query_parameter_name=key.get("queryParameterName", "subscription-key"),
            failed_status=key.get("failedValidationHttpCode", 403),
        )
        if key is not None
        else None,
        entra=_entra(raw["entra"], f"{prefix}.entra") if "entra" in raw else None,
        jwt=_jwt(raw["jwt"]) if "jwt" in raw else None,
    )
