"""Every environment variable (app setting) the gateway reads, in one place.

The infra tests and the docs read this list, so a new setting added anywhere else
would go unprovisioned: read settings only through `env()` with a name listed here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Mapping

Source = Literal["bicep", "platform", "optional"]


@dataclass(frozen=True)
class Setting:
    name: str
    source: Source
    """Who sets it in Azure: our Bicep, the Functions platform itself, or nobody by default."""
    description: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "MCP_GATEWAY_CONFIG",
        "bicep",
        "The gateway config: a path to a JSON file, or the JSON document itself (starts with '{').",
    ),
    Setting(
        "MCP_GATEWAY_LOG_LEVEL",
        "optional",
        "Log level of the gateway's own loggers (DEBUG, INFO, WARNING, ERROR). Default INFO.",
    ),
    Setting(
        "MCP_GATEWAY_ACCESS_LOG",
        "optional",
        "'true' writes one line per request (method, path, server, status, ms). Default off: on Azure the "
        "Functions host already records every request, and the line costs tens of microseconds.",
    ),
    Setting(
        "MCP_GATEWAY_KEY_VAULT_URL",
        "bicep",
        "Default Key Vault (https://NAME.vault.azure.net/) for secret references that name no vault.",
    ),
    Setting(
        "MCP_GATEWAY_SIGNING_KEY",
        "bicep",
        "At least 32 random characters shared by every instance: signs the legacy SSE message URLs the "
        "gateway hands out, so a POST may land on any instance, and is the root of sign-in's keys (token "
        "signing, sealing). Without it each process uses a random key, and sign-in refuses to start.",
    ),
    Setting(
        "AZURE_CLIENT_ID",
        "bicep",
        "Client id of the user-assigned managed identity the gateway uses for Key Vault and backends.",
    ),
    Setting(
        "IDENTITY_ENDPOINT",
        "platform",
        "Managed identity endpoint, set by App Service / Functions; read by azure-identity.",
    ),
    Setting(
        "IDENTITY_HEADER",
        "platform",
        "Managed identity header secret, set by App Service / Functions; read by azure-identity.",
    ),
    Setting(
        "WEBSITE_HOSTNAME",
        "platform",
        "The app's default host name, set by App Service / Functions; always an allowed Host.",
    ),
    Setting(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "bicep",
        "Application Insights connection string (no key: ingestion is Entra-authenticated).",
    ),
    Setting(
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "bicep",
        "'Authorization=AAD;ClientId=<identity client id>' for Entra-authenticated ingestion.",
    ),
    Setting(
        "PYTHON_ENABLE_INIT_INDEXING",
        "bicep",
        "Must be 1 on Python <= 3.12 for the HTTP-streams extension to load.",
    ),
)

SETTING_NAMES = frozenset(s.name for s in SETTINGS)


def env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Read one listed setting; an unlisted name is a programming error."""
    if name not in SETTING_NAMES:
        raise KeyError(f"{name} is not a documented gateway setting; add it to shared/settings.py")
    value = (os.environ if environ is None else environ).get(name)
    return value if value else None
