"""Outbound (backend credential) config: one mode per server, from a closed set.

    "outbound": {"managedIdentity":      {"scope": "api://backend/.default", "clientId": "..."}}
    "outbound": {"clientCredentials":    {"tenantId", "clientId", "scope", <app credential>}}
    "outbound": {"onBehalfOf":           {"tenantId", "clientId", "scope", <app credential>}}
    "outbound": {"secretHeader":         {"name": "x-api-key", "keyVaultSecret": {...}, "prefix": ""}}
    "outbound": {"forwardAuthorization": true}

<app credential> is exactly one of "clientSecret": {"keyVaultSecret": ...},
"certificate": {"keyVaultSecret": ...} (PEM with the private key and the
certificate) or "managedIdentityAssertion": {"audience", "clientId"} (a federated
credential: the app trusts the gateway's managed identity; no secret at all).

The config holds references only; values are read from Key Vault at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union

from ..errors import ConfigError
from .model import ENTRA_AUTHORITY, HOP_BY_HOP, SecretRef

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
_RESERVED_HEADERS = HOP_BY_HOP | {"host", "content-length", "content-type", "cookie", "mcp-session-id", "mcp-protocol-version"}


@dataclass(frozen=True)
class ClientSecret:
    """The app's client secret, held in Key Vault."""

    secret: SecretRef


@dataclass(frozen=True)
class Certificate:
    """The app's certificate: a Key Vault secret holding PEM (RSA private key + certificate)."""

    secret: SecretRef


@dataclass(frozen=True)
class ManagedIdentityAssertion:
    """A managed identity token (for `audience`) signs the app in: a federated identity credential."""

    audience: str = TOKEN_EXCHANGE_AUDIENCE
    client_id: str | None = None
    """User-assigned identity to use; default: the gateway's (AZURE_CLIENT_ID, else system-assigned)."""


AppCredential = Union[ClientSecret, Certificate, ManagedIdentityAssertion]


@dataclass(frozen=True)
class EntraApp:
    """A confidential client (app registration) the gateway signs in as, with msal."""

    tenant_id: str
    client_id: str
    credential: AppCredential
    authority_host: str = ENTRA_AUTHORITY

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}"


@dataclass(frozen=True)
class ManagedIdentityOutbound:
    """A token for `scope` from the app's managed identity, as `Authorization: Bearer`."""

    scope: str
    client_id: str | None = None


@dataclass(frozen=True)
class ClientCredentialsOutbound:
    """The app's own token for `scope` (client credentials grant)."""

    app: EntraApp
    scope: str


@dataclass(frozen=True)
class OnBehalfOfOutbound:
    """The caller's validated Entra token exchanged for one for `scopes` (cached per user)."""

    app: EntraApp
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class SecretHeaderOutbound:
    """A Key Vault secret sent in a named header, after an optional prefix ('Bearer ')."""

    header: str
    secret: SecretRef
    prefix: str = ""


@dataclass(frozen=True)
class ForwardAuthorizationOutbound:
    """The caller's own Authorization header, passed on (discouraged: see docs/outbound.md)."""


OutboundConfig = Union[
    ManagedIdentityOutbound,
    ClientCredentialsOutbound,
    OnBehalfOfOutbound,
    SecretHeaderOutbound,
    ForwardAuthorizationOutbound,
]
MODES = ("managedIdentity", "clientCredentials", "onBehalfOf", "secretHeader", "forwardAuthorization")


def _default_scope(value: str, field: str) -> str:
    resource, _, name = value.rpartition("/")
    if name != ".default" or not resource or " " in value:
        raise ConfigError(field, f"{value!r} must be one resource's '/.default' scope, e.g. 'api://backend/.default'")
    return value


def app_credential(raw: Mapping[str, Any], prefix: str) -> AppCredential:
    given = [k for k in ("clientSecret", "certificate", "managedIdentityAssertion") if k in raw]
    if len(given) != 1:
        raise ConfigError(prefix, "give exactly one of clientSecret, certificate or managedIdentityAssertion")
    if "clientSecret" in raw:
        return ClientSecret(SecretRef.parse(raw["clientSecret"]["keyVaultSecret"]))
    if "certificate" in raw:
        return Certificate(SecretRef.parse(raw["certificate"]["keyVaultSecret"]))
    mia = raw["managedIdentityAssertion"]
    return ManagedIdentityAssertion(audience=mia.get("audience", TOKEN_EXCHANGE_AUDIENCE), client_id=mia.get("clientId"))


def _app(raw: Mapping[str, Any], prefix: str) -> EntraApp:
    return EntraApp(
        tenant_id=raw["tenantId"],
        client_id=raw["clientId"],
        credential=app_credential(raw, prefix),
        authority_host=raw.get("authorityHost", ENTRA_AUTHORITY).rstrip("/"),
    )


def build_outbound(raw: Mapping[str, Any] | None, prefix: str) -> OutboundConfig | None:
    """The typed outbound mode of one server (None: the gateway adds no credential)."""
    if raw is None:
        return None
    modes = [k for k in MODES if k in raw]
    if len(modes) != 1:
        raise ConfigError(prefix, f"give exactly one mode: {', '.join(MODES)}")
    mode = modes[0]
    body = raw[mode]
    field = f"{prefix}.{mode}"
    if mode == "managedIdentity":
        return ManagedIdentityOutbound(scope=_default_scope(body["scope"], f"{field}.scope"), client_id=body.get("clientId"))
    if mode == "clientCredentials":
        return ClientCredentialsOutbound(app=_app(body, field), scope=_default_scope(body["scope"], f"{field}.scope"))
    if mode == "onBehalfOf":
        scopes = tuple(body["scope"].split())
        if not scopes:
            raise ConfigError(f"{field}.scope", "is empty")
        return OnBehalfOfOutbound(app=_app(body, field), scopes=scopes)
    if mode == "secretHeader":
        header = body["name"]
        if header.lower() in _RESERVED_HEADERS:
            raise ConfigError(f"{field}.name", f"{header!r} cannot carry a backend credential")
        return SecretHeaderOutbound(header=header, secret=SecretRef.parse(body["keyVaultSecret"]), prefix=body.get("prefix", ""))
    if body is not True:
        raise ConfigError(field, "must be true (leave it out to keep the caller's token away from the backend)")
    return ForwardAuthorizationOutbound()


def check_outbound_against_auth(raw: Mapping[str, Any] | None, auth: Mapping[str, Any] | None, prefix: str) -> None:
    """On-behalf-of exchanges the caller's validated Entra token: the server must require one."""
    if raw is None or "onBehalfOf" not in raw:
        return
    if auth is None or "entra" not in auth:
        raise ConfigError(
            f"{prefix}.onBehalfOf",
            "needs Entra inbound auth on this server (auth.entra): it exchanges the caller's validated Entra token",
        )
    if auth.get("mode", "all") == "any" and len(set(auth) & {"subscriptionKey", "jwt"}) > 0:
        raise ConfigError(
            f"{prefix}.onBehalfOf",
            "needs every caller to present an Entra token: use auth.mode 'all' (with 'any', a key alone would let a caller in)",
        )
