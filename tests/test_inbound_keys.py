"""Subscription keys and combinations of key and token, API-Management style."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from backends.recorder import RecordingBackend
from helpers import gateway_config
from shared.inbound.keys import key_digest
from test_inbound_tokens import AUDIENCE, CLIENT_APP, JSON, PING

ALICE_PRIMARY, ALICE_SECONDARY = "alice-primary-key-0123456789", "alice-secondary-key-0123456789"
BOB, CAROL = "bob-key-0123456789abcdef", "carol-disabled-key-0123456789"

SUBSCRIPTIONS = {
    "alice": {"servers": ["docs"], "primaryKey": {"sha256": key_digest(ALICE_PRIMARY)},
              "secondaryKey": {"sha256": key_digest(ALICE_SECONDARY)}},
    "bob": {"servers": ["other"], "primaryKey": {"sha256": key_digest(BOB)}},
    "carol": {"servers": ["*"], "enabled": False, "primaryKey": {"sha256": key_digest(CAROL)}},
}


@pytest.fixture
def keyed(start_server, start_gateway):
    def start(key_settings: dict | None = None, **auth_extra):
        recorder = RecordingBackend()
        backend = start_server(recorder, lifespan="off")
        auth = {"subscriptionKey": key_settings or {}, **auth_extra}
        servers = {"docs": {"url": f"{backend.base_url}/mcp", "auth": auth},
                   "other": {"url": f"{backend.base_url}/mcp", "anonymous": True}}
        base = start_gateway({"servers": servers, "subscriptions": SUBSCRIPTIONS})
        return f"{base}/mcp/docs", recorder

    return start


async def post(url: str, headers: dict | None = None, query: str = "") -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(url + query, content=PING, headers={**JSON, **(headers or {})})


async def test_header_and_query_forms_and_both_keys_of_a_subscription(keyed):
    url, recorder = keyed()
    assert (await post(url, {"Ocp-Apim-Subscription-Key": ALICE_PRIMARY})).status_code == 200
    assert (await post(url, {"Ocp-Apim-Subscription-Key": ALICE_SECONDARY})).status_code == 200
    assert (await post(url, query=f"?subscription-key={ALICE_PRIMARY}&x=1")).status_code == 200
    assert len(recorder.requests) == 3
    for seen in recorder.requests:
        assert "ocp-apim-subscription-key" not in seen.headers
        assert ALICE_PRIMARY not in seen.query.decode() and ALICE_SECONDARY not in repr(seen.raw_headers)
    assert recorder.requests[2].query == b"x=1"


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 403, "missing subscription key: send it in the Ocp-Apim-Subscription-Key header or the subscription-key query parameter"),
        ({"Ocp-Apim-Subscription-Key": "wrong-key-0123456789"}, 403,
         "invalid subscription key in the Ocp-Apim-Subscription-Key header or query parameter"),
        ({"Ocp-Apim-Subscription-Key": CAROL}, 403, "subscription 'carol' is disabled"),
        ({"Ocp-Apim-Subscription-Key": BOB}, 403, "subscription 'bob' may not call server 'docs'"),
    ],
)
async def test_refused_keys(keyed, headers, status, message):
    url, recorder = keyed()
    response = await post(url, headers)
    assert response.status_code == status
    assert response.json()["error"]["message"] == message
    assert response.json()["id"] == 5
    assert recorder.requests == []
    for key in headers.values():
        assert key not in response.text
    assert "www-authenticate" not in response.headers, "nothing to sign in to: no OAuth challenge"


async def test_api_management_status_401_on_request(keyed):
    url, _ = keyed({"failedValidationHttpCode": 401})
    assert (await post(url)).status_code == 401
    assert (await post(url, {"Ocp-Apim-Subscription-Key": "wrong-key-0123456789"})).status_code == 401
    assert (await post(url, {"Ocp-Apim-Subscription-Key": CAROL})).status_code == 403


async def test_custom_header_name_and_query_form_switched_off(keyed):
    url, recorder = keyed({"headerName": "X-Api-Key", "queryParameterName": None})
    assert (await post(url, {"X-Api-Key": ALICE_PRIMARY})).status_code == 200
    assert "x-api-key" not in recorder.requests[0].headers
    assert (await post(url, query=f"?subscription-key={ALICE_PRIMARY}")).status_code == 403
    assert (await post(url, {"Ocp-Apim-Subscription-Key": ALICE_PRIMARY})).status_code == 403


def _entra(entra) -> dict:
    return {"tenantId": entra.tenant_id, "audiences": [AUDIENCE], "authorityHost": entra.authority_host}


@pytest.fixture
def combined(start_server, start_gateway, entra, emulator_pki):
    def start(mode: str):
        recorder = RecordingBackend()
        backend = start_server(recorder, lifespan="off")
        auth = {"mode": mode, "subscriptionKey": {}, "entra": _entra(entra)}
        base = start_gateway({"servers": {"docs": {"url": f"{backend.base_url}/mcp", "auth": auth}},
                              "subscriptions": {"alice": SUBSCRIPTIONS["alice"]},
                              "gateway": {"caBundle": emulator_pki.ca_path}})
        return f"{base}/mcp/docs", recorder

    return start


async def test_key_and_token_both_required(combined, entra):
    url, recorder = combined("all")
    token = {"authorization": f"Bearer {entra.mint({'aud': AUDIENCE, 'azp': CLIENT_APP})}"}
    key = {"Ocp-Apim-Subscription-Key": ALICE_PRIMARY}
    assert (await post(url, {**token, **key})).status_code == 200
    assert (await post(url, key)).status_code == 401  # the token is missing: sign in
    assert (await post(url, token)).status_code == 403  # the key is missing: signing in will not help
    assert (await post(url, {**token, "Ocp-Apim-Subscription-Key": "wrong-key-0123456789"})).status_code == 403
    assert len(recorder.requests) == 1
    assert "authorization" not in recorder.requests[0].headers


async def test_key_or_token_either_suffices(combined, entra):
    url, recorder = combined("any")
    token = {"authorization": f"Bearer {entra.mint({'aud': AUDIENCE, 'azp': CLIENT_APP})}"}
    assert (await post(url, {"Ocp-Apim-Subscription-Key": ALICE_PRIMARY})).status_code == 200
    assert (await post(url, token)).status_code == 200
    neither = await post(url)
    assert neither.status_code == 401 and neither.headers["www-authenticate"].startswith("Bearer resource_metadata=")
    assert (await post(url, {"Ocp-Apim-Subscription-Key": "wrong-key-0123456789"})).status_code == 403
    bad_token = {"authorization": "Bearer not-a-token"}
    assert (await post(url, bad_token)).status_code == 401
    assert len(recorder.requests) == 2


def test_keys_new_prints_a_key_once_with_its_hash_entry():
    result = subprocess.run([sys.executable, "-m", "shared", "keys", "new", "contoso-agents"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    key = lines[2].strip()
    assert len(key) >= 40
    assert f'"sha256": "{key_digest(key)}"' in result.stdout
    assert '"contoso-agents": {' in result.stdout


async def test_a_key_held_in_key_vault_is_revoked_by_changing_the_secret(
    start_server, start_gateway, key_vault, managed_identity_env, emulator_pki
):
    import anyio

    key_vault.set_secret("alice-primary", "kv-held-key-0123456789abcdef")
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    subscription = {"servers": ["docs"], "primaryKey": {"keyVaultSecret": {"name": "alice-primary", "vault": key_vault.vault_url}}}
    base = start_gateway({
        "servers": {"docs": {"url": f"{backend.base_url}/mcp", "auth": {"subscriptionKey": {}}}},
        "subscriptions": {"alice": subscription},
        "gateway": {"caBundle": emulator_pki.ca_path, "keyCacheSeconds": 1},
    })
    url = f"{base}/mcp/docs"
    old = {"Ocp-Apim-Subscription-Key": "kv-held-key-0123456789abcdef"}
    for _ in range(5):
        assert (await post(url, old)).status_code == 200
    assert key_vault.get_count("alice-primary") == 1  # cached, not read per request

    key_vault.set_secret("alice-primary", "rotated-key-0123456789abcdef")
    with anyio.fail_after(15):
        while (await post(url, old)).status_code == 200:
            await anyio.sleep(0.2)  # poll interval while the cached value ages out
    refused = await post(url, old)
    assert refused.status_code == 403 and refused.json()["error"]["message"].startswith("invalid subscription key")
    assert (await post(url, {"Ocp-Apim-Subscription-Key": "rotated-key-0123456789abcdef"})).status_code == 200


async def test_an_unreadable_key_vault_key_fails_only_its_own_subscription_and_names_nothing(
    start_server, start_gateway, key_vault, managed_identity_env, emulator_pki, caplog
):
    import anyio

    key_vault.set_secret("alice-primary", "kv-held-key-0123456789abcdef")
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    subscriptions = {
        "alice": {"servers": ["docs"], "primaryKey": {"keyVaultSecret": {"name": "alice-primary", "vault": key_vault.vault_url}}},
        "bob": {"servers": ["docs"], "primaryKey": {"sha256": key_digest(BOB)}},
    }
    base = start_gateway({
        "servers": {"docs": {"url": f"{backend.base_url}/mcp", "auth": {"subscriptionKey": {}}}},
        "subscriptions": subscriptions,
        "gateway": {"caBundle": emulator_pki.ca_path, "keyCacheSeconds": 1},
    })
    url = f"{base}/mcp/docs"
    alice = {"Ocp-Apim-Subscription-Key": "kv-held-key-0123456789abcdef"}
    assert (await post(url, alice)).status_code == 200

    key_vault.delete_secret("alice-primary")
    with caplog.at_level("DEBUG", logger="shared.inbound"), anyio.fail_after(15):
        while (refused := await post(url, alice)).status_code == 200:
            await anyio.sleep(0.2)  # poll interval while the cached value ages out
        bob = await post(url, {"Ocp-Apim-Subscription-Key": BOB})
        wrong = await post(url, {"Ocp-Apim-Subscription-Key": "wrong-key-0123456789"})
    assert bob.status_code == 200, bob.text
    assert refused.status_code == 403 and refused.json()["error"]["message"].startswith("invalid subscription key")
    assert wrong.status_code == 403
    for response in (refused, bob, wrong):
        assert "alice-primary" not in response.text and key_vault.vault_url not in response.text
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("subscription 'alice'" in w and "primary key" in w for w in warnings), warnings
    assert not any("alice-primary" in w or key_vault.vault_url in w for w in warnings)
    assert any("alice-primary" in r.getMessage() for r in caplog.records if r.levelname == "DEBUG")
