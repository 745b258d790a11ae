"""The typed, immutable config the rest of the gateway reads.

Built only by `loader.parse_config`; never read from a global. Inbound and outbound
sections have their own modules (inbound.py, outbound.py) beside this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .inbound import InboundAuth, Subscription
    from .openapi import OpenApiConfig
    from .outbound import OutboundConfig
    from .policy import PolicyConfig

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

Transport = Literal["streamable-http", "sse"]

ENTRA_AUTHORITY = "https://login.microsoftonline.com"
"""Entra ID's public-cloud authority host (sovereign clouds set `authorityHost`)."""


@dataclass(frozen=True)
class SecretRef:
    """A Key Vault secret, by name; the value is only ever fetched at run time."""

    name: str
    vault_url: str | None = None
    version: str | None = None

    def __repr__(self) -> str:
        return f"SecretRef({self.name!r})"

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> "SecretRef":
        """From a config `keyVaultSecret` object: {"name", "vault"?, "version"?}."""
        return cls(name=raw["name"], vault_url=raw.get("vault"), version=raw.get("version"))


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    read: float = 60.0
    idle_stream: float = 3600.0


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: tuple[str, ...]
    max_age_seconds: int = 600


@dataclass(frozen=True)
class SignInSettings:
    """Gateway-wide settings of the sign-in facade (servers with auth.entra.signIn)."""

    client_metadata_documents: bool = True
    dynamic_client_registration: bool = True
    allow_private_network_client_metadata: bool = False
    """Tests only: fetch client metadata documents from private and loopback addresses."""


@dataclass(frozen=True)
class MemoryStoreConfig:
    """Shared state kept in this process: right for one instance only."""


@dataclass(frozen=True)
class TableStoreConfig:
    """Shared state in an Azure Table Storage table, reached with the managed identity."""

    endpoint: str
    table: str = "mcpgateway"
    client_id: str | None = None


StoreConfig = MemoryStoreConfig | TableStoreConfig


@dataclass(frozen=True)
class GatewaySettings:
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    cors: CorsPolicy | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    keep_alive_seconds: float = 20.0
    public_base_url: str | None = None
    """https://host as clients see it (for protected resource metadata); default: from the request."""
    docs_url: str = "https://modelcontextprotocol.io"
    """Where `GET /` points people for help."""
    trust_forwarded_headers: bool = False
    """X-Forwarded-Proto/Host name the public origin (only behind a proxy that always sets them)."""
    ca_bundle: str | None = None
    """Extra CA certificates (PEM path) trusted for the gateway's own HTTPS calls (IdPs, Key Vault)."""
    key_vault_url: str | None = None
    """Default vault for secret references that name none (else MCP_GATEWAY_KEY_VAULT_URL)."""
    key_cache_seconds: float = 300.0
    """How long a key or secret read from Key Vault is used before it is read again."""
    max_request_head_bytes: int = 32 * 1024
    """Request target plus header names and values, in bytes (Kestrel's default, as on the Functions host)."""
    max_request_headers: int = 100
    request_head_timeout_seconds: float = 30.0
    """Local server: time to receive a whole request head (Kestrel's RequestHeadersTimeout)."""
    body_idle_timeout_seconds: float = 60.0
    """Longest pause between chunks of a request body (nginx's client_body_timeout)."""
    min_body_bytes_per_second: float = 240.0
    """Average rate a body must keep once it has taken body_idle_timeout_seconds (Kestrel's minimum)."""
    sign_in: SignInSettings = SignInSettings()
    store: StoreConfig = MemoryStoreConfig()


@dataclass(frozen=True)
class ServerConfig:
    name: str
    url: str
    """The backend: an MCP endpoint, or for `openapi` servers the REST API's base URL."""
    transport: Transport = "streamable-http"
    message_url: str | None = None
    anonymous: bool = False
    description: str = ""
    timeouts: Timeouts = Timeouts()
    headers: tuple[tuple[str, str], ...] = ()
    auth: "InboundAuth | None" = None
    outbound: "OutboundConfig | None" = None
    openapi: "OpenApiConfig | None" = None
    """Set for a REST API the gateway serves as MCP tools itself (no MCP backend)."""
    policy: "PolicyConfig | None" = None
    """MCP-aware rules (tool authorization, list filtering); None: requests pass untouched."""

    @property
    def origin(self) -> str:
        """scheme://host[:port] of the backend, for same-origin checks."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class GatewayConfig:
    servers: Mapping[str, ServerConfig]
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    subscriptions: "Mapping[str, Subscription]" = field(default_factory=dict)
