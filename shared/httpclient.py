"""The gateway's own HTTPS client (identity providers, Key Vault), apart from the proxy pool.

Trusts the system/certifi roots plus `gateway.caBundle`, never the process's proxy or
CA environment variables: what the gateway trusts is in its config.
"""

from __future__ import annotations

import ssl

import certifi
import httpx


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certifi.where())
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def https_client(ca_bundle: str | None, *, timeout: float = 10.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=tls_context(ca_bundle),
        timeout=httpx.Timeout(timeout),
        trust_env=False,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
    )
