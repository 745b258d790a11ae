"""The MCP SDK's own OAuth client signs in through the gateway to a tool call: with a client
metadata document, and with dynamic registration; then refresh, and audience binding."""

from __future__ import annotations

import httpx
import jwt

from signin_support import (  # noqa: F401 - fixtures
    MemoryTokens,
    ScriptedUser,
    call_add,
    gateway_app,
    metadata_host,
    oauth_provider,
    start_sign_in,
)


async def test_sdk_signs_in_with_a_client_metadata_document_and_calls_a_tool(start_sign_in, metadata_host, emulator_pki):
    setup = start_sign_in()
    client_id = metadata_host.publish("/oauth/client.json")
    user, storage = ScriptedUser(emulator_pki), MemoryTokens()
    try:
        provider = oauth_provider(setup.url("docs"), user, storage, client_metadata_url=client_id)
        assert await call_add(setup.url("docs"), provider) == {"result": 42}
    finally:
        await user.aclose()
    assert storage.client_info.client_id == client_id  # no registration happened
    claims = jwt.decode(storage.tokens.access_token, options={"verify_signature": False})
    assert claims["aud"] == setup.url("docs")
    assert claims["iss"] == f"{setup.base}/oauth/docs"
    assert claims["client_id"] == client_id
    assert claims["sub"] == setup.entra.user["oid"]
    assert "ent" not in claims  # no on-behalf-of here: Entra's token is not carried
    # Entra saw the gateway's own app, its own PKCE, and never `resource`
    (authorize,) = setup.entra.authorize_requests
    assert authorize.client_id == setup.app.client_id and authorize.outcome == "code"
    assert "resource" not in authorize.params and authorize.params["code_challenge_method"] == "S256"
    assert authorize.redirect_uri == f"{setup.base}/oauth/callback"


async def test_sdk_signs_in_with_dynamic_registration_then_refreshes(start_sign_in, emulator_pki):
    setup = start_sign_in()
    user, storage = ScriptedUser(emulator_pki), MemoryTokens()
    try:
        provider = oauth_provider(setup.url("docs"), user, storage)
        assert await call_add(setup.url("docs"), provider) == {"result": 42}
        assert storage.client_info.client_id.startswith("dcr.")
        first = storage.tokens
        # the access token runs out: the SDK refreshes through the gateway, which refreshes at Entra
        provider.context.token_expiry_time = 1.0
        assert await call_add(setup.url("docs"), provider) == {"result": 42}
    finally:
        await user.aclose()
    assert storage.tokens.access_token != first.access_token
    assert storage.tokens.refresh_token != first.refresh_token
    assert setup.entra.token_request_count(grant="refresh_token", client_id=setup.app.client_id, succeeded=True) == 1
    assert len(setup.entra.authorize_requests) == 1  # no second sign-in
    # the spent refresh token is refused (rotation)
    async with httpx.AsyncClient() as http:
        again = await http.post(f"{setup.base}/oauth/docs/token", data={
            "grant_type": "refresh_token", "refresh_token": first.refresh_token,
            "client_id": storage.client_info.client_id})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


async def test_a_token_for_one_server_is_refused_by_another(start_sign_in, emulator_pki):
    setup = start_sign_in()
    user, storage = ScriptedUser(emulator_pki), MemoryTokens()
    try:
        assert await call_add(setup.url("docs"), oauth_provider(setup.url("docs"), user, storage)) == {"result": 42}
    finally:
        await user.aclose()
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"authorization": f"Bearer {storage.tokens.access_token}", "accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient() as http:
        other = await http.post(setup.url("other"), json=ping, headers=headers)
        same = await http.post(setup.url("docs"), json=ping, headers=headers)
    assert same.status_code == 200
    assert other.status_code == 401
    assert 'error="invalid_token"' in other.headers["www-authenticate"]
    assert "another server" in other.json()["error"]["message"]
