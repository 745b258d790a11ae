"""MCP authorization (2025-11-25) at the gateway: RFC 9728 metadata and Bearer challenges."""

from __future__ import annotations

import httpx
import pytest
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    extract_resource_metadata_from_www_auth,
    extract_scope_from_www_auth,
    handle_auth_metadata_response,
    handle_protected_resource_response,
)

from backends.recorder import RecordingBackend
from helpers import gateway_config
from shared.httpclient import tls_context
from test_inbound_tokens import AUDIENCE, CLIENT_APP, JSON, PING, entra_server

SCOPE = "api://mcp-gateway/mcp.access"


@pytest.fixture
def gateway(start_server, start_gateway, entra, emulator_pki):
    backend = start_server(RecordingBackend(), lifespan="off")
    server = entra_server(f"{backend.base_url}/mcp", entra, requiredScopes=[SCOPE])
    server["description"] = "Docs MCP"
    keyed = {"url": f"{backend.base_url}/mcp", "auth": {"subscriptionKey": {}}}
    return start_gateway(gateway_config({"docs": server, "keyed": keyed}, caBundle=emulator_pki.ca_path))


async def test_metadata_document_field_by_field(gateway, entra):
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{gateway}/.well-known/oauth-protected-resource/mcp/docs")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "resource": f"{gateway}/mcp/docs",
        "authorization_servers": [f"{entra.authority_host}/{entra.tenant_id}/v2.0"],
        "bearer_methods_supported": ["header"],
        "scopes_supported": [SCOPE],
        "resource_name": "Docs MCP",
    }


async def test_no_metadata_for_servers_without_tokens_or_unknown_ones(gateway):
    async with httpx.AsyncClient(timeout=10) as client:
        keyed = await client.get(f"{gateway}/.well-known/oauth-protected-resource/mcp/keyed")
        unknown = await client.get(f"{gateway}/.well-known/oauth-protected-resource/mcp/nope")
    assert keyed.status_code == 404 and unknown.status_code == 404


async def test_challenges_field_by_field(gateway, entra):
    prm = f"{gateway}/.well-known/oauth-protected-resource/mcp/docs"
    async with httpx.AsyncClient(timeout=10) as client:
        missing = await client.post(f"{gateway}/mcp/docs", content=PING, headers=JSON)
        invalid = await client.post(f"{gateway}/mcp/docs", content=PING,
                                    headers={**JSON, "authorization": "Bearer not.a.token"})
        no_scope = await client.post(f"{gateway}/mcp/docs", content=PING, headers={
            **JSON, "authorization": f"Bearer {entra.mint({'aud': AUDIENCE, 'azp': CLIENT_APP, 'scp': 'other'})}"})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == f'Bearer resource_metadata="{prm}", scope="{SCOPE}"'
    assert invalid.status_code == 401
    assert invalid.headers["www-authenticate"] == (
        f'Bearer error="invalid_token", error_description="token header is malformed", '
        f'resource_metadata="{prm}", scope="{SCOPE}"'
    )
    assert no_scope.status_code == 403
    assert no_scope.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    assert f'scope="{SCOPE}"' in no_scope.headers["www-authenticate"]


async def test_mcp_sdk_oauth_discovery_finds_the_authorization_server_from_the_401(gateway, entra, emulator_pki):
    server_url = f"{gateway}/mcp/docs"
    async with httpx.AsyncClient(timeout=10, verify=tls_context(emulator_pki.ca_path)) as client:
        unauthorized = await client.post(server_url, content=PING, headers=JSON)
        metadata_url = extract_resource_metadata_from_www_auth(unauthorized)
        assert extract_scope_from_www_auth(unauthorized) == SCOPE
        prm = None
        for url in build_protected_resource_metadata_discovery_urls(metadata_url, server_url):
            prm = await handle_protected_resource_response(await client.get(url))
            if prm:
                break
        assert prm is not None and str(prm.resource) == server_url
        issuer = str(prm.authorization_servers[0])
        oauth = None
        for url in build_oauth_authorization_server_metadata_discovery_urls(issuer, server_url):
            ok, oauth = await handle_auth_metadata_response(await client.get(url))
            if ok and oauth:
                break
    assert oauth is not None
    assert str(oauth.issuer).rstrip("/") == f"{entra.authority_host}/{entra.tenant_id}/v2.0"
    assert str(oauth.authorization_endpoint).startswith(entra.authority_host)
    assert str(oauth.token_endpoint).startswith(entra.authority_host)


async def test_public_base_url_names_the_resource_as_clients_see_it(start_server, start_gateway, entra, emulator_pki):
    backend = start_server(RecordingBackend(), lifespan="off")
    server = entra_server(f"{backend.base_url}/mcp", entra)
    base = start_gateway(gateway_config({"docs": server}, caBundle=emulator_pki.ca_path,
                                        publicBaseUrl="https://mcp.contoso.com"))
    async with httpx.AsyncClient(timeout=10) as client:
        document = (await client.get(f"{base}/.well-known/oauth-protected-resource/mcp/docs")).json()
        challenge = (await client.post(f"{base}/mcp/docs", content=PING, headers=JSON)).headers["www-authenticate"]
    assert document["resource"] == "https://mcp.contoso.com/mcp/docs"
    assert 'resource_metadata="https://mcp.contoso.com/.well-known/oauth-protected-resource/mcp/docs"' in challenge


async def test_root_metadata_describes_the_gateway_when_its_servers_agree(gateway, entra):
    async with httpx.AsyncClient(timeout=10) as client:
        document = (await client.get(f"{gateway}/.well-known/oauth-protected-resource")).json()
    assert document == {
        "resource": gateway,
        "authorization_servers": [f"{entra.authority_host}/{entra.tenant_id}/v2.0"],
        "bearer_methods_supported": ["header"],
        "scopes_supported": [SCOPE],
    }
