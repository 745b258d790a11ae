"""Sign-in in the gateway as a whole: discovery documents, the key it needs, the Entra tokens
clients already bring (VS Code), on-behalf-of for signed-in users, and the emulator's /authorize."""

from __future__ import annotations

import httpx
import pytest
from mcp.client.auth.utils import build_oauth_authorization_server_metadata_discovery_urls

from backends.mcp_servers import build_app
from outbound_support import CheckedBackend, entra_token_check
from shared.app import create_app
from shared.config import parse_config
from shared.errors import ConfigError
from shared.httpclient import tls_context
from shared.oauth import pkce
from signin_support import (  # noqa: F401 - fixtures
    API,
    REDIRECT,
    SCOPE,
    MemoryTokens,
    ScriptedUser,
    call_add,
    gateway_app,
    oauth_provider,
    sign_in_server,
    start_sign_in,
)
from helpers import gateway_config

PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
ACCEPT = {"accept": "application/json, text/event-stream"}


async def test_discovery_names_the_gateway_as_authorization_server_at_every_path_clients_try(start_sign_in):
    setup = start_sign_in()
    issuer = f"{setup.base}/oauth/docs"
    async with httpx.AsyncClient() as http:
        challenge = await http.post(setup.url("docs"), json=PING, headers=ACCEPT)
        prm = (await http.get(f"{setup.base}/.well-known/oauth-protected-resource/mcp/docs")).json()
        documents = [(await http.get(u)) for u in build_oauth_authorization_server_metadata_discovery_urls(issuer, setup.url("docs"))]
        jwks = (await http.get(f"{setup.base}/oauth/jwks")).json()
    assert challenge.status_code == 401 and "resource_metadata=" in challenge.headers["www-authenticate"]
    assert prm["authorization_servers"] == [issuer] and prm["resource"] == setup.url("docs")
    assert len(documents) == 3 and all(d.status_code == 200 for d in documents)
    document = documents[0].json()
    assert all(d.json() == document for d in documents)
    assert document["issuer"] == issuer
    assert document["authorization_endpoint"] == f"{issuer}/authorize"
    assert document["token_endpoint"] == f"{issuer}/token"
    assert document["registration_endpoint"] == f"{issuer}/register"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["client_id_metadata_document_supported"] is True
    assert document["token_endpoint_auth_methods_supported"] == ["none"]
    assert document["scopes_supported"] == [SCOPE]
    (key,) = jwks["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256" and "d" not in key


def test_sign_in_refuses_to_start_without_the_shared_signing_key(entra, gateway_app):
    document = gateway_config({"docs": sign_in_server("http://127.0.0.1:1/mcp", entra, gateway_app)})
    with pytest.raises(ConfigError) as missing:
        create_app(parse_config(document), environ={})
    assert "MCP_GATEWAY_SIGNING_KEY" in str(missing.value) and "sign-in" in str(missing.value)
    with pytest.raises(ConfigError):
        create_app(parse_config(document), environ={"MCP_GATEWAY_SIGNING_KEY": "too-short"})
    # servers without sign-in never needed it
    create_app(parse_config(gateway_config({"open": {"url": "http://127.0.0.1:1/mcp", "anonymous": True}})), environ={})


def test_sign_in_config_is_checked_with_the_field_named(entra, gateway_app):
    server = sign_in_server("http://127.0.0.1:1/mcp", entra, gateway_app)
    del server["auth"]["entra"]["signIn"]["clientSecret"]
    with pytest.raises(ConfigError) as no_credential:
        parse_config(gateway_config({"docs": server}))
    assert str(no_credential.value).startswith("servers.docs.auth.entra.signIn")
    server = sign_in_server("http://127.0.0.1:1/mcp", entra, gateway_app, scopes=["api://a/x", "api://b/y"])
    with pytest.raises(ConfigError) as two_resources:
        parse_config(gateway_config({"docs": server}))
    assert "servers.docs.auth.entra.signIn.scopes" in str(two_resources.value)
    with pytest.raises(ConfigError) as bad_store:
        parse_config(gateway_config({"docs": sign_in_server("http://127.0.0.1:1/mcp", entra, gateway_app)},
                                    store={"tableStorage": {"endpoint": "http://insecure.example"}}))
    assert "gateway.store" in str(bad_store.value)


async def test_an_entra_token_brought_by_the_client_is_still_accepted(start_sign_in):
    """VS Code's built-in Microsoft sign-in: a v2 Entra token for the gateway's API, as Entra issues it."""
    setup = start_sign_in()
    token = setup.entra.mint({"aud": setup.app.client_id, "scp": "mcp.access"})
    wrong_audience = setup.entra.mint({"aud": "api://someone-else", "scp": "mcp.access"})
    async with httpx.AsyncClient() as http:
        ok = await http.post(setup.url("docs"), json=PING, headers={**ACCEPT, "authorization": f"Bearer {token}"})
        refused = await http.post(setup.url("docs"), json=PING, headers={**ACCEPT, "authorization": f"Bearer {wrong_audience}"})
    assert ok.status_code == 200
    assert refused.status_code == 401


async def test_a_signed_in_user_gets_on_behalf_of_tokens_for_the_backend(start_sign_in, entra, gateway_app, emulator_pki):
    backend_api = "api://backend"
    gateway_app.delegated_scopes[backend_api] = ["Files.Read"]
    check = entra_token_check(entra, audience=backend_api, issuer=entra.issuer_v2,
                              claims={"azp": gateway_app.client_id, "scp": "Files.Read", "oid": entra.user["oid"]})
    checked = CheckedBackend(build_app("stateless"), check)

    def servers(url: str) -> dict:
        server = sign_in_server(url, entra, gateway_app)
        server["outbound"] = {"onBehalfOf": {
            "tenantId": entra.tenant_id, "clientId": gateway_app.client_id, "scope": f"{backend_api}/.default",
            "authorityHost": entra.authority_host, "clientSecret": {"keyVaultSecret": {"name": "gateway-app-secret"}}}}
        return {"docs": server}

    setup = start_sign_in(backend=checked, servers=servers)
    user, storage = ScriptedUser(emulator_pki), MemoryTokens()
    try:
        assert await call_add(setup.url("docs"), oauth_provider(setup.url("docs"), user, storage)) == {"result": 42}
    finally:
        await user.aclose()
    assert checked.accepted and not checked.rejected
    assert entra.token_request_count(grant="on_behalf_of", user=entra.user["oid"], succeeded=True) == 1
    seen = checked.seen_headers[-1]["authorization"].split()[1]
    assert seen != storage.tokens.access_token  # the backend never sees the gateway's token


async def test_entra_refuses_resource_beside_v2_scopes(entra, emulator_pki):
    """What MCP clients run into when they talk to Entra directly (AADSTS9010010)."""
    app = entra.register_app(secret="s", redirect_uris=[REDIRECT])
    verifier = pkce.new_verifier()
    params = {"client_id": app.client_id, "response_type": "code", "redirect_uri": REDIRECT, "scope": f"{API}/mcp.access",
              "state": "s1", "code_challenge": pkce.s256(verifier), "code_challenge_method": "S256"}
    async with httpx.AsyncClient(verify=tls_context(emulator_pki.ca_path)) as http:
        refused = await http.get(entra.authorize_endpoint, params={**params, "resource": "https://gw/mcp/docs"})
        granted = await http.get(entra.authorize_endpoint, params=params)
        code = httpx.URL(granted.headers["location"]).params["code"]
        token_form = {"grant_type": "authorization_code", "client_id": app.client_id, "client_secret": "s", "code": code,
                      "redirect_uri": REDIRECT, "code_verifier": verifier, "scope": f"{API}/mcp.access"}
        with_resource = await http.post(entra.token_endpoint, data={**token_form, "resource": "https://gw/mcp/docs"})
        wrong_verifier = await http.post(entra.token_endpoint, data={**token_form, "code_verifier": pkce.new_verifier()})
    location = httpx.URL(refused.headers["location"])
    assert location.params["error"] == "invalid_target" and "AADSTS9010010" in location.params["error_description"]
    assert location.params["state"] == "s1"
    assert with_resource.status_code == 400 and with_resource.json()["error_codes"] == [9010010]
    assert wrong_verifier.status_code == 400 and wrong_verifier.json()["error"] == "invalid_grant"
