"""MCP authorization: RFC 9728 protected resource metadata and WWW-Authenticate challenges."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..config import GatewaySettings, ServerConfig
from ..config.inbound import EntraAuth, JwtAuth

PRM_PREFIX = "/.well-known/oauth-protected-resource"


def public_base_url(request: Request, settings: GatewaySettings) -> str:
    """scheme://host as the client sees the gateway (Host has passed the guard by now)."""
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    proto = request.headers.get("x-forwarded-proto") or request.scope.get("scheme", "http")
    return f"{proto.split(',')[0].strip()}://{request.headers.get('host') or request.url.netloc}"


def resource_url(base: str, server: ServerConfig) -> str:
    return f"{base}/mcp/{server.name}"


def metadata_url(base: str, server: ServerConfig) -> str:
    return f"{base}{PRM_PREFIX}/mcp/{server.name}"


def authorization_servers(token: EntraAuth | JwtAuth, discovered_issuer: str | None) -> list[str]:
    if isinstance(token, EntraAuth):
        return [token.v2_issuer]
    if token.issuers:
        return list(token.issuers)
    return [discovered_issuer] if discovered_issuer else []


def protected_resource_metadata(
    base: str, server: ServerConfig, token: EntraAuth | JwtAuth, discovered_issuer: str | None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "resource": resource_url(base, server),
        "authorization_servers": authorization_servers(token, discovered_issuer),
        "bearer_methods_supported": ["header"],
    }
    if token.rules.required_scopes:
        document["scopes_supported"] = list(token.rules.required_scopes)
    if server.description:
        document["resource_name"] = server.description
    return document


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def bearer_challenge(
    base: str, server: ServerConfig, token: EntraAuth | JwtAuth, error: str | None, description: str | None
) -> str:
    """RFC 6750 / RFC 9728 challenge. No `error` when the request carried no token (RFC 6750 3.1)."""
    parts = []
    if error:
        parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{_quote(description)}"')
    parts.append(f'resource_metadata="{metadata_url(base, server)}"')
    if token.rules.required_scopes:
        parts.append(f'scope="{" ".join(token.rules.required_scopes)}"')
    return "Bearer " + ", ".join(parts)
