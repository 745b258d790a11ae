"""Each outbound mode, end to end: the MCP SDK client, the gateway, and a backend that checks
the credential it receives (issuer, audience, roles or scope, app, user) against the emulated tenant."""

from __future__ import annotations

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from backends.mcp_servers import build_app
from backends.recorder import RecordingBackend
from emulators.entra import FederatedCredential
from emulators.fixtures import *  # noqa: F403 - fixtures
from emulators.managed_identity import ManagedIdentity
from helpers import anonymous, gateway_config
from outbound_support import (
    JSON_HEADERS,
    PING,
    CheckedBackend,
    entra_token_check,
    header_check,
    run_gateway,  # noqa: F401 - fixture
)

BACKEND = "api://backend"
GATEWAY_AUDIENCE = "api://mcp-gateway"


@pytest.fixture
def azure(entra, managed_identity_env, key_vault, emulator_pki):
    """The emulated cloud: tenant, the app's managed identity, a vault it may read."""
    managed_identity_env.system_identity.app_roles[BACKEND] = ["Mcp.Invoke"]
    return entra, managed_identity_env, key_vault, emulator_pki


@pytest.fixture
def serve(start_server, run_gateway, azure):
    """Start a checked MCP SDK backend and a gateway in front of it with `outbound`."""
    _, _, key_vault, pki = azure

    def start(outbound: dict, check, *, auth: dict | None = None, environ: dict | None = None):
        backend = CheckedBackend(build_app("stateless"), check)
        server = start_server(backend)
        entry = {"url": f"{server.base_url}/mcp", "outbound": outbound}
        entry.update({"auth": auth} if auth else {"anonymous": True})
        base, gateway = run_gateway(
            gateway_config({"api": entry}, caBundle=pki.ca_path, keyVaultUrl=key_vault.vault_url), environ
        )
        return f"{base}/mcp/api", backend, gateway

    return start


async def use_tools(url: str, headers: dict[str, str] | None = None) -> None:
    """The MCP SDK client (its own HTTP client, httpx2), sending `headers` on every request."""
    async with httpx2.AsyncClient(headers=headers or {}, timeout=10) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            result = await client.call_tool("add", {"a": 2, "b": 40})
    assert result.structured_content == {"result": 42}


async def test_managed_identity_system_assigned(serve, azure):
    entra, mi, _, _ = azure
    check = entra_token_check(
        entra, audience=BACKEND, issuer=entra.v1_issuer,
        claims={"appid": mi.system_identity.client_id, "roles": ["Mcp.Invoke"], "idtyp": "app"},
    )
    url, backend, _ = serve({"managedIdentity": {"scope": f"{BACKEND}/.default"}}, check)
    await use_tools(url)
    assert backend.accepted and not backend.rejected
    assert mi.token_request_count(resource=BACKEND) == 1


async def test_managed_identity_user_assigned_by_config_and_by_setting(serve, azure):
    entra, mi, _, _ = azure
    by_config = mi.add_user_assigned(ManagedIdentity(app_roles={BACKEND: ["Mcp.Invoke"]}))
    check = entra_token_check(entra, audience=BACKEND, issuer=entra.v1_issuer, claims={"appid": by_config.client_id})
    url, backend, _ = serve({"managedIdentity": {"scope": f"{BACKEND}/.default", "clientId": by_config.client_id}}, check)
    await use_tools(url)
    assert backend.accepted and not backend.rejected

    by_setting = mi.add_user_assigned(ManagedIdentity())
    check = entra_token_check(entra, audience=BACKEND, issuer=entra.v1_issuer, claims={"appid": by_setting.client_id})
    url, backend, _ = serve(
        {"managedIdentity": {"scope": f"{BACKEND}/.default"}}, check, environ={"AZURE_CLIENT_ID": by_setting.client_id}
    )
    await use_tools(url)
    assert backend.accepted and not backend.rejected


def client_credentials(entra, credential: dict, scope: str = f"{BACKEND}/.default", client_id: str = "") -> dict:
    return {"clientCredentials": {"tenantId": entra.tenant_id, "clientId": client_id, "scope": scope,
                                  "authorityHost": entra.authority_host, **credential}}


async def test_client_credentials_with_a_secret_from_key_vault(serve, azure):
    entra, _, key_vault, _ = azure
    app = entra.register_app(secret="app-secret-value-1", app_roles={BACKEND: ["Mcp.Invoke"]})
    key_vault.set_secret("backend-app-secret", "app-secret-value-1")
    check = entra_token_check(entra, audience=BACKEND, issuer=entra.issuer_v2,
                              claims={"azp": app.client_id, "roles": ["Mcp.Invoke"], "azpacr": "1"})
    outbound = client_credentials(entra, {"clientSecret": {"keyVaultSecret": {"name": "backend-app-secret"}}},
                                  client_id=app.client_id)
    url, backend, _ = serve(outbound, check)
    await use_tools(url)
    assert backend.accepted and not backend.rejected
    assert entra.token_request_count(grant="client_credentials", client_id=app.client_id) == 1


async def test_client_credentials_with_a_certificate_from_key_vault(serve, azure):
    entra, _, key_vault, pki = azure
    cert = pki.issue_client_certificate("gateway-app")
    app = entra.register_app(certificate=cert, app_roles={BACKEND: ["Mcp.Invoke"]})
    key_vault.set_secret("backend-app-cert", cert.private_key_pem + cert.certificate_pem,
                         content_type="application/x-pem-file")
    check = entra_token_check(entra, audience=BACKEND, issuer=entra.issuer_v2,
                              claims={"azp": app.client_id, "azpacr": "2", "roles": ["Mcp.Invoke"]})
    outbound = client_credentials(entra, {"certificate": {"keyVaultSecret": {"name": "backend-app-cert"}}},
                                  client_id=app.client_id)
    url, backend, _ = serve(outbound, check)
    await use_tools(url)
    assert backend.accepted and not backend.rejected


async def test_client_credentials_with_a_managed_identity_assertion_and_no_secret(serve, azure):
    entra, mi, key_vault, _ = azure
    app = entra.register_app(
        federated=FederatedCredential(issuer=entra.v1_issuer, subject=mi.system_identity.object_id, jwks=entra.jwks),
        app_roles={BACKEND: ["Mcp.Invoke"]},
    )
    check = entra_token_check(entra, audience=BACKEND, issuer=entra.issuer_v2, claims={"azp": app.client_id})
    url, backend, _ = serve(client_credentials(entra, {"managedIdentityAssertion": {}}, client_id=app.client_id), check)
    await use_tools(url)
    assert backend.accepted and not backend.rejected
    assert mi.token_request_count(resource="api://AzureADTokenExchange") == 1
    assert key_vault.get_count() == 0


def obo_setup(entra, key_vault):
    gateway_app = entra.register_app(secret="gateway-app-secret", identifier_uris=[GATEWAY_AUDIENCE],
                                     delegated_scopes={BACKEND: ["Files.Read"]})
    key_vault.set_secret("gateway-app-secret", "gateway-app-secret")
    outbound = {"onBehalfOf": {"tenantId": entra.tenant_id, "clientId": gateway_app.client_id,
                               "scope": f"{BACKEND}/.default", "authorityHost": entra.authority_host,
                               "clientSecret": {"keyVaultSecret": {"name": "gateway-app-secret"}}}}
    auth = {"entra": {"tenantId": entra.tenant_id, "audiences": [GATEWAY_AUDIENCE], "authorityHost": entra.authority_host}}
    return gateway_app, outbound, auth


async def test_on_behalf_of_gives_the_backend_its_own_token_for_the_same_user(serve, azure):
    entra, _, key_vault, _ = azure
    gateway_app, outbound, auth = obo_setup(entra, key_vault)
    users = {"alice-oid": None, "bob-oid": None}
    for oid in users:
        users[oid] = entra.mint({"aud": GATEWAY_AUDIENCE, "oid": oid, "scp": "mcp.call"})

    def check(headers):
        claims = entra_token_check(entra, audience=BACKEND, issuer=entra.issuer_v2,
                                   claims={"azp": gateway_app.client_id, "scp": "Files.Read"})(headers)
        assert claims["oid"] in users, "not one of the callers"
        assert headers["authorization"].split()[1] not in users.values(), "the caller's own token reached the backend"
        return claims

    url, backend, _ = serve(outbound, check, auth=auth)
    for token in users.values():
        await use_tools(url, {"authorization": f"Bearer {token}"})
    assert not backend.rejected
    assert {c["oid"] for c in backend.accepted} == set(users)
    for oid in users:
        assert entra.token_request_count(grant="on_behalf_of", user=oid) == 1


async def test_secret_header_as_bearer_pat_and_as_api_key(serve, azure):
    _, _, key_vault, _ = azure
    key_vault.set_secret("saas-pat", "pat-value-123")
    url, backend, _ = serve(
        {"secretHeader": {"name": "Authorization", "prefix": "Bearer ", "keyVaultSecret": {"name": "saas-pat"}}},
        header_check("authorization", lambda: "Bearer pat-value-123"),
    )
    await use_tools(url)
    assert backend.accepted and not backend.rejected

    key_vault.set_secret("api-key", "key-value-456")
    url, backend, _ = serve(
        {"secretHeader": {"name": "X-Api-Key", "keyVaultSecret": {"name": "api-key"}}},
        header_check("x-api-key", lambda: "key-value-456"),
    )
    # a caller's own x-api-key never reaches the backend: the gateway's replaces it
    await use_tools(url, {"x-api-key": "callers-guess"})
    assert backend.accepted and not backend.rejected


async def test_a_rotated_key_vault_secret_reaches_the_backend_after_the_ttl_without_restart(serve, azure):
    _, _, key_vault, _ = azure
    key_vault.set_secret("api-key", "before-rotation")
    current = {"value": "before-rotation"}
    url, backend, gateway = serve(
        {"secretHeader": {"name": "x-api-key", "keyVaultSecret": {"name": "api-key"}}},
        header_check("x-api-key", lambda: current["value"]),
    )
    now = [gateway.secrets.clock()]  # the start-up check already read the secret on the real clock
    gateway.secrets.clock = lambda: now[0]
    ttl = gateway.config.gateway.key_cache_seconds

    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.post(url, content=PING, headers=JSON_HEADERS)).status_code == 200
        key_vault.set_secret("api-key", "after-rotation")
        now[0] += ttl - 1
        assert (await http.post(url, content=PING, headers=JSON_HEADERS)).status_code == 200  # old value, still valid
        now[0] += 2
        current["value"] = "after-rotation"
        assert (await http.post(url, content=PING, headers=JSON_HEADERS)).status_code == 200
    assert not backend.rejected
    assert [h["x-api-key"] for h in backend.seen_headers] == ["before-rotation", "before-rotation", "after-rotation"]


async def test_the_callers_token_reaches_the_backend_only_with_forward_authorization(start_server, run_gateway, azure):
    _, _, _, pki = azure
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    url = f"{backend.base_url}/mcp"
    base, _ = run_gateway(gateway_config({
        "plain": anonymous(url),
        "identity": anonymous(url, outbound={"managedIdentity": {"scope": f"{BACKEND}/.default"}}),
        "forward": anonymous(url, outbound={"forwardAuthorization": True}),
    }, caBundle=pki.ca_path))
    caller = {"authorization": "Bearer the-callers-own-token"}
    async with httpx.AsyncClient(timeout=10) as http:
        for name in ("plain", "identity", "forward"):
            response = await http.post(f"{base}/mcp/{name}", content=PING, headers={**JSON_HEADERS, **caller})
            assert response.status_code == 200, response.text
    plain, identity, forward = recorder.requests
    assert "authorization" not in plain.headers
    assert identity.headers["authorization"].startswith("Bearer ey")  # the gateway's own token instead
    assert forward.headers["authorization"] == "Bearer the-callers-own-token"
    for request in (plain, identity):
        assert b"the-callers-own-token" not in repr(request.raw_headers).encode()
