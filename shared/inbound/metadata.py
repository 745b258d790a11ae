"""MCP authorization: RFC 9728 protected resource metadata and WWW-Authenticate challenges."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..authority import ORIGIN_KEY, PublicOrigin
from ..config import GatewaySettings, ServerConfig
from ..config.inbound import EntraAuth, JwtAuth

PRM_PREFIX = "/.well-known/oauth-protected-resource"


def public_base_url(request: Request, settings: GatewaySettings) -> str:
    """scheme://host as the client sees the gateway: `publicBaseUrl`, else what the Host guard parsed."""
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    origin: PublicOrigin = request.scope[ORIGIN_KEY]
    return origin.base_url


def resource_url(base: str, server: ServerConfig) -> str:
    return f"{base}/mcp/{server.name}"


def issuer_url(base: str, server: ServerConfig) -> str:
    """The gateway's own authorization server for a server with sign-in (one issuer per server)."""
    return f"{base}/oauth/{server.name}"


def metadata_url(base: str, server: ServerConfig) -> str:
    return f"{base}{PRM_PREFIX}/mcp/{server.name}"


def authorization_servers(
    token: EntraAuth | JwtAuth, discovered_issuer: str | None, base: str = "", server: ServerConfig | None = None
) -> list[str]:
    if isinstance(token, EntraAuth):
        if token.sign_in is not None and server is not None:
            return [issuer_url(base, server)]
        return [token.v2_issuer]
    if token.issuers:
        return list(token.issuers)
    return [discovered_issuer] if discovered_issuer else []


def protected_resource_metadata(
    base: str, server: ServerConfig, token: EntraAuth | JwtAuth, discovered_issuer: str | None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "resource": resource_url(base, server),
        "authorization_servers": authorization_servers(token, discovered_issuer, base, server),
        "bearer_methods_supported": ["header"],
    }
    if token.rules.required_scopes:
        document["scopes_supported"] = list(token.rules.required_scopes)
    if server.description:
        document["resource_name"] = server.description
    return document


def quoted_string(value: str) -> str:
    """An RFC 9110 quoted-string: `\\` and `"` escaped; characters a quoted-string cannot
    carry at all (controls other than tab, anything outside printable ASCII) become `?`."""
    safe = "".join(c if c == "\t" or " " <= c <= "~" else "?" for c in value)
    return '"' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bearer_challenge(
    base: str, server: ServerConfig, token: EntraAuth | JwtAuth, error: str | None, description: str | None
) -> str:
    """RFC 6750 / RFC 9728 challenge. No `error` when the request carried no token (RFC 6750 3.1)."""
    parts = []
    if error:
        parts.append(f"error={quoted_string(error)}")
        if description:
            parts.append(f"error_description={quoted_string(description)}")
    parts.append(f"resource_metadata={quoted_string(metadata_url(base, server))}")
    if token.rules.required_scopes:
        parts.append(f"scope={quoted_string(' '.join(token.rules.required_scopes))}")
    return "Bearer " + ", ".join(parts)
