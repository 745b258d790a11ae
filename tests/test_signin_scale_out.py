"""Two gateway processes sharing one Table Storage store (Azurite) serve the steps of one
sign-in in turn, as Azure spreads requests over instances without sticky sessions; a code or
refresh token spent on one instance is refused by the other."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import pytest

from azurite import start_azurite_table
from gateway_process import start_gateway_process
from helpers import gateway_config
from shared.httpclient import tls_context
from shared.oauth import pkce
from signin_support import REDIRECT, SIGNING_KEY, gateway_app, sign_in_server  # noqa: F401 - fixtures
from test_signin_attacks import landed

PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


@pytest.fixture
def azurite(emulator_pki):
    handle = start_azurite_table(emulator_pki)
    yield handle
    handle.stop()


@pytest.fixture
def two_instances(start_server, entra, key_vault, managed_identity_env, emulator_pki, gateway_app, azurite):
    from backends.mcp_servers import build_app

    backend = start_server(build_app("stateless"))
    public = "http://mcp.gateway.test"  # the name both instances answer for; requests go to each by its port
    document = gateway_config(
        {"docs": sign_in_server(f"{backend.base_url}/mcp", entra, gateway_app)},
        caBundle=emulator_pki.ca_path, keyVaultUrl=key_vault.vault_url,
        store={"tableStorage": {"endpoint": azurite.url, "table": "signin"}},
        publicBaseUrl=public)
    env = {"MCP_GATEWAY_SIGNING_KEY": SIGNING_KEY, **managed_identity_env.env()}
    gateway_app.redirect_uris.append(f"{public}/oauth/callback")
    handles = []
    try:
        for _ in range(2):
            handles.append(start_gateway_process(document, env=env))
        yield handles, public
    finally:
        for handle in handles:
            handle.stop()


def on(instance, url: str) -> str:
    """`url` sent to `instance` (its port), as a load balancer might."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{instance.port}"))


async def test_each_step_of_one_sign_in_may_land_on_another_instance(two_instances, emulator_pki):
    (a, b), public = two_instances
    async with httpx.AsyncClient(verify=tls_context(emulator_pki.ca_path), timeout=20) as browser:
        registered = await browser.post(on(a, f"{public}/oauth/docs/register"), json={"redirect_uris": [REDIRECT]})
        client_id = registered.json()["client_id"]
        verifier = pkce.new_verifier()
        query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "s",
                           "code_challenge": pkce.s256(verifier), "code_challenge_method": "S256"})
        page = await browser.get(on(b, f"{public}/oauth/docs/authorize?{query}"))
        flow = unescape(re.search(r'name="flow" value="([^"]+)"', page.text).group(1))
        approved = await browser.post(on(a, f"{public}/oauth/consent"), data={"flow": flow, "decision": "approve"})
        at_entra = await browser.get(approved.headers["location"])
        callback = await browser.get(on(b, at_entra.headers["location"]))
        code = landed(callback.headers["location"])["code"]
        form = {"grant_type": "authorization_code", "code": code, "client_id": client_id, "redirect_uri": REDIRECT,
                "code_verifier": verifier}
        tokens = await browser.post(on(a, f"{public}/oauth/docs/token"), data=form)
        replayed = await browser.post(on(b, f"{public}/oauth/docs/token"), data=form)
        assert tokens.status_code == 200, tokens.text
        assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"
        bearer = {"authorization": f"Bearer {tokens.json()['access_token']}", "accept": "application/json, text/event-stream"}
        for instance in (a, b):
            assert (await browser.post(on(instance, f"{public}/mcp/docs"), json=PING, headers=bearer)).status_code == 200
        refresh = {"grant_type": "refresh_token", "refresh_token": tokens.json()["refresh_token"], "client_id": client_id}
        refreshed = await browser.post(on(b, f"{public}/oauth/docs/token"), data=refresh)
        spent = await browser.post(on(a, f"{public}/oauth/docs/token"), data=refresh)
    assert refreshed.status_code == 200, refreshed.text
    assert spent.status_code == 400 and spent.json()["error"] == "invalid_grant"
